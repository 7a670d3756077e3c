using System.Diagnostics.Metrics;

namespace Influence.Grains;

/// <summary>
/// The project's own meter ("Influence"); the silo exports it (with Orleans' meters) as
/// Prometheus metrics with the influence_ prefix. Labels carry no data values or paths.
/// </summary>
public static class InfluenceMetrics
{
    public const string MeterName = "Influence";
    private static readonly Meter Meter = new(MeterName);

    public static readonly Counter<long> RetrainsStarted = Meter.CreateCounter<long>("influence.retrains.started", "{retrain}", "Leave-one-out retrains started");
    public static readonly Counter<long> RetrainsCompleted = Meter.CreateCounter<long>("influence.retrains.completed", "{retrain}", "Leave-one-out retrains completed");
    public static readonly Counter<long> RetrainsFailed = Meter.CreateCounter<long>("influence.retrains.failed", "{retrain}", "Leave-one-out retrains failed");
    public static readonly UpDownCounter<long> RetrainsInFlight = Meter.CreateUpDownCounter<long>("influence.retrains.in_flight", "{retrain}", "Leave-one-out retrains running now");
    public static readonly Histogram<double> UnitDuration = Meter.CreateHistogram<double>("influence.retrain.unit.duration", "s", "Wall time of one unit of retrains");
    public static readonly Counter<long> JobRetrainsDone = Meter.CreateCounter<long>("influence.job.retrains.done", "{retrain}", "Retrains a coordinator has seen finish (job progress)");
}
