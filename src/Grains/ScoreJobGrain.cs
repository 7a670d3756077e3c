using System.Diagnostics;
using Influence.Abstractions;
using Influence.Core.Jobs;
using Influence.Core.Scoring;
using Influence.Core.Storage;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>
/// Coordinates a score job: trains (or loads) the model, has shard grains compute partial
/// Hessians, factorises, has shards score their rows, merges the top-k lists and writes the
/// outputs. The job runs in the background; every step is idempotent over the artifact store.
/// </summary>
public sealed partial class ScoreJobGrain(
    [PersistentState("job", JobGrainNames.StorageName)] IPersistentState<JobRecord<ScoreJobRequest>> record,
    ComputeExecutor executor,
    ArtifactCache cache,
    IArtifactStore store,
    ILogger<ScoreJobGrain> logger) : JobGrain<ScoreJobRequest>(record, logger), IScoreJobGrain
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);

    protected override string Kind => "score";

    protected override Func<Task> Prepare(ScoreJobRequest request)
    {
        var settings = request.ToSettings();
        settings.Validate();
        return () => RunAsync(request, settings);
    }

    private void Set(JobPhase phase, long done, long total, string message, string? outputPrefix = null) =>
        Tracker.Set(phase, done, total, message, outputPrefix: outputPrefix);

    private async Task RunAsync(ScoreJobRequest request, ScoreSettings settings)
    {
        Set(JobPhase.Training, 0, 0, "loading data");
        var job = new ScoreJob(store, JobId, settings);
        var timings = new Dictionary<string, double>();
        var phase = Stopwatch.StartNew();
        var data = await executor.Run(job.LoadData);
        Set(JobPhase.Training, 0, 0, $"training on {data.Train.Count} examples");
        var progress = new MessageProgress(m => Set(JobPhase.Training, 0, 0, m));
        var checkpoint = await executor.Run(() => job.Prepare(data, progress));
        Cancellation.ThrowIfCancellationRequested();
        timings["train"] = Lap(phase);
        LogTrained(JobId, checkpoint.Spec.Describe(), checkpoint.GradientNorm, checkpoint.TrainSeconds);

        var ranges = ScoreSettings.ShardRanges(data.Train.Count, settings.Shards);
        var hessianReports = await RunShards(request, ShardStage.PartialHessian, ranges, JobPhase.Hessian);
        timings["hessian"] = Lap(phase);

        Set(JobPhase.Factorizing, 0, 1, $"factorising the {checkpoint.Spec.ParameterCount}×{checkpoint.Spec.ParameterCount} Hessian");
        var factorization = await executor.Run(() => job.Factorize(checkpoint, data, hessianReports.Select(r => r.OutputKey!).ToList()));
        timings["factorize"] = Lap(phase);

        var scoreReports = await RunShards(request, ShardStage.Score, ranges, JobPhase.Scoring);
        timings["score"] = Lap(phase);

        Set(JobPhase.Writing, 0, 1, "writing outputs");
        var merged = TopKLists.Merge(scoreReports.Select(ToTopK).ToList(), settings.TopK);
        var runs = ranges.Select((r, k) => new ShardRun(k, r.Start, r.End, scoreReports[k].Silo ?? "?", hessianReports[k].Seconds, scoreReports[k].Seconds)).ToList();
        timings["total_before_write"] = Tracker.ElapsedSeconds;
        await executor.Run(() =>
        {
            ScoreOutputs.Write(job, data, checkpoint, factorization, runs, merged, timings);
            job.DeleteWork();
            return 0;
        });
        cache.Evict(job.Prefix);
        Set(JobPhase.Completed, 1, 1, $"done in {Tracker.ElapsedSeconds:F1} s", job.Prefix);
        LogCompleted(JobId, Tracker.ElapsedSeconds);
    }

    private static double Lap(Stopwatch sw)
    {
        var s = sw.Elapsed.TotalSeconds;
        sw.Restart();
        return s;
    }

    private static TopKLists ToTopK(ShardReport r) => new(
        r.Proponents!.Select(l => l.Select(e => new Scored(e.TrainIndex, e.Influence)).ToArray()).ToArray(),
        r.Opponents!.Select(l => l.Select(e => new Scored(e.TrainIndex, e.Influence)).ToArray()).ToArray());

    /// <summary>
    /// Starts one stage on every shard grain and polls until all are done. A shard that reports
    /// Idle lost its activation (its silo went away) and is started again; the work is idempotent.
    /// </summary>
    private async Task<ShardReport[]> RunShards(ScoreJobRequest request, ShardStage stage, IReadOnlyList<(int Start, int End)> ranges, JobPhase phase)
    {
        var assignments = ranges.Select((r, k) => new ShardAssignment
        {
            JobId = JobId, Request = request, Stage = stage, ShardIndex = k, Start = r.Start, End = r.End,
        }).ToArray();
        var grains = assignments.Select(a => GrainFactory.GetGrain<IScoreShardGrain>($"{JobId}/{stage}/{a.ShardIndex}")).ToArray();
        long total = ranges.Sum(r => (long)(r.End - r.Start));
        Set(phase, 0, total, $"{stage} on {grains.Length} shards");
        await Task.WhenAll(grains.Select((g, k) => g.Start(assignments[k])));

        var results = new ShardReport?[grains.Length];
        var progress = new long[grains.Length];
        while (results.Any(r => r is null))
        {
            await Task.Delay(PollInterval, Cancellation);
            for (int k = 0; k < grains.Length; k++)
            {
                if (results[k] is not null) continue;
                ShardReport report;
                try { report = await grains[k].GetReport().WaitAsync(CallTimeout); }
                catch (Exception e) when (e is OrleansException or TimeoutException)
                {
                    LogShardUnreachable(JobId, k, e.Message);
                    continue;
                }
                progress[k] = report.Done;
                switch (report.State)
                {
                    case ShardState.Done: results[k] = report; break;
                    case ShardState.Failed: throw new InvalidOperationException($"shard {k} ({stage}) failed: {report.Error}");
                    case ShardState.Idle: await grains[k].Start(assignments[k]).WaitAsync(CallTimeout); break;
                }
            }
            Set(phase, progress.Sum(), total, $"{stage}: {results.Count(r => r is not null)}/{grains.Length} shards done");
        }
        return results!;
    }

    private sealed class MessageProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: trained {Model}, |grad| = {GradientNorm:E2} in {Seconds:F1} s")]
    private partial void LogTrained(string jobId, string model, double gradientNorm, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: completed in {Seconds:F1} s")]
    private partial void LogCompleted(string jobId, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Job {JobId}: shard {Shard} unreachable ({Reason}); will retry")]
    private partial void LogShardUnreachable(string jobId, int shard, string reason);
}
