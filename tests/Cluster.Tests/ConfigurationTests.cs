using System.Diagnostics;

namespace Influence.Cluster.Tests;

/// <summary>Bad settings stop a silo or a client at once, with a message that names the problem.</summary>
public sealed class ConfigurationTests : IAsyncLifetime
{
    private RedisServer redis = null!;
    private AzuriteServer azurite = null!;

    public async Task InitializeAsync()
    {
        redis = await RedisServer.StartAsync();
        azurite = await AzuriteServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await redis.DisposeAsync();
        await azurite.DisposeAsync();
    }

    private async Task<(int Exit, string Output, TimeSpan Took)> RunSilo(params string[] settings)
    {
        var args = new List<string>
        {
            "--Cluster:Clustering=redis", $"--Cluster:Redis={redis.Connection}", $"--Cluster:SiloPort={Tools.FreePort()}", $"--Cluster:GatewayPort={Tools.FreePort()}",
            "--Cluster:AdvertisedIP=127.0.0.1", "--Store:Kind=blob", $"--Store:ConnectionString={azurite.ConnectionString()}", $"--Store:Container={azurite.CreateContainer()}",
            $"--Metrics:Port={Tools.FreePort()}",
        };
        foreach (var s in settings)
        {
            args.RemoveAll(a => a.StartsWith(s[..(s.IndexOf('=', StringComparison.Ordinal) + 1)], StringComparison.Ordinal));
            args.Add(s);
        }
        var sw = Stopwatch.StartNew();
        await using var silo = RealCluster.StartSiloProcess("bad-silo", args);
        int exit = await silo.WaitAsync(TimeSpan.FromSeconds(60));
        return (exit, silo.Output(), sw.Elapsed);
    }

    [Fact]
    public async Task An_unreachable_Redis_stops_the_silo_at_start()
    {
        var (exit, output, took) = await RunSilo($"--Cluster:Redis=127.0.0.1:{Tools.FreePort()}");
        Assert.Equal(3, exit);
        Assert.Contains("error: cannot reach Redis at '127.0.0.1:", output, StringComparison.Ordinal);
        Assert.True(took < TimeSpan.FromSeconds(30), $"took {took}");
    }

    [Fact]
    public async Task Refused_blob_credentials_stop_the_silo_at_start()
    {
        var wrong = azurite.ConnectionString(Convert.ToBase64String(new byte[64]));
        var (exit, output, _) = await RunSilo($"--Store:ConnectionString={wrong}");
        Assert.Equal(3, exit);
        Assert.Contains("error: artifact store: blob storage at", output, StringComparison.Ordinal);
        Assert.Contains("refused the credentials", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_blob_container_stops_the_silo_at_start()
    {
        var (exit, output, _) = await RunSilo("--Store:Container=not-created");
        Assert.Equal(3, exit);
        Assert.Contains("blob container 'not-created' does not exist", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Invalid_settings_are_all_reported_before_anything_starts()
    {
        var (exit, output, _) = await RunSilo("--Cluster:Clustering=zookeeper", "--Compute:ConcurrentTasks=0", "--Store:Container=Bad_Name");
        Assert.Equal(2, exit);
        Assert.Contains("error: Cluster:Clustering must be localhost or redis, not 'zookeeper'", output, StringComparison.Ordinal);
        Assert.Contains("error: Compute:ConcurrentTasks must be at least 1, not 0", output, StringComparison.Ordinal);
        Assert.Contains("Store:Container 'Bad_Name' is not a valid container name", output, StringComparison.Ordinal);
        // A value the options binder cannot convert is reported the same way, with the other sections' problems.
        (exit, output, _) = await RunSilo("--Metrics:Port=nine", "--Tls:KeyFile=tls.key");
        Assert.Equal(2, exit);
        Assert.Contains("error: Failed to convert configuration value 'nine' at 'Metrics:Port'", output, StringComparison.Ordinal);
        Assert.Contains("error: Tls:KeyFile or Tls:CaFile is set but Tls:CertificateFile is not", output, StringComparison.Ordinal);
        (exit, output, _) = await RunSilo("--Metrics:Port=19999", "--Dashboard:Port=19999", "--Dashboard:Host=localhost");
        Assert.Equal(2, exit);
        Assert.Contains("error: Dashboard:Host must be an IP address or *, not 'localhost'", output, StringComparison.Ordinal);
        (exit, output, _) = await RunSilo("--Metrics:Port=19999", "--Dashboard:Port=19999");
        Assert.Equal(2, exit);
        Assert.Contains("error: Dashboard:Port and Metrics:Port are both 19999", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_given_an_unreachable_cluster_or_store_says_so()
    {
        var port = Tools.FreePort();
        await using (var client = new ChildProcess("client", "dotnet", [Tools.Bin("influence.dll"), "cluster", "status", "--cluster", $"redis://127.0.0.1:{port}"]))
        {
            Assert.Equal(3, await client.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.Contains($"error: --cluster redis://127.0.0.1:{port}: cannot reach Redis at '127.0.0.1:{port}'", client.Output(), StringComparison.Ordinal);
        }
        await using (var client = new ChildProcess("client", "dotnet",
            [Tools.Bin("influence.dll"), "score", "--train", Tools.DataFile("iris_train.csv"), "--test", Tools.DataFile("iris_test.csv"), "--out", Tools.TempDir("out"), "--store", "azblob:missing-container"],
            new Dictionary<string, string> { ["INFLUENCE_BLOB_CONNECTION_STRING"] = azurite.ConnectionString() }))
        {
            Assert.Equal(3, await client.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.Contains("error: --store azblob:missing-container: blob container 'missing-container' does not exist", client.Output(), StringComparison.Ordinal);
        }
    }
}
