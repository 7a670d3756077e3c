using System.Net;
using System.Net.Sockets;
using Influence.Abstractions;
using Influence.Core.Safety;
using Influence.Core.Storage;
using Influence.Silo;
using Influence.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Serialization;
using StackExchange.Redis;

namespace Influence.Client;

/// <summary>A cluster the client cannot use as given (unreachable, bad address, bad store).</summary>
public sealed class ConnectionException(string message, Exception? inner = null) : Exception(Secrets.Redact(message), inner);

/// <summary>
/// A connection to a cluster: an embedded single silo in this process (the default), or a client
/// of a running cluster given by --cluster: redis://HOST:PORT (Redis clustering) or
/// localhost:GATEWAY_PORT (silos with localhost clustering on this machine).
/// </summary>
public sealed class ClusterConnection : IAsyncDisposable
{
    /// <summary>Cluster and service id of a cluster the client joins; the silos' Cluster:ClusterId (default "influence").</summary>
    public const string ClusterIdVariable = "INFLUENCE_CLUSTER_ID";
    /// <summary>The default --cluster (it may hold a Redis password: an environment variable keeps it out of process listings).</summary>
    public const string ClusterVariable = "INFLUENCE_CLUSTER";

    public static string? DefaultCluster() => Environment.GetEnvironmentVariable(ClusterVariable) is { Length: > 0 } c ? c : null;
    /// <summary>TLS to the gateways (silos started with Tls:CertificateFile): the PEM certificate, key and CA the client presents and trusts.</summary>
    public const string TlsCertificateVariable = "INFLUENCE_TLS_CERT", TlsKeyVariable = "INFLUENCE_TLS_KEY", TlsCaVariable = "INFLUENCE_TLS_CA";

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(30);

    private readonly IHost host;

    private ClusterConnection(IHost host, IClusterClient client, IArtifactStore store, string description, bool embedded)
    {
        this.host = host;
        Client = client;
        Store = store;
        Description = description;
        IsEmbedded = embedded;
    }

    public IClusterClient Client { get; }
    public IArtifactStore Store { get; }
    public string Description { get; }
    /// <summary>The silo runs in this process (datasets are read from their paths as given).</summary>
    public bool IsEmbedded { get; }

    /// <param name="store">The --store: a folder, azblob:CONTAINER or a container URL (see <see cref="ArtifactStoreOptions.Parse"/>).</param>
    /// <param name="concurrentTasks">
    /// Embedded mode: heavy tasks the silo runs at once (a LOO study's --parallel); libtorch's
    /// threads are split between them so that the cores are not oversubscribed.
    /// </param>
    public static async Task<ClusterConnection> OpenAsync(string? cluster, string store, bool verbose, CancellationToken ct, int concurrentTasks = 1)
    {
        IArtifactStore artifacts;
        try { artifacts = ArtifactStores.Open(ArtifactStoreOptions.Parse(store)); }
        catch (ArtifactStoreException e) { throw new ConnectionException($"--store {store}: {e.Message}", e); }

        // No appsettings.json from the working folder (a silo's, next to the binaries, would set the client's log levels).
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        // Logs go to stderr: stdout is the command's own output (tables, file lists) for pipes.
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning);
        if (!verbose)
        {
            // A failed start or connection is said once, as the command's error: the host's and
            // Orleans' own reports of it (stack traces, retried TLS handshakes) are for --verbose.
            builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
            builder.Logging.AddFilter("Orleans", LogLevel.Error);
            builder.Logging.AddFilter("Orleans.Connections.Security", LogLevel.None);
            builder.Logging.AddFilter("Orleans.OutsideRuntimeClient", LogLevel.None);
        }
        // The watchdog warns once at start-up about time spent before the silo existed; not the user's concern.
        builder.Logging.AddFilter("Orleans.Runtime.Watchdog", verbose ? LogLevel.Warning : LogLevel.Error);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        // The command line owns Ctrl+C and SIGTERM (they cancel the command, which then disposes this
        // connection); the host's console lifetime would swallow them and stop the silo under a running poll.
        builder.Services.AddSingleton<IHostLifetime, CommandOwnedLifetime>();
        string description;
        bool embedded = cluster is null;
        if (embedded)
        {
            // Free loopback ports, so that several embedded runs (and tests) do not collide.
            int siloPort = FreePort(), gatewayPort = FreePort();
            var settings = new ClusterSettings { SiloPort = siloPort, GatewayPort = gatewayPort, PrimaryPort = siloPort, ClusterId = $"embedded-{siloPort}" };
            var compute = new Influence.Grains.ComputeSettings { ConcurrentTasks = Math.Max(1, concurrentTasks) };
            if (concurrentTasks > 1) compute.TorchThreads = Math.Max(1, Environment.ProcessorCount / concurrentTasks);
            builder.UseOrleans(silo => silo.UseInfluenceCluster(settings).AddInfluence(compute, artifacts, allowLocalFiles: true));
            description = "embedded single-silo cluster";
        }
        else
        {
            var clusterId = Environment.GetEnvironmentVariable(ClusterIdVariable) is { Length: > 0 } id ? id : "influence";
            var redis = await ParseClusterAsync(cluster!);
            var tlsSettings = new TlsSettings
            {
                CertificateFile = Environment.GetEnvironmentVariable(TlsCertificateVariable),
                KeyFile = Environment.GetEnvironmentVariable(TlsKeyVariable),
                CaFile = Environment.GetEnvironmentVariable(TlsCaVariable),
            };
            string VariableOf(string property) => "$" + property switch { nameof(TlsSettings.KeyFile) => TlsKeyVariable, nameof(TlsSettings.CaFile) => TlsCaVariable, _ => TlsCertificateVariable };
            if (tlsSettings.Problems(VariableOf).FirstOrDefault() is { } tlsProblem) throw new ConnectionException(tlsProblem);
            TlsCertificates? tls = null;
            if (tlsSettings.Enabled)
            {
                try { tls = TlsCertificates.Load(tlsSettings); }
                catch (TlsSettingsException e) { throw new ConnectionException(e.Message, e); }
            }
            builder.UseOrleansClient(c =>
            {
                c.Configure<ClusterOptions>(o => { o.ClusterId = clusterId; o.ServiceId = clusterId; });
                if (redis is not null) c.UseRedisClustering(o => o.ConfigurationOptions = redis);
                else c.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, ParseGateway(cluster!)));
                if (tls is not null) c.UseInfluenceTls(tls);
                c.Services.AddSerializer(s => s.AddInfluenceSettings());
            });
            description = $"cluster at {Secrets.Redact(cluster)}";
        }
        var host = builder.Build();
        // A gateway that drops the connection at once (TLS on one side only, a certificate it does
        // not trust) is retried without end by Orleans: give up after ConnectTimeout instead.
        using var connecting = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (!embedded) connecting.CancelAfter(ConnectTimeout);
        try { await host.StartAsync(connecting.Token); }
        catch (Exception e) when (!embedded && !ct.IsCancellationRequested)
        {
            host.Dispose();
            var reason = e is OperationCanceledException ? $"no gateway accepted the connection within {ConnectTimeout.TotalSeconds:F0} s" : e.Message.Split('\n')[0];
            throw new ConnectionException($"cannot connect to the cluster at {cluster}: {reason} (are its silos running, with Cluster:ClusterId '{Environment.GetEnvironmentVariable(ClusterIdVariable) ?? "influence"}'? If they use TLS, set ${TlsCertificateVariable} and ${TlsKeyVariable} to a certificate they trust)", e);
        }
        var client = host.Services.GetRequiredService<IClusterClient>();
        return new ClusterConnection(host, client, artifacts, description, embedded);
    }

    /// <summary>Redis options for redis://HOST:PORT (checked to answer), or null for localhost:PORT.</summary>
    private static async Task<ConfigurationOptions?> ParseClusterAsync(string cluster)
    {
        if (!cluster.StartsWith("redis://", StringComparison.OrdinalIgnoreCase)) return null;
        var address = cluster["redis://".Length..].TrimEnd('/');
        if (await RedisCheck.ProblemAsync(address) is { } problem) throw new ConnectionException($"--cluster {cluster}: {problem}");
        return ConfigurationOptions.Parse(address);
    }

    private static int ParseGateway(string cluster)
    {
        var text = cluster.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase) ? cluster["localhost:".Length..] : cluster;
        return int.TryParse(text, out int port) && port is > 0 and < 65536
            ? port
            : throw new ConnectionException($"--cluster must be redis://HOST:PORT or localhost:GATEWAY_PORT (e.g. localhost:30000), not '{cluster}'");
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        try { await host.StopAsync(); }
        finally { host.Dispose(); }
    }
}

/// <summary>A host lifetime that leaves process signals to the command line.</summary>
internal sealed class CommandOwnedLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
