using System.Net;
using System.Net.Sockets;
using Influence.Core.Storage;
using Influence.Silo;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Influence.Client;

/// <summary>
/// A connection to a cluster: an embedded single silo in this process (the default), or a
/// client of a running cluster given by --cluster (localhost:GATEWAY_PORT).
/// </summary>
public sealed class ClusterConnection : IAsyncDisposable
{
    private readonly IHost host;

    private ClusterConnection(IHost host, IClusterClient client, IArtifactStore store, string description)
    {
        this.host = host;
        Client = client;
        Store = store;
        Description = description;
    }

    public IClusterClient Client { get; }
    public IArtifactStore Store { get; }
    public string Description { get; }

    /// <param name="concurrentTasks">
    /// Embedded mode: heavy tasks the silo runs at once (a LOO study's --parallel); libtorch's
    /// threads are split between them so that the cores are not oversubscribed.
    /// </param>
    public static async Task<ClusterConnection> OpenAsync(string? cluster, string storeRoot, bool verbose, CancellationToken ct, int concurrentTasks = 1)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        builder.Logging.SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning);
        // The watchdog warns once at start-up about time spent before the silo existed; not the user's concern.
        builder.Logging.AddFilter("Orleans.Runtime.Watchdog", verbose ? LogLevel.Warning : LogLevel.Error);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        string description;
        if (cluster is null)
        {
            // Free loopback ports, so that several embedded runs (and tests) do not collide.
            int siloPort = FreePort(), gatewayPort = FreePort();
            builder.UseOrleans(silo =>
            {
                silo.UseLocalhostClustering(siloPort, gatewayPort, serviceId: "influence", clusterId: $"embedded-{siloPort}");
                silo.AddInfluence(o =>
                {
                    o.StoreRoot = storeRoot;
                    o.ConcurrentTasks = Math.Max(1, concurrentTasks);
                    if (concurrentTasks > 1) o.TorchThreads = Math.Max(1, Environment.ProcessorCount / concurrentTasks);
                });
            });
            description = "embedded single-silo cluster";
        }
        else
        {
            var port = ParseGateway(cluster);
            builder.UseOrleansClient(c => c.UseLocalhostClustering(port));
            description = $"cluster at {cluster}";
        }
        var host = builder.Build();
        await host.StartAsync(ct);
        var client = host.Services.GetRequiredService<IClusterClient>();
        return new ClusterConnection(host, client, new LocalArtifactStore(storeRoot), description);
    }

    private static int ParseGateway(string cluster)
    {
        var text = cluster.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase) ? cluster["localhost:".Length..] : cluster;
        return int.TryParse(text, out int port) && port is > 0 and < 65536
            ? port
            : throw new ArgumentException($"--cluster must be localhost:GATEWAY_PORT (e.g. localhost:30000), not '{cluster}'");
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
