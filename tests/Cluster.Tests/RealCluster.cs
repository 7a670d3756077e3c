using Orleans.Serialization;
using System.Globalization;
using Influence.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using StackExchange.Redis;

namespace Influence.Cluster.Tests;

/// <summary>One `influence-silo` process of a <see cref="RealCluster"/>.</summary>
public sealed class SiloProcess(string name, int siloPort, int gatewayPort, int metricsPort, ChildProcess process) : IAsyncDisposable
{
    public string Name { get; } = name;
    public int SiloPort { get; } = siloPort;
    public int GatewayPort { get; } = gatewayPort;
    public int MetricsPort { get; } = metricsPort;
    public ChildProcess Process { get; } = process;

    /// <summary>Whether an Orleans silo address ("S127.0.0.1:PORT:GEN" or "127.0.0.1:PORT@GEN") is this silo's.</summary>
    public bool Owns(string? siloAddress) => siloAddress is not null && siloAddress.Contains($":{SiloPort.ToString(CultureInfo.InvariantCulture)}", StringComparison.Ordinal);

    public async Task<string> MetricsAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return await http.GetStringAsync($"http://127.0.0.1:{MetricsPort}/metrics");
    }

    /// <summary>The value of an unlabelled (or all-label-summed) counter in this silo's /metrics, 0 if absent.</summary>
    public async Task<double> CounterAsync(string metric)
    {
        var text = await MetricsAsync();
        return text.Split('\n').Where(l => l.StartsWith(metric, StringComparison.Ordinal) && (l.Length > metric.Length && l[metric.Length] is ' ' or '{'))
            .Sum(l => double.Parse(l.Split(' ')[^1], CultureInfo.InvariantCulture));
    }

    public ValueTask DisposeAsync() => Process.DisposeAsync();
}

/// <summary>
/// Redis, Azurite and silo processes on loopback, as a user runs them (docs/cluster.md):
/// Redis clustering and job state, the blob store, fast failure detection.
/// </summary>
public sealed class RealCluster : IAsyncDisposable
{
    private readonly List<SiloProcess> silos = [];
    private IHost? clientHost;

    private readonly string[] siloOverrides;

    private RealCluster(RedisServer redis, AzuriteServer azurite, string container, string[] siloOverrides)
    {
        Redis = redis;
        Azurite = azurite;
        Container = container;
        ClusterId = $"test-{Guid.NewGuid():N}"[..13];
        this.siloOverrides = siloOverrides;
    }

    public RedisServer Redis { get; }
    public AzuriteServer Azurite { get; }
    public string Container { get; }
    public string ClusterId { get; }
    public IReadOnlyList<SiloProcess> Silos => silos;

    /// <param name="redisPassword">Redis requires this password (silos and clients get it in their connection).</param>
    /// <param name="siloOverrides">Settings every silo of the cluster runs with ("Tls:CertificateFile=...").</param>
    public static async Task<RealCluster> StartAsync(int silos, string? redisPassword = null, params string[] siloOverrides)
    {
        var redis = await RedisServer.StartAsync(redisPassword);
        var azurite = await AzuriteServer.StartAsync();
        var cluster = new RealCluster(redis, azurite, azurite.CreateContainer("influence"), siloOverrides);
        await Task.WhenAll(Enumerable.Range(0, silos).Select(_ => cluster.AddSiloAsync()));
        return cluster;
    }

    /// <summary>The flags a silo of this cluster runs with (<paramref name="overrides"/> replace or add some).</summary>
    public List<string> SiloArgs(int siloPort, int gatewayPort, int metricsPort, string name, params string[] overrides)
    {
        var settings = new Dictionary<string, string>
        {
            ["Cluster:Clustering"] = "redis",
            ["Cluster:Redis"] = Redis.Connection,
            ["Cluster:ClusterId"] = ClusterId,
            ["Cluster:ServiceId"] = ClusterId,
            ["Cluster:SiloPort"] = siloPort.ToString(CultureInfo.InvariantCulture),
            ["Cluster:GatewayPort"] = gatewayPort.ToString(CultureInfo.InvariantCulture),
            ["Cluster:AdvertisedIP"] = "127.0.0.1",
            ["Cluster:SiloName"] = name,
            ["Cluster:FailureDetection"] = "fast",
            ["Cluster:ShutdownTimeoutSeconds"] = "10",
            ["Store:Kind"] = "blob",
            ["Store:ConnectionString"] = Azurite.ConnectionString(),
            ["Store:Container"] = Container,
            ["Metrics:Port"] = metricsPort.ToString(CultureInfo.InvariantCulture),
            ["Compute:TorchThreads"] = "1",
            ["Logging:LogLevel:Default"] = "Information",
        };
        foreach (var o in overrides)
        {
            var (k, v) = (o[..o.IndexOf('=', StringComparison.Ordinal)], o[(o.IndexOf('=', StringComparison.Ordinal) + 1)..]);
            settings[k] = v;
        }
        return settings.Select(kv => $"--{kv.Key}={kv.Value}").ToList();
    }

    public static ChildProcess StartSiloProcess(string name, IEnumerable<string> args) =>
        new(name, "dotnet", [Tools.Bin("influence-silo.dll"), .. args]);

    /// <summary>Starts one more silo process and waits until its gateway accepts connections (it has joined).</summary>
    public async Task<SiloProcess> AddSiloAsync()
    {
        int siloPort = Tools.FreePort(), gatewayPort = Tools.FreePort(), metricsPort = Tools.FreePort();
        var name = $"silo-{siloPort}";
        var process = StartSiloProcess(name, SiloArgs(siloPort, gatewayPort, metricsPort, name, siloOverrides));
        var silo = new SiloProcess(name, siloPort, gatewayPort, metricsPort, process);
        lock (silos) silos.Add(silo);
        await Tools.WaitForPortAsync(gatewayPort, TimeSpan.FromSeconds(60), () => process.HasExited ? $"the silo exited ({process.ExitCode}):\n{process.Tail()}" : process.Tail());
        return silo;
    }

    /// <summary>Environment of a client process of this cluster.</summary>
    public Dictionary<string, string> ClientEnv() => new()
    {
        ["INFLUENCE_BLOB_CONNECTION_STRING"] = Azurite.ConnectionString(),
        ["INFLUENCE_CLUSTER_ID"] = ClusterId,
    };

    public string[] ClientArgs() => ["--cluster", $"redis://{Redis.Connection}", "--store", $"azblob:{Container}"];

    /// <summary>Runs `influence ARGS` against this cluster in the background.</summary>
    public ChildProcess StartClient(string name, params string[] args) => StartClient(name, new Dictionary<string, string>(), args);

    /// <summary>Runs `influence ARGS` against this cluster in the background, with more environment variables.</summary>
    public ChildProcess StartClient(string name, IDictionary<string, string> env, params string[] args)
    {
        var all = ClientEnv();
        foreach (var (k, v) in env) all[k] = v;
        return new(name, "dotnet", [Tools.Bin("influence.dll"), .. args, .. ClientArgs()], all);
    }

    /// <summary>An Orleans client inside the test, for watching jobs closely.</summary>
    public async Task<IClusterClient> ClientAsync()
    {
        if (clientHost is null)
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Logging.ClearProviders();
            builder.UseOrleansClient(c =>
            {
                c.Configure<ClusterOptions>(o => { o.ClusterId = ClusterId; o.ServiceId = ClusterId; });
                c.UseRedisClustering(o => o.ConfigurationOptions = ConfigurationOptions.Parse(Redis.Connection));
                c.Services.AddSerializer(s => s.AddInfluenceSettings());
            });
            clientHost = builder.Build();
            await clientHost.StartAsync();
        }
        return clientHost.Services.GetRequiredService<IClusterClient>();
    }

    /// <summary>Polls a job until <paramref name="until"/> holds; status calls that fail (a silo just died) are retried.</summary>
    public async Task<JobStatus> WaitForAsync<TGrain>(string jobId, Func<JobStatus, bool> until, TimeSpan timeout) where TGrain : IJobGrain
    {
        var grain = (await ClientAsync()).GetGrain<TGrain>(jobId);
        var deadline = DateTime.UtcNow + timeout;
        JobStatus? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                last = await grain.GetStatus().WaitAsync(TimeSpan.FromSeconds(5));
                if (until(last)) return last;
            }
            catch (Exception e) when (e is OrleansException or TimeoutException) { }
            await Task.Delay(250);
        }
        throw new TimeoutException($"job {jobId}: condition not reached in {timeout.TotalSeconds:F0} s; last status {last?.Phase} {last?.Done}/{last?.Total} {last?.Message} {last?.Error}");
    }

    public string Logs() => string.Join("\n", silos.Select(s => $"--- {s.Name} ---\n{s.Process.Tail(40)}"));

    public async ValueTask DisposeAsync()
    {
        if (clientHost is not null)
        {
            try { await clientHost.StopAsync(TimeSpan.FromSeconds(5)); } catch (Exception e) when (e is OperationCanceledException or OrleansException) { }
            clientHost.Dispose();
        }
        foreach (var s in silos) await s.DisposeAsync();
        await Redis.DisposeAsync();
        await Azurite.DisposeAsync();
    }
}
