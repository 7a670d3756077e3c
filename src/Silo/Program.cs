using System.Net;
using System.Net.Sockets;
using Influence.Core.Safety;
using Influence.Core.Storage;
using Influence.Grains;
using Influence.Silo;
using Influence.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Dashboard;

// A silo process. Settings come from appsettings.json, environment variables (Cluster__Redis=...)
// and flags (--Cluster:Redis=localhost:6379); see docs/cluster.md.
// Exit codes: 2 bad settings, 3 a configured service (Redis, the store, the metrics port, TLS files) unusable.
Influence.Core.Compute.NativeLifetimeGuard.EnsureActive(); // before any TorchSharp call: see its comment
Influence.Core.Compute.HugePages.Enable();               // before any TorchSharp call: see its comment
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });

SiloHostSettings settings;
try { settings = SiloHostSettings.Resolve(builder.Configuration); }
catch (SiloSettingsException e)
{
    foreach (var p in e.Problems) Fail(p);
    return 2;
}
SiloHostSettings.Register(builder.Services);

// Fail fast, with the reason, on services that are configured but unusable.
if (settings.Cluster.IsRedis && await RedisCheck.ProblemAsync(settings.Cluster.Redis!) is { } redisProblem)
{
    return Fail(redisProblem);
}
IArtifactStore store;
try { store = ArtifactStores.Open(settings.Store); }
catch (ArtifactStoreException e)
{
    return Fail($"artifact store: {e.Message}");
}
if (settings.Metrics.Enabled && PortProblem(settings.Metrics.Endpoint(), "Metrics") is { } portProblem)
{
    return Fail(portProblem);
}
if (settings.Dashboard.Enabled && PortProblem(settings.Dashboard.Endpoint(), "Dashboard") is { } dashboardProblem)
{
    return Fail(dashboardProblem);
}
TlsCertificates? tls = null;
if (settings.Tls.Enabled)
{
    try { tls = TlsCertificates.Load(settings.Tls); }
    catch (TlsSettingsException e) { return Fail(e.Message); }
}

var instance = settings.Cluster.SiloName is { Length: > 0 } name ? name : $"{Environment.MachineName}:{settings.Cluster.SiloPort}";
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(settings.Cluster.ShutdownTimeoutSeconds));
builder.UseOrleans(silo =>
{
    silo.UseInfluenceCluster(settings.Cluster).AddInfluence(settings.Compute, store);
    if (settings.Dashboard.Enabled) silo.AddDashboard();
    if (tls is not null) silo.UseInfluenceTls(tls);
});
builder.Services.AddInfluenceTelemetry(instance);
// Metrics:Port=0 and Dashboard:Port=0 (the default) turn them off: Kestrel then listens nowhere.
builder.WebHost.ConfigureKestrel(k =>
{
    if (settings.Metrics.Enabled) k.Listen(settings.Metrics.Endpoint());
    if (settings.Dashboard.Enabled) k.Listen(settings.Dashboard.Endpoint());
});
builder.WebHost.UseUrls(); // no default http://localhost:5000: only what ConfigureKestrel says

var app = builder.Build();
// Each port serves only its own endpoints.
if (settings.Metrics.Enabled)
{
    app.MapGet("/healthz", () => "ok").RequireHost($"*:{settings.Metrics.Port}");
    app.MapPrometheusScrapingEndpoint().RequireHost($"*:{settings.Metrics.Port}");
}
if (settings.Dashboard.Enabled) app.MapOrleansDashboard().RequireHost($"*:{settings.Dashboard.Port}");
try { await app.StartAsync(); }
catch (IOException e) when (settings.Metrics.Enabled || settings.Dashboard.Enabled)
{
    // Kestrel could not bind (AddressInUseException and kin): a port was taken between the checks above and the start.
    try { await app.StopAsync(); } catch (Exception) { /* it did not start */ }
    return Fail($"Metrics:Port {settings.Metrics.Port} / Dashboard:Port {settings.Dashboard.Port}: {e.Message}");
}
InfluenceMetrics.Initialise(); // now that the meter provider listens
await app.WaitForShutdownAsync();
return 0;

// Every error a silo prints at start: one line, no secret; the exit code of a service that cannot be used.
static int Fail(string message)
{
    Console.Error.WriteLine($"error: {Secrets.Redact(message)}");
    return 3;
}

// A port in use would otherwise abort the process after the silo joined.
static string? PortProblem(IPEndPoint endpoint, string section)
{
    try
    {
        using var probe = new TcpListener(endpoint);
        probe.Start();
        probe.Stop();
        return null;
    }
    catch (SocketException e)
    {
        string host = endpoint.Address.Equals(IPAddress.Any) ? "*" : endpoint.Address.ToString();
        return $"{section}:Port {endpoint.Port} on {host} cannot be used ({e.SocketErrorCode}: {e.Message}); choose another port, or 0 to turn it off";
    }
}
