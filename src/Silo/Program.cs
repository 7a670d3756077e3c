using Influence.Core.Storage;
using Influence.Grains;
using Influence.Silo;
using Influence.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// A silo process. Settings come from appsettings.json, environment variables (Cluster__Redis=...)
// and flags (--Cluster:Redis=localhost:6379); see README "Running a cluster".
Influence.Core.Compute.NativeLifetimeGuard.EnsureActive(); // before any TorchSharp call: see its comment
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });

var settings = SiloHostSettings.Read(builder.Configuration);
var problems = settings.Problems();
if (problems.Count > 0)
{
    foreach (var p in problems) Console.Error.WriteLine($"error: {p}");
    return 2;
}

// Fail fast, with the reason, on services that are configured but unusable.
if (settings.Cluster.IsRedis && await RedisCheck.ProblemAsync(settings.Cluster.Redis!) is { } redisProblem)
{
    Console.Error.WriteLine($"error: {redisProblem}");
    return 3;
}
IArtifactStore store;
try { store = ArtifactStores.Open(settings.Store); }
catch (ArtifactStoreException e)
{
    Console.Error.WriteLine($"error: artifact store: {e.Message}");
    return 3;
}

var instance = settings.Cluster.SiloName is { Length: > 0 } name ? name : $"{Environment.MachineName}:{settings.Cluster.SiloPort}";
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(settings.Cluster.ShutdownTimeoutSeconds));
builder.UseOrleans(silo => silo.UseInfluenceCluster(settings.Cluster).AddInfluence(settings.Compute, store));
builder.Services.AddInfluenceTelemetry(instance);
builder.WebHost.UseUrls($"http://{settings.Metrics.Host}:{settings.Metrics.Port}");

var app = builder.Build();
app.MapGet("/healthz", () => "ok");
app.MapPrometheusScrapingEndpoint();
await app.StartAsync();
InfluenceMetrics.Initialise(); // now that the meter provider listens
await app.WaitForShutdownAsync();
return 0;
