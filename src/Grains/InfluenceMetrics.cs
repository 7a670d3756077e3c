using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Influence.Grains;

/// <summary>The kinds of job a coordinator runs: the "kind" label of the job metrics.</summary>
public static class JobKinds
{
    public const string Score = "score";
    public const string Loo = "loo";
    public const string Study = "study";
    public const string Correct = "correct";
    public const string Fading = "fading";
    public static readonly IReadOnlyList<string> All = [Score, Loo, Study, Correct, Fading];
}

/// <summary>
/// The project's own meter ("Influence"); the silo exports it (with Orleans' meters) as
/// Prometheus metrics with the influence_ prefix. Labels carry no data values or paths: job
/// kinds, outcomes, shard stages, and the ids of running jobs (few at a time).
/// </summary>
public static class InfluenceMetrics
{
    public const string MeterName = "Influence";
    private static readonly Meter Meter = new(MeterName);

    public static readonly Counter<long> RetrainsStarted = Meter.CreateCounter<long>("influence.retrains.started", "{retrain}", "Short trainings started (kind: loo retrains, correct fine-tuning runs, fading perturbed trajectories)");
    public static readonly Counter<long> RetrainsCompleted = Meter.CreateCounter<long>("influence.retrains.completed", "{retrain}", "Short trainings completed (kind: loo, correct, fading)");
    public static readonly Counter<long> RetrainsFailed = Meter.CreateCounter<long>("influence.retrains.failed", "{retrain}", "Short trainings failed (kind: loo, correct, fading)");
    public static readonly UpDownCounter<long> RetrainsInFlight = Meter.CreateUpDownCounter<long>("influence.retrains.in_flight", "{retrain}", "Short trainings running now (kind: loo, correct, fading)");
    public static readonly Histogram<double> UnitDuration = Meter.CreateHistogram<double>("influence.retrain.unit.duration", "s", "Wall time of one unit of short trainings (kind: loo, correct, fading)");
    public static readonly Counter<long> JobRetrainsDone = Meter.CreateCounter<long>("influence.job.retrains.done", "{retrain}", "Short trainings a coordinator has seen finish (job progress; kind: loo, correct, fading)");

    public static readonly Counter<long> ExamplesScored = Meter.CreateCounter<long>("influence.examples.scored", "{example}", "Training examples scored against every query of a job");
    public static readonly Counter<long> GradientsComputed = Meter.CreateCounter<long>("influence.gradients.computed", "{gradient}", "Per-example loss gradients computed");
    public static readonly Counter<long> StoreBytesRead = Meter.CreateCounter<long>("influence.store.read", "By", "Bytes read from the artifact store by this silo");
    public static readonly Counter<long> StoreBytesWritten = Meter.CreateCounter<long>("influence.store.written", "By", "Bytes written to the artifact store by this silo");
    public static readonly Counter<long> CurvatureProducts = Meter.CreateCounter<long>("influence.hvp.computed", "{product}", "Curvature-vector products computed by shards (one per vector per shard or LiSSA step)");
    public static readonly Histogram<double> ShardDuration = Meter.CreateHistogram<double>("influence.shard.duration", "s", "Wall time of one shard stage (stage: score, curvature_product, or the method's own, e.g. partial_hessian, factor_sums; docs/methods.md)");

    public static readonly Counter<long> JobsStarted = Meter.CreateCounter<long>("influence.jobs.started", "{job}", "Jobs a coordinator on this silo started or resumed (kind)");
    public static readonly Counter<long> JobsFinished = Meter.CreateCounter<long>("influence.jobs.finished", "{job}", "Jobs that ended on this silo (kind, outcome: completed, failed or cancelled)");

    private static readonly ConcurrentDictionary<(string Job, string Kind), double> Progress = new();

    static InfluenceMetrics()
    {
        // One series per running job, removed when the job ends: between jobs there is none. The
        // label is job_id, not job: Prometheus' own "job" label (the scrape job) would rename it.
        Meter.CreateObservableGauge("influence.job.progress", () => Progress.Select(p =>
            new Measurement<double>(p.Value, new KeyValuePair<string, object?>("job_id", p.Key.Job), new KeyValuePair<string, object?>("kind", p.Key.Kind))),
            "1", "Fraction of the current phase done, per running job coordinated on this silo (no series between jobs)");
        // Every kind always has a series, 0 when idle: a dashboard then reads 0, not "no data".
        Meter.CreateObservableGauge("influence.jobs.running", () => JobKinds.All.Select(kind =>
            new Measurement<long>(Progress.Keys.Count(k => k.Kind == kind), new KeyValuePair<string, object?>("kind", kind))),
            "{job}", "Jobs coordinated on this silo now (kind)");
    }

    /// <summary>The kind label of the short-training metrics.</summary>
    public static KeyValuePair<string, object?> KindTag(Influence.Abstractions.ShortTrainingKind kind) =>
        new("kind", kind switch
        {
            Influence.Abstractions.ShortTrainingKind.Loo => JobKinds.Loo,
            Influence.Abstractions.ShortTrainingKind.Correct => JobKinds.Correct,
            _ => JobKinds.Fading,
        });

    /// <summary>Creates the counters' series at zero, so that dashboards and rate() see them before the first event.</summary>
    public static void Initialise()
    {
        foreach (var kind in Enum.GetValues<Influence.Abstractions.ShortTrainingKind>())
        {
            var tag = KindTag(kind);
            RetrainsStarted.Add(0, tag);
            RetrainsCompleted.Add(0, tag);
            RetrainsFailed.Add(0, tag);
            RetrainsInFlight.Add(0, tag);
            JobRetrainsDone.Add(0, tag);
        }
        ExamplesScored.Add(0);
        GradientsComputed.Add(0);
        CurvatureProducts.Add(0);
    }

    public static void JobProgress(string jobId, string kind, long done, long total)
    {
        System.Diagnostics.Debug.Assert(JobKinds.All.Contains(kind), $"unknown job kind '{kind}'"); // a metric never fails a job
        Progress[(jobId, kind)] = total > 0 ? Math.Clamp((double)done / total, 0, 1) : 0;
    }

    public static void JobEnded(string jobId, string kind, string outcome)
    {
        Progress.TryRemove((jobId, kind), out _);
        JobsFinished.Add(1, new KeyValuePair<string, object?>("kind", kind), new KeyValuePair<string, object?>("outcome", outcome));
    }
}
