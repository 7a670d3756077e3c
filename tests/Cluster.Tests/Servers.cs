using Azure.Storage.Blobs;

namespace Influence.Cluster.Tests;

/// <summary>A real redis-server on a free loopback port, nothing persisted.</summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly ChildProcess process;
    private readonly string dir = Tools.TempDir("redis");

    private RedisServer(int port)
    {
        Port = port;
        process = new ChildProcess($"redis-{port}", Tools.Find("redis-server"),
            ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir]);
    }

    public int Port { get; }
    public string Connection => $"127.0.0.1:{Port}";

    public static async Task<RedisServer> StartAsync()
    {
        var server = new RedisServer(Tools.FreePort());
        await Tools.WaitForPortAsync(server.Port, TimeSpan.FromSeconds(20), () => server.process.Tail());
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await process.DisposeAsync();
        Directory.Delete(dir, recursive: true);
    }
}

/// <summary>Azurite's blob service (the Azure Storage emulator) on a free loopback port, data in a temporary folder.</summary>
public sealed class AzuriteServer : IAsyncDisposable
{
    public const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    private readonly ChildProcess process;
    private readonly string dir = Tools.TempDir("azurite");

    private AzuriteServer(int port)
    {
        Port = port;
        process = new ChildProcess($"azurite-{port}", Tools.Find("azurite-blob"),
            ["--blobHost", "127.0.0.1", "--blobPort", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--location", dir, "--silent", "--skipApiVersionCheck", "--loose"]);
    }

    public int Port { get; }

    public string ConnectionString(string key = AccountKey) =>
        $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:{Port}/devstoreaccount1;";

    public static async Task<AzuriteServer> StartAsync()
    {
        var server = new AzuriteServer(Tools.FreePort());
        await Tools.WaitForPortAsync(server.Port, TimeSpan.FromSeconds(30), () => server.process.Tail());
        return server;
    }

    /// <summary>Creates a fresh container and returns its name.</summary>
    public string CreateContainer(string prefix = "test")
    {
        var name = $"{prefix}-{Guid.NewGuid():N}"[..Math.Min(40, prefix.Length + 33)];
        new BlobContainerClient(ConnectionString(), name).Create();
        return name;
    }

    public async ValueTask DisposeAsync()
    {
        await process.DisposeAsync();
        Directory.Delete(dir, recursive: true);
    }
}
