using Influence.Grains;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Influence.Silo;

/// <summary>The silo's OpenTelemetry metrics: the project's "Influence" meter and Orleans' own, exported for Prometheus.</summary>
public static class SiloTelemetry
{
    public const string ServiceName = "influence-silo";

    /// <summary>Seconds: one retrain unit or shard stage takes from ~10 ms (a warm batch) to ~10 min (a deep MLP cold retrain).</summary>
    public static readonly double[] SecondsBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

    public static IServiceCollection AddInfluenceTelemetry(this IServiceCollection services, string instanceId)
    {
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(ServiceName, serviceNamespace: "influence", serviceInstanceId: instanceId))
            .WithMetrics(m => m
                .AddMeter(InfluenceMetrics.MeterName, "Microsoft.Orleans")
                .AddView(i => i.Meter.Name == InfluenceMetrics.MeterName && i.Unit == "s"
                    ? new ExplicitBucketHistogramConfiguration { Boundaries = SecondsBuckets }
                    : null)
                .AddPrometheusExporter());
        return services;
    }
}
