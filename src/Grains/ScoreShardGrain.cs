using System.Diagnostics;
using Influence.Abstractions;
using Influence.Core.Jobs;
using Influence.Core.Models;
using Influence.Core.Scoring;
using Influence.Core.Storage;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>A thin shell around <see cref="ScoreJob"/>'s shard steps, run on the compute executor.</summary>
[SpreadByIndexPlacement]
public sealed partial class ScoreShardGrain(
    ComputeExecutor executor,
    ArtifactCache cache,
    IArtifactStore store,
    Microsoft.Extensions.Options.IOptions<InputFileOptions> inputs,
    ILocalSiloDetails silo,
    ILogger<ScoreShardGrain> logger) : Grain, IScoreShardGrain
{
    private ShardAssignment? current;
    private volatile ShardReport report = new() { State = UnitState.Idle };
    private long done;

    public Task Start(ShardAssignment assignment)
    {
        Influence.Core.Safety.StoreKeys.CheckJobId(assignment.JobId, "job"); // anyone at a gateway can call a shard
        if (!Influence.Core.Safety.StoreKeys.IsPlainFileName(assignment.Stage))
            throw new ArgumentException($"'{Influence.Core.Safety.Echo.Cap(assignment.Stage)}' is not a stage name");
        if (current is not null && current.Stage == assignment.Stage && report.State is UnitState.Running or UnitState.Done)
            return Task.CompletedTask; // already under way: starting again is a no-op
        current = assignment;
        Interlocked.Exchange(ref done, 0);
        report = new ShardReport { State = UnitState.Running, Stage = assignment.Stage, Total = assignment.End - assignment.Start };
        _ = RunAsync(assignment);
        return Task.CompletedTask;
    }

    public Task<ShardReport> GetReport()
    {
        var r = report;
        return Task.FromResult(r.State == UnitState.Running ? new ShardReport { State = r.State, Stage = r.Stage, Total = r.Total, Done = Interlocked.Read(ref done) } : r);
    }

    private async Task RunAsync(ShardAssignment a)
    {
        var sw = Stopwatch.StartNew();
        string siloName = silo.SiloAddress.ToString();
        try
        {
            var top = await executor.Run(() => Work(a));
            InfluenceMetrics.ShardDuration.Record(sw.Elapsed.TotalSeconds, new KeyValuePair<string, object?>("stage", a.Stage));
            LogShardDone(a.JobId, a.Stage, a.ShardIndex, a.End - a.Start, sw.Elapsed.TotalSeconds, siloName);
            report = new ShardReport
            {
                State = UnitState.Done, Stage = a.Stage, Done = a.End - a.Start, Total = a.End - a.Start,
                Proponents = top?.Proponents.Select(l => l.Select(s => new TopKEntry(s.TrainIndex, s.Influence)).ToArray()).ToArray(),
                Opponents = top?.Opponents.Select(l => l.Select(s => new TopKEntry(s.TrainIndex, s.Influence)).ToArray()).ToArray(),
                Seconds = sw.Elapsed.TotalSeconds, Silo = siloName,
            };
        }
        catch (OperationCanceledException) when (executor.Stopping.IsCancellationRequested)
        {
            // The silo is stopping before the stage ran: Idle makes the coordinator start it again elsewhere.
            report = new ShardReport { State = UnitState.Idle, Stage = a.Stage, Silo = siloName };
        }
        catch (Exception e)
        {
            LogShardFailed(e, a.JobId, a.Stage, a.ShardIndex);
            report = new ShardReport { State = UnitState.Failed, Stage = a.Stage, Error = e.Message, Silo = siloName };
        }
    }

    /// <summary>Runs the stage; the score stage returns the shard's top-k lists (its outputs are in the store).</summary>
    private TopKLists? Work(ShardAssignment a)
    {
        var settings = cache.GetOrAdd(JobKeys.ScoreSettings(a.JobId), () => ScoreJob.LoadSettings(store, a.JobId));
        var job = new ScoreJob(store, a.JobId, settings) { Stopping = executor.Stopping, AllowLocalFiles = inputs.Value.AllowLocalFiles, ConcurrentShards = executor.Concurrency };
        var train = cache.GetOrAdd($"data:{settings.Train.Path}|{settings.Train.LabelsPath}|{settings.Train.FeatureScale}", () => job.LoadTrain());
        var checkpoint = cache.GetOrAdd(job.CheckpointKey, () => { using var s = store.OpenRead(job.CheckpointKey); return Checkpoint.Load(s); });
        if (a.Stage != ScorePipeline.ScoreStage)
        {
            long products = job.RunStage(a.Stage, checkpoint, train, new ShardUnit(a.ShardIndex, a.Start, a.End, a.Round),
                new Progress(n => Interlocked.Add(ref done, n)));
            if (products > 0) InfluenceMetrics.CurvatureProducts.Add(products);
            Interlocked.Exchange(ref done, a.End - a.Start);
            return null;
        }
        var plan = cache.GetOrAdd(job.TermsKey, () => job.LoadPlan(checkpoint));
        var progress = new Progress(n =>
        {
            Interlocked.Add(ref done, n);
            InfluenceMetrics.ExamplesScored.Add(n);
            // TRAK scores from stored features: no gradients at this stage.
            if (job.Method.ScoresWithGradients) InfluenceMetrics.GradientsComputed.Add(n * plan.Terms.Count);
        });
        var top = job.ScoreShard(checkpoint, train, plan, a.ShardIndex, a.Start, a.End, progress);
        return top;
    }

    /// <summary>Synchronous progress (System.Progress would post to a synchronisation context).</summary>
    private sealed class Progress(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: shard {Shard} {Stage} done ({Rows} rows, {Seconds:F2} s) on {Silo}")]
    private partial void LogShardDone(string jobId, string stage, int shard, int rows, double seconds, string silo);

    [LoggerMessage(Level = LogLevel.Error, Message = "Job {JobId}: shard {Shard} {Stage} failed")]
    private partial void LogShardFailed(Exception e, string jobId, string stage, int shard);
}
