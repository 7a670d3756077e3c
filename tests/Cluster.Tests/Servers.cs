using Azure.Storage.Blobs;

namespace Influence.Cluster.Tests;

/// <summary>A real redis-server on a free loopback port, nothing persisted.</summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly ChildProcess process;
    private readonly string dir = Tools.TempDir("redis");

    private RedisServer(int port, string? password)
    {
        Port = port;
        Password = password;
        process = new ChildProcess($"redis-{port}", Tools.Find("redis-server"),
            ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
             .. password is null ? Array.Empty<string>() : ["--requirepass", password]]);
    }

    public int Port { get; }
    public string? Password { get; }
    /// <summary>StackExchange.Redis configuration: HOST:PORT[,password=...].</summary>
    public string Connection => Password is null ? $"127.0.0.1:{Port}" : $"127.0.0.1:{Port},password={Password}";

    /// <summary>Every key and value in the server, as text (job records, membership, reminders).</summary>
    public async Task<string> DumpAsync()
    {
        await using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(Connection);
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        var db = redis.GetDatabase();
        var text = new System.Text.StringBuilder();
        await foreach (var key in server.KeysAsync(pattern: "*"))
        {
            text.Append(key.ToString()).Append(" = ");
            switch (await db.KeyTypeAsync(key))
            {
                case StackExchange.Redis.RedisType.String: text.Append(System.Text.Encoding.UTF8.GetString((byte[])(await db.StringGetAsync(key))!)); break;
                case StackExchange.Redis.RedisType.Hash:
                    foreach (var e in await db.HashGetAllAsync(key)) text.Append(e.Name.ToString()).Append(':').Append(System.Text.Encoding.UTF8.GetString((byte[])e.Value!)).Append(' ');
                    break;
                case StackExchange.Redis.RedisType.SortedSet:
                    foreach (var e in await db.SortedSetRangeByRankAsync(key)) text.Append(System.Text.Encoding.UTF8.GetString((byte[])e!)).Append(' ');
                    break;
                case StackExchange.Redis.RedisType.List:
                    foreach (var e in await db.ListRangeAsync(key)) text.Append(System.Text.Encoding.UTF8.GetString((byte[])e!)).Append(' ');
                    break;
                case StackExchange.Redis.RedisType.Set:
                    foreach (var e in await db.SetMembersAsync(key)) text.Append(System.Text.Encoding.UTF8.GetString((byte[])e!)).Append(' ');
                    break;
            }
            text.Append('\n');
        }
        return text.ToString();
    }

    public static async Task<RedisServer> StartAsync(string? password = null)
    {
        var server = new RedisServer(Tools.FreePort(), password);
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

/// <summary>A real Prometheus server scraping the given targets every second, on a free loopback port.</summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    private readonly ChildProcess process;
    private readonly string dir = Tools.TempDir("prometheus");

    private PrometheusServer(int port, IEnumerable<int> targetPorts)
    {
        Port = port;
        var targets = string.Join(", ", targetPorts.Select(p => $"'127.0.0.1:{p}'"));
        var config = Path.Combine(dir, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: influence
                static_configs:
                  - targets: [{targets}]
            """);
        process = new ChildProcess($"prometheus-{port}", Tools.Find("prometheus"),
            [$"--config.file={config}", $"--storage.tsdb.path={Path.Combine(dir, "data")}", $"--web.listen-address=127.0.0.1:{port}"]);
    }

    public int Port { get; }

    public static async Task<PrometheusServer> StartAsync(IEnumerable<int> targetPorts)
    {
        var server = new PrometheusServer(Tools.FreePort(), targetPorts);
        await Tools.WaitForPortAsync(server.Port, TimeSpan.FromSeconds(30), () => server.process.Tail());
        // The port opens before the storage is: queries answer 503 until /-/ready does 200.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try { if ((await http.GetAsync($"http://127.0.0.1:{server.Port}/-/ready")).IsSuccessStatusCode) return server; }
            catch (HttpRequestException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"prometheus not ready after 30 s:\n{server.process.Tail()}");
            await Task.Delay(200);
        }
    }

    /// <summary>An instant query through the HTTP API: each series' labels and value.</summary>
    public async Task<List<(Dictionary<string, string> Labels, double Value)>> QueryAsync(string promql)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var json = await http.GetStringAsync($"http://127.0.0.1:{Port}/api/v1/query?query={Uri.EscapeDataString(promql)}");
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        Assert.Equal("success", doc.RootElement.GetProperty("status").GetString());
        return doc.RootElement.GetProperty("data").GetProperty("result").EnumerateArray().Select(r => (
            r.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? ""),
            double.Parse(r.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture))).ToList();
    }

    /// <summary>Every value a label has in the stored series (e.g. "__name__": every metric name).</summary>
    public async Task<List<string>> LabelValuesAsync(string label)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        using var doc = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{Port}/api/v1/label/{label}/values"));
        return doc.RootElement.GetProperty("data").EnumerateArray().Select(v => v.GetString()!).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        await process.DisposeAsync();
        Directory.Delete(dir, recursive: true);
    }
}
