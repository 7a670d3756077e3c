using System.Diagnostics;
using System.Text.Json;
using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Loo;
using Influence.Core.Models;
using Influence.Core.Storage;
using Influence.Reports;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>
/// Coordinates a leave-one-out study: the score job of the same id (θ̂ and the predictions), the
/// frozen plan, the retrain units on worker grains (a bounded number per silo), then the report.
/// <para>
/// Dispatch relies on neither a failing call nor a worker's memory: the artifact store is the
/// record of what is finished. A worker that stops answering for <see cref="WorkerDeadline"/>,
/// or answers that it never heard of its unit (a re-activation after its silo died), has its
/// unit handed to another worker; running a unit twice is harmless because a unit's result is
/// written once under its id and a unit that has a result is skipped.
/// </para>
/// </summary>
public sealed partial class LooJobGrain(
    [PersistentState("job", JobGrainNames.StorageName)] IPersistentState<JobRecord<LooJobRequest>> record,
    ComputeExecutor executor,
    ArtifactCache cache,
    IArtifactStore store,
    Microsoft.Extensions.Options.IOptions<InputFileOptions> inputs,
    ILogger<LooJobGrain> logger) : JobGrain<LooJobRequest>(record, logger), ILooJobGrain
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);
    /// <summary>How long a worker may go without answering before its unit is given to another.</summary>
    public static readonly TimeSpan WorkerDeadline = TimeSpan.FromSeconds(15);
    private const int MaxAttempts = 3;

    protected override string Kind => JobKinds.Loo;

    protected override Func<Task> Prepare(LooJobRequest request)
    {
        var settings = request.Settings;
        settings.Validate();
        if (request.ParallelPerSilo < 1) throw new SettingError($"{SettingError.Name("Parallel")} must be ≥ 1, not {request.ParallelPerSilo}");
        return () => RunAsync(request, settings);
    }

    protected override async Task CancelChildren()
    {
        try { await GrainFactory.GetGrain<IScoreJobGrain>(JobId).Cancel().WaitAsync(CallTimeout); }
        catch (Exception e) when (e is OrleansException or TimeoutException) { /* it stops when its silo does */ }
    }

    private void Set(JobPhase phase, long done, long total, string message, double rate = 0, double eta = 0, string? outputPrefix = null) =>
        Tracker.Set(phase, done, total, message, rate, eta, outputPrefix);

    private async Task RunAsync(LooJobRequest request, LooSettings settings)
    {
        Set(JobPhase.Training, 0, 0, "starting");
        var job = new LooJob(store, JobId, settings) { AllowLocalFiles = inputs.Value.AllowLocalFiles };
        var timings = new Dictionary<string, double>();
        var phase = Stopwatch.StartNew();
        await executor.Run(() => { job.CheckSettings(); return 0; });
        await RunScoreJob(settings.Score, job);
        timings["score"] = Lap(phase);

        var (data, checkpoint) = await executor.Run(() =>
        {
            var d = job.Score.LoadData();
            using var s = store.OpenRead(job.Score.CheckpointKey);
            return (d, Checkpoint.Load(s));
        });
        var plan = await executor.Run(() => job.Plan(data, checkpoint));
        int workers = await RunUnits(request, job, plan);
        timings["retrain"] = Lap(phase);

        Set(JobPhase.Writing, 0, 1, "writing the report");
        timings["total_before_report"] = Tracker.ElapsedSeconds;
        await executor.Run(() => WriteReport(job, plan, data, checkpoint, timings));
        await ReleaseWorkers(workers);
        cache.Evict($"{job.Prefix}/");
        Set(JobPhase.Completed, plan.TaskCount, plan.TaskCount, $"done in {Tracker.ElapsedSeconds:F1} s", outputPrefix: job.Prefix);
        LogCompleted(JobId, plan.TaskCount, Tracker.ElapsedSeconds);
    }

    /// <summary>The score job of the same id trains θ̂ and predicts; skipped when its outputs exist (a resume).</summary>
    private async Task RunScoreJob(ScoreSettings request, LooJob job)
    {
        if (await executor.Run(() => store.Exists(job.InfluenceKey) && store.Exists($"{job.Prefix}/summary.json"))) return;
        var grain = GrainFactory.GetGrain<IScoreJobGrain>(JobId);
        await RegisterAsync(JobId, JobKinds.Score, parent: JobId);
        var s = await JobPolling.RunToEndAsync(() => grain.Start(request), grain.GetStatus, PollInterval, status =>
        {
            Set(status.Phase, status.Done, status.Total, $"score job: {status.Message}");
            return Task.CompletedTask;
        }, Cancellation);
        if (s.Phase == JobPhase.Cancelled) throw new OperationCanceledException(Cancellation);
        if (s.Phase == JobPhase.Failed) throw new InvalidOperationException($"the score job failed: {s.Error}");
    }

    private sealed class WorkerSlot(IRetrainWorkerGrain grain, SiloAddress? silo)
    {
        public IRetrainWorkerGrain Grain { get; } = grain;
        /// <summary>The silo this worker is placed on (null: wherever placement puts it).</summary>
        public SiloAddress? Silo { get; } = silo;
        public LooUnit? Unit { get; set; }
        public DateTime LastHeard { get; set; }
        public int Progress { get; set; }
        public DateTime CoolUntil { get; set; }
    }

    /// <summary>Runs every unfinished unit; returns the number of worker grains used.</summary>
    private async Task<int> RunUnits(LooJobRequest request, LooJob job, LooPlan plan)
    {
        var done = await executor.Run(() => plan.Units.Where(job.IsDone).Select(u => u.Id).ToHashSet());
        var pending = new Queue<LooUnit>(plan.Units.Where(u => !done.Contains(u.Id)));
        var attempts = new Dictionary<int, int>();
        var slots = new List<WorkerSlot>();
        int total = plan.TaskCount;
        int doneBefore = plan.Units.Where(u => done.Contains(u.Id)).Sum(u => u.Items.Length);
        int doneTasks = doneBefore;
        var sw = Stopwatch.StartNew();
        var management = GrainFactory.GetGrain<IManagementGrain>(0);
        var lastSiloCheck = DateTime.MinValue;
        int workerCount = 0;

        void Requeue(WorkerSlot slot, string why)
        {
            var unit = slot.Unit!;
            slot.Unit = null;
            slot.CoolUntil = DateTime.UtcNow + WorkerDeadline;
            if (!done.Contains(unit.Id) && !pending.Contains(unit)) pending.Enqueue(unit);
            LogRequeued(JobId, unit.Id, why);
        }

        while (pending.Count > 0 || slots.Any(s => s.Unit is not null))
        {
            // Workers: ParallelPerSilo per active silo; a silo that joins gets workers on the next check.
            if (DateTime.UtcNow - lastSiloCheck > TimeSpan.FromSeconds(5))
            {
                lastSiloCheck = DateTime.UtcNow;
                Dictionary<SiloAddress, SiloStatus>? hosts = null;
                try { hosts = await management.GetHosts(onlyActive: true).WaitAsync(CallTimeout); }
                catch (Exception e) when (e is OrleansException or TimeoutException) { /* keep the current pool */ }
                if (hosts is not null)
                {
                    // ParallelPerSilo workers pinned to each active silo: a silo that joins gets its own at once.
                    slots.RemoveAll(s => s.Unit is null && s.Silo is not null && !hosts.ContainsKey(s.Silo));
                    foreach (var silo in hosts.Keys.OrderBy(h => h.ToString(), StringComparer.Ordinal))
                        while (slots.Count(s => silo.Equals(s.Silo)) < request.ParallelPerSilo)
                            slots.Add(new WorkerSlot(GrainFactory.GetGrain<IRetrainWorkerGrain>($"{JobId}/worker/{workerCount++}"), silo));
                }
                else
                    while (slots.Count < request.ParallelPerSilo)
                        slots.Add(new WorkerSlot(GrainFactory.GetGrain<IRetrainWorkerGrain>($"{JobId}/worker/{workerCount++}"), null));
            }

            foreach (var slot in slots.Where(s => s.Unit is null && s.CoolUntil <= DateTime.UtcNow))
            {
                if (pending.Count == 0) break;
                var unit = pending.Dequeue();
                slot.Unit = unit;
                slot.Progress = 0;
                slot.LastHeard = DateTime.UtcNow;
                try
                {
                    if (slot.Silo is not null) RequestContext.Set(SpreadByIndexPlacement.SiloHintKey, slot.Silo);
                    await slot.Grain.Start(new RetrainAssignment { JobId = JobId, UnitId = unit.Id }).WaitAsync(CallTimeout);
                }
                catch (Exception e) when (e is OrleansException or TimeoutException) { Requeue(slot, $"start failed: {e.Message}"); }
                finally { RequestContext.Remove(SpreadByIndexPlacement.SiloHintKey); }
            }

            await Task.Delay(PollInterval, Cancellation);
            foreach (var slot in slots.Where(s => s.Unit is not null))
            {
                var unit = slot.Unit!;
                RetrainReport report;
                try { report = await slot.Grain.GetReport(unit.Id).WaitAsync(CallTimeout); }
                catch (Exception e) when (e is OrleansException or TimeoutException)
                {
                    if (DateTime.UtcNow - slot.LastHeard > WorkerDeadline) Requeue(slot, $"worker silent for {WorkerDeadline.TotalSeconds:F0} s ({e.GetType().Name})");
                    continue;
                }
                slot.LastHeard = DateTime.UtcNow;
                switch (report.State)
                {
                    case RetrainState.Running:
                        slot.Progress = report.Done;
                        break;
                    case RetrainState.Done:
                        if (await executor.Run(() => job.IsDone(unit)) && done.Add(unit.Id))
                        {
                            doneTasks += unit.Items.Length;
                            InfluenceMetrics.JobRetrainsDone.Add(unit.Items.Length);
                        }
                        slot.Unit = null;
                        break;
                    case RetrainState.Failed:
                        attempts[unit.Id] = attempts.GetValueOrDefault(unit.Id) + 1;
                        if (attempts[unit.Id] >= MaxAttempts)
                            throw new InvalidOperationException($"unit {unit.Id} ({unit.Mode} {unit.Kind}, items {string.Join(",", unit.Items.Take(5))}…) failed {MaxAttempts} times: {report.Error}");
                        Requeue(slot, $"failed: {report.Error}");
                        break;
                    case RetrainState.Idle:
                        Requeue(slot, "worker is not running it (re-activated elsewhere, or its silo is stopping)");
                        break;
                }
                // A unit finished elsewhere (a requeued duplicate) needs no more waiting.
                if (slot.Unit is { } u && done.Contains(u.Id)) slot.Unit = null;
            }

            int inFlight = slots.Where(s => s.Unit is not null).Sum(s => s.Progress);
            double rate = (doneTasks - doneBefore + inFlight) / Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
            double eta = rate > 0 ? (total - doneTasks - inFlight) / rate : 0;
            Set(JobPhase.Retraining, doneTasks + inFlight, total,
                $"{doneTasks + inFlight}/{total} retrains, {rate:G3}/s, {slots.Count(s => s.Unit is not null)} units running on {slots.Count} workers",
                rate, eta);
        }
        return workerCount;
    }

    private int WriteReport(LooJob job, LooPlan plan, TrainTestData data, Checkpoint checkpoint, Dictionary<string, double> timings)
    {
        var rows = plan.Units.SelectMany(job.ReadUnit).ToList();
        var predicted = job.PredictedDeltas(plan.TrainCount);
        var results = LooResults.Build(plan, predicted, rows);
        ScoreSummary summary;
        using (var summaryStream = store.OpenRead($"{job.Prefix}/summary.json")) summary = ScoreSummary.Read(summaryStream, $"{job.Prefix}/summary.json");
        var curvature = summary.Curvature;
        var header = new LooReportHeader(JobId, checkpoint.Spec.Describe(), checkpoint.Spec.ParameterCount, plan.TrainCount,
            job.Settings.Remove, curvature.Damping, summary.Training.TestAccuracy,
            curvature.MinEigenvalue ?? double.NaN, curvature.MaxEigenvalue ?? double.NaN, timings);
        var files = LooReport.Write(store, job.Prefix, header, results);
        var all = ScoreOutputs.Files.Concat(files).Distinct().ToArray();
        store.Write(JobKeys.Manifest(JobId), s => JsonSerializer.Serialize(s, all));
        return files.Count;
    }

    /// <summary>Methods without an eigenvalue estimate write null.</summary>

    private async Task ReleaseWorkers(int workers)
    {
        // Best effort: workers on other silos drop the job's cached tensors.
        var tasks = Enumerable.Range(0, workers).Select(k => GrainFactory.GetGrain<IRetrainWorkerGrain>($"{JobId}/worker/{k}"))
            .Select(async g => { try { await g.Release(JobId).WaitAsync(CallTimeout); } catch (Exception e) when (e is OrleansException or TimeoutException) { } });
        await Task.WhenAll(tasks);
    }

    private static double Lap(Stopwatch sw)
    {
        var s = sw.Elapsed.TotalSeconds;
        sw.Restart();
        return s;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: {Tasks} retrains done, report written, {Seconds:F1} s")]
    private partial void LogCompleted(string jobId, int tasks, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Job {JobId}: unit {Unit} handed back ({Reason})")]
    private partial void LogRequeued(string jobId, int unit, string reason);

}
