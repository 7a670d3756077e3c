using System.Collections.Concurrent;
using System.Diagnostics;
using Influence.Abstractions;
using Influence.Core.Correction;
using Influence.Core.Fading;
using Influence.Core.Loo;
using Influence.Core.Models;
using Influence.Core.Storage;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>A thin shell around <see cref="LooJob.RunUnit"/>, <see cref="CorrectJob.RunUnit"/> and <see cref="FadingJob.RunUnit"/>, run on the silo's compute executor.</summary>
[SpreadByIndexPlacement]
public sealed partial class RetrainWorkerGrain(
    ComputeExecutor executor,
    ArtifactCache cache,
    IArtifactStore store,
    Microsoft.Extensions.Options.IOptions<InputFileOptions> inputs,
    ILocalSiloDetails silo,
    ILogger<RetrainWorkerGrain> logger) : Grain, IRetrainWorkerGrain
{
    private readonly ConcurrentDictionary<int, RetrainReport> reports = new();
    private readonly ConcurrentDictionary<int, int> progress = new();

    public Task Start(RetrainAssignment a)
    {
        Influence.Core.Safety.StoreKeys.CheckJobId(a.JobId, "job"); // anyone at a gateway can call a worker
        if (reports.TryGetValue(a.UnitId, out var r) && r.State is UnitState.Running or UnitState.Done)
            return Task.CompletedTask; // already under way or finished: starting again is a no-op
        reports[a.UnitId] = new RetrainReport { State = UnitState.Running, UnitId = a.UnitId, Silo = silo.SiloAddress.ToString() };
        progress[a.UnitId] = 0;
        _ = RunAsync(a);
        return Task.CompletedTask;
    }

    public Task<RetrainReport> GetReport(int unitId)
    {
        if (!reports.TryGetValue(unitId, out var r)) return Task.FromResult(new RetrainReport { State = UnitState.Idle, UnitId = unitId });
        return Task.FromResult(r.State == UnitState.Running
            ? new RetrainReport { State = r.State, UnitId = unitId, Done = progress.GetValueOrDefault(unitId), Total = r.Total, Silo = r.Silo }
            : r);
    }

    public Task Release(string jobId)
    {
        cache.Evict($"{JobKeys.Prefix(jobId)}/");
        return Task.CompletedTask;
    }

    private async Task RunAsync(RetrainAssignment a)
    {
        var sw = Stopwatch.StartNew();
        string siloName = silo.SiloAddress.ToString();
        int items = 0;
        try
        {
            items = await executor.Run(() => Work(a));
            InfluenceMetrics.UnitDuration.Record(sw.Elapsed.TotalSeconds, InfluenceMetrics.KindTag(a.Kind));
            reports[a.UnitId] = new RetrainReport { State = UnitState.Done, UnitId = a.UnitId, Done = items, Total = items, Silo = siloName, Seconds = sw.Elapsed.TotalSeconds };
            LogUnitDone(a.JobId, a.UnitId, items, sw.Elapsed.TotalSeconds, siloName);
        }
        catch (OperationCanceledException) when (executor.Stopping.IsCancellationRequested)
        {
            // The silo is stopping: not a failure of the unit. Idle tells the coordinator to run it elsewhere.
            reports[a.UnitId] = new RetrainReport { State = UnitState.Idle, UnitId = a.UnitId, Silo = siloName };
        }
        catch (Exception e)
        {
            LogUnitFailed(e, a.JobId, a.UnitId);
            reports[a.UnitId] = new RetrainReport { State = UnitState.Failed, UnitId = a.UnitId, Error = e.Message, Silo = siloName };
        }
    }

    private int Work(RetrainAssignment a) => a.Kind switch
    {
        ShortTrainingKind.Loo => WorkLoo(a),
        ShortTrainingKind.Correct => WorkCorrect(a),
        ShortTrainingKind.Fading => WorkFading(a),
        _ => throw new ArgumentException($"unknown unit kind {(int)a.Kind}"),
    };

    private int WorkLoo(RetrainAssignment a)
    {
        var settings = cache.GetOrAdd(JobKeys.LooSettings(a.JobId), () => LooJob.LoadSettings(store, a.JobId));
        var job = new LooJob(store, a.JobId, settings) { AllowLocalFiles = inputs.Value.AllowLocalFiles };
        var plan = cache.GetOrAdd(job.PlanKey, () => job.LoadPlan() ?? throw new InvalidOperationException($"job {a.JobId} has no plan yet"));
        var unit = plan.Units.FirstOrDefault(u => u.Id == a.UnitId) ?? throw new InvalidOperationException($"unit {a.UnitId} is not in the plan of job {a.JobId}");
        if (job.IsDone(unit)) return unit.Items.Length;
        var context = cache.GetOrAdd($"{job.Prefix}/loo-context", () =>
        {
            var data = job.Score.LoadData();
            using var s = store.OpenRead(job.Score.CheckpointKey);
            return new LooContext(data, Checkpoint.Load(s), job.Settings.Score.TestIndices, job.InfluenceDamping());
        });
        return Counted(a, unit.Items.Length, p => job.RunUnit(unit, context, plan, p, executor.Stopping));
    }

    private int WorkCorrect(RetrainAssignment a)
    {
        var settings = cache.GetOrAdd(CorrectJob.SettingsKeyOf(a.JobId), () => CorrectJob.LoadSettings(store, a.JobId));
        var job = new CorrectJob(store, a.JobId, settings) { AllowLocalFiles = inputs.Value.AllowLocalFiles };
        var plan = cache.GetOrAdd(job.PlanKey, () => job.LoadPlan() ?? throw new InvalidOperationException($"job {a.JobId} has no plan yet"));
        var unit = plan.Units.FirstOrDefault(u => u.Id == a.UnitId) ?? throw new InvalidOperationException($"unit {a.UnitId} is not in the plan of job {a.JobId}");
        int runs = unit.Targets.Length * plan.RunsPerTarget;
        if (job.IsDone(unit)) return runs;
        var context = cache.GetOrAdd($"{job.Prefix}/correct-context", () => job.LoadContext(plan));
        return Counted(a, runs, p => job.RunUnit(unit, context, plan, p, executor.Stopping));
    }

    private int WorkFading(RetrainAssignment a)
    {
        var settings = cache.GetOrAdd(FadingJob.SettingsKeyOf(a.JobId), () => FadingJob.LoadSettings(store, a.JobId));
        var job = new FadingJob(store, a.JobId, settings) { AllowLocalFiles = inputs.Value.AllowLocalFiles };
        var plan = cache.GetOrAdd(job.PlanKey, () => job.LoadPlan() ?? throw new InvalidOperationException($"job {a.JobId} has no plan yet"));
        var unit = plan.Units.FirstOrDefault(u => u.Id == a.UnitId) ?? throw new InvalidOperationException($"unit {a.UnitId} is not in the plan of job {a.JobId}");
        if (job.IsDone(unit)) return unit.Items.Length;
        var context = cache.GetOrAdd($"{job.Prefix}/fading-context", () => job.LoadContext(plan));
        return Counted(a, unit.Items.Length, p => job.RunUnit(unit, context, plan, p, executor.Stopping));
    }

    /// <summary>Runs a unit of <paramref name="n"/> short trainings with the metrics and progress every kind reports.</summary>
    private int Counted(RetrainAssignment a, int n, Action<IProgress<int>> run)
    {
        var kind = InfluenceMetrics.KindTag(a.Kind);
        InfluenceMetrics.RetrainsStarted.Add(n, kind);
        InfluenceMetrics.RetrainsInFlight.Add(n, kind);
        try
        {
            run(new Progress(k => progress.AddOrUpdate(a.UnitId, k, (_, v) => v + k)));
            InfluenceMetrics.RetrainsCompleted.Add(n, kind);
        }
        catch
        {
            InfluenceMetrics.RetrainsFailed.Add(n, kind);
            throw;
        }
        finally
        {
            InfluenceMetrics.RetrainsInFlight.Add(-n, kind);
        }
        return n;
    }

    private sealed class Progress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: unit {Unit} done ({Items} retrains, {Seconds:F2} s) on {Silo}")]
    private partial void LogUnitDone(string jobId, int unit, int items, double seconds, string silo);

    [LoggerMessage(Level = LogLevel.Error, Message = "Job {JobId}: unit {Unit} failed")]
    private partial void LogUnitFailed(Exception e, string jobId, int unit);
}
