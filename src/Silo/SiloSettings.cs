using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Influence.Grains;
using Influence.Storage;

namespace Influence.Silo;

/// <summary>
/// How a silo joins its cluster (configuration section "Cluster"; environment variables
/// Cluster__Redis etc.; flags --Cluster:Redis=HOST:PORT).
/// </summary>
public sealed class ClusterSettings
{
    /// <summary>"localhost" (silos on one machine, the first is the primary) or "redis".</summary>
    public string Clustering { get; set; } = "localhost";
    /// <summary>Redis connection (HOST:PORT[,options]) for membership, job state and reminders.</summary>
    public string? Redis { get; set; }
    public string ClusterId { get; set; } = "influence";
    public string ServiceId { get; set; } = "influence";
    public int SiloPort { get; set; } = 11111;
    public int GatewayPort { get; set; } = 30000;
    /// <summary>Localhost clustering: the primary silo's port.</summary>
    public int PrimaryPort { get; set; } = 11111;
    /// <summary>The address other silos and clients reach this silo at (Kubernetes: the pod IP); default loopback for localhost clustering, else this host's first address. The silo and gateway ports listen on this address only.</summary>
    public string? AdvertisedIP { get; set; }
    /// <summary>Listen on every interface instead of the advertised address only (behind NAT, where the advertised address is not local).</summary>
    public bool ListenOnAllInterfaces { get; set; }
    /// <summary>The silo's name (Kubernetes: the pod name); default the machine name and port.</summary>
    public string? SiloName { get; set; }
    /// <summary>"default" (Orleans' liveness settings) or "fast": a dead silo is declared in ~2-4 s (tests, small clusters). Every silo must use the same.</summary>
    public string FailureDetection { get; set; } = "default";
    /// <summary>How long a stopping silo may take to hand work back and leave; keep it below the pod's termination grace period.</summary>
    public int ShutdownTimeoutSeconds { get; set; } = 20;

    public bool IsRedis => Clustering.Equals("redis", StringComparison.OrdinalIgnoreCase);
    public bool FastFailureDetection => FailureDetection.Equals("fast", StringComparison.OrdinalIgnoreCase);

    public IEnumerable<string> Problems()
    {
        if (!Clustering.Equals("localhost", StringComparison.OrdinalIgnoreCase) && !IsRedis)
            yield return $"Cluster:Clustering must be localhost or redis, not '{Clustering}'";
        if (IsRedis && string.IsNullOrWhiteSpace(Redis))
            yield return "Cluster:Clustering is redis but Cluster:Redis (HOST:PORT) is not set";
        foreach (var (name, port) in new[] { ("SiloPort", SiloPort), ("GatewayPort", GatewayPort), ("PrimaryPort", PrimaryPort) })
            if (port is < 1 or > 65535) yield return $"Cluster:{name} must be a TCP port (1-65535), not {port}";
        if (SiloPort == GatewayPort) yield return $"Cluster:SiloPort and Cluster:GatewayPort are both {SiloPort}";
        if (AdvertisedIP is { Length: > 0 } ip && !IPAddress.TryParse(ip, out _))
            yield return $"Cluster:AdvertisedIP '{ip}' is not an IP address";
        if (!FastFailureDetection && !FailureDetection.Equals("default", StringComparison.OrdinalIgnoreCase))
            yield return $"Cluster:FailureDetection must be default or fast, not '{FailureDetection}'";
        if (string.IsNullOrWhiteSpace(ClusterId) || string.IsNullOrWhiteSpace(ServiceId))
            yield return "Cluster:ClusterId and Cluster:ServiceId must not be empty";
        if (ShutdownTimeoutSeconds is < 1 or > 3600)
            yield return $"Cluster:ShutdownTimeoutSeconds must be 1-3600, not {ShutdownTimeoutSeconds}";
    }
}

/// <summary>
/// A web endpoint of the silo process (its section names it in messages): a port, 0 for off, and
/// the address it listens on, loopback unless configured.
/// </summary>
public abstract class WebEndpointSettings(string section, int defaultPort)
{
    /// <summary>The TCP port; 0 turns the endpoint off.</summary>
    public int Port { get; set; } = defaultPort;
    /// <summary>The IP address it listens on, or "*" for every interface.</summary>
    public string Host { get; set; } = "127.0.0.1";

    public bool Enabled => Port != 0;

    public IPEndPoint Endpoint() => new(Host == "*" ? IPAddress.Any : IPAddress.Parse(Host), Port);

    public IEnumerable<string> Problems()
    {
        if (Port is < 0 or > 65535) yield return $"{section}:Port must be 0 (off) or a TCP port, not {Port}";
        if (Host != "*" && !IPAddress.TryParse(Host, out _)) yield return $"{section}:Host must be an IP address or *, not '{Influence.Core.Safety.Echo.Cap(Host)}'";
    }
}

/// <summary>The Prometheus endpoint, /metrics and /healthz (section "Metrics"; port 9400; the chart listens on "*" behind its NetworkPolicy).</summary>
public sealed class MetricsSettings() : WebEndpointSettings("Metrics", 9400);

/// <summary>
/// The Orleans Dashboard (section "Dashboard"): grain calls, silos, reminders, live in a browser.
/// Off by default (port 0); on loopback unless configured, like the metrics endpoint. It has no
/// login of its own: expose it beyond loopback only behind something that authenticates.
/// </summary>
public sealed class DashboardSettings() : WebEndpointSettings("Dashboard", 0);

/// <summary>Settings a silo cannot start with; each problem names its setting.</summary>
public sealed class SiloSettingsException(IReadOnlyList<string> problems) : Exception(string.Join("; ", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>The options pattern's validator for a settings class that lists its own problems.</summary>
public sealed class ProblemsValidator<T>(Func<T, IEnumerable<string>> problems) : IValidateOptions<T> where T : class
{
    public ValidateOptionsResult Validate(string? name, T options)
    {
        var found = problems(options).ToList();
        return found.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(found);
    }
}

/// <summary>Every setting of a silo process: bound from configuration and validated before anything starts.</summary>
public sealed record SiloHostSettings(ClusterSettings Cluster, ComputeSettings Compute, ArtifactStoreOptions Store, MetricsSettings Metrics, TlsSettings Tls, DashboardSettings Dashboard)
{
    /// <summary>
    /// Binds each section ("Cluster", "Compute", "Store", "Metrics", "Tls", "Dashboard") as options with its
    /// validator, checked again when the host starts (ValidateOnStart). The host and
    /// <see cref="Resolve"/> use this one registration.
    /// </summary>
    public static IServiceCollection Register(IServiceCollection services)
    {
        Add<ClusterSettings>(services, "Cluster", s => s.Problems());
        Add<ComputeSettings>(services, "Compute", s => s.Problems());
        Add<ArtifactStoreOptions>(services, "Store", s => s.Problems());
        Add<MetricsSettings>(services, "Metrics", s => s.Problems());
        Add<TlsSettings>(services, "Tls", s => s.Problems(n => $"Tls:{n}"));
        Add<DashboardSettings>(services, "Dashboard", s => s.Problems());
        return services;
    }

    private static void Add<T>(IServiceCollection services, string section, Func<T, IEnumerable<string>> problems) where T : class
    {
        services.AddOptions<T>().BindConfiguration(section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<T>>(new ProblemsValidator<T>(problems));
    }

    /// <summary>
    /// The settings, before the host is built (the cluster's shape, the store and the ports are
    /// chosen from them). Throws <see cref="SiloSettingsException"/> with every problem of every
    /// section, a value that does not convert (a port of "abc") among them.
    /// </summary>
    public static SiloHostSettings Resolve(IConfiguration configuration)
    {
        var services = new ServiceCollection().AddSingleton(configuration);
        using var provider = Register(services).BuildServiceProvider();
        var problems = new List<string>();
        T Get<T>() where T : class, new()
        {
            try { return provider.GetRequiredService<IOptions<T>>().Value; }
            catch (OptionsValidationException e) { problems.AddRange(e.Failures); }
            catch (InvalidOperationException e) { problems.Add(e.Message); } // the binder could not convert a value
            return new T();
        }
        var settings = new SiloHostSettings(Get<ClusterSettings>(), Get<ComputeSettings>(), Get<ArtifactStoreOptions>(), Get<MetricsSettings>(), Get<TlsSettings>(), Get<DashboardSettings>());
        if (settings.Metrics.Enabled && settings.Dashboard.Enabled && settings.Metrics.Port == settings.Dashboard.Port)
            problems.Add($"Dashboard:Port and Metrics:Port are both {settings.Dashboard.Port}");
        return problems.Count == 0 ? settings : throw new SiloSettingsException(problems);
    }
}
