using System.Collections.Concurrent;
using System.Diagnostics;
using Influence.Abstractions;
using Influence.Core.Loo;
using Influence.Core.Models;
using Influence.Core.Storage;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>A thin shell around <see cref="LooJob.RunUnit"/>, run on the silo's compute executor.</summary>
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
            InfluenceMetrics.UnitDuration.Record(sw.Elapsed.TotalSeconds);
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

    private int Work(RetrainAssignment a)
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
        int n = unit.Items.Length;
        InfluenceMetrics.RetrainsStarted.Add(n);
        InfluenceMetrics.RetrainsInFlight.Add(n);
        try
        {
            job.RunUnit(unit, context, plan, new Progress(k => progress.AddOrUpdate(a.UnitId, k, (_, v) => v + k)), executor.Stopping);
            InfluenceMetrics.RetrainsCompleted.Add(n);
        }
        catch
        {
            InfluenceMetrics.RetrainsFailed.Add(n);
            throw;
        }
        finally
        {
            InfluenceMetrics.RetrainsInFlight.Add(-n);
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
