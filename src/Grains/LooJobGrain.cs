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
/// Dispatch (<see cref="UnitDispatcher{TUnit, TWorker, TResult}"/>) relies on neither a failing
/// call nor a worker's memory: the artifact store is the record of what is finished. A worker
/// that stops answering for <see cref="RetrainWorkerPool{TUnit}.WorkerDeadline"/>, or answers that it never heard of its
/// unit (a re-activation after its silo died), has its unit handed to another worker; running a
/// unit twice is harmless because a unit's result is written once under its id and a unit that
/// has a result is skipped.
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
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);

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
        try { await Grains.GetGrain<IScoreJobGrain>(JobId).Cancel().WaitAsync(CallTimeout); }
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
        await RunScoreJobAsync(store, executor, JobId, settings.ScoreJob, "score job"); // θ̂ and the predictions
        timings["score"] = Lap(phase);

        var (data, checkpoint) = await executor.Run(() =>
        {
            var d = job.Score.LoadData();
            using var s = store.OpenRead(job.Score.CheckpointKey);
            return (d, Checkpoint.Load(s));
        });
        var plan = await executor.Run(() => job.Plan(data, checkpoint));
        // newton-step's own prediction of each LDS subset (kept as an artifact), before any retrain: a model it cannot handle fails here, not after hours of retrains.
        await executor.Run(() => job.GroupPredictions(plan, data, checkpoint, job.InfluenceSummary().Curvature.Damping, warning => logger.LogWarning("loo job {JobId}: {Warning}", JobId, warning)));
        await RetrainWorkerPool<LooUnit>.RunAsync(Grains, executor, JobId, ShortTrainingKind.Loo, request.ParallelPerSilo, plan.Units,
            u => u.Id, job.IsDone, u => u.Items.Length,
            u => $"unit {u.Id} ({u.Mode} {u.Kind}, items {string.Join(",", u.Items.Take(5))}{(u.Items.Length > 5 ? "…" : "")})",
            "retrains", (p, message) => Set(JobPhase.Retraining, p.Done + p.InFlight, p.Total, message, p.Rate, p.EtaSeconds), Cancellation, logger);
        timings["retrain"] = Lap(phase);

        Set(JobPhase.Writing, 0, 1, "writing the report");
        timings["total_before_report"] = Tracker.ElapsedSeconds;
        await executor.Run(() => WriteReport(job, plan, data, checkpoint, timings));
        cache.Evict($"{job.Prefix}/");
        Set(JobPhase.Completed, plan.TaskCount, plan.TaskCount, $"done in {Tracker.ElapsedSeconds:F1} s", outputPrefix: job.Prefix);
        LogCompleted(JobId, plan.TaskCount, Tracker.ElapsedSeconds);
    }

    private int WriteReport(LooJob job, LooPlan plan, TrainTestData data, Checkpoint checkpoint, Dictionary<string, double> timings)
    {
        var rows = plan.Units.SelectMany(job.ReadUnit).ToList();
        var predicted = job.PredictedDeltas(plan.TrainCount);
        var summary = job.InfluenceSummary();
        var curvature = summary.Curvature;
        var results = LooResults.Build(plan, predicted, rows, job.GroupPredictions(plan, data, checkpoint, curvature.Damping));
        var header = new LooReportHeader(JobId, checkpoint.Spec.Describe(), checkpoint.Spec.ParameterCount, plan.TrainCount,
            job.Settings.Remove, curvature.Damping, summary.Training.TestAccuracy,
            curvature.MinEigenvalue ?? double.NaN, curvature.MaxEigenvalue ?? double.NaN, timings);
        var files = LooReport.Write(store, header, results);
        var all = ScoreOutputs.Files.Concat(files).Distinct().ToArray();
        store.Write(JobKeys.Manifest(JobId), s => JsonSerializer.Serialize(s, all));
        return files.Count;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: {Tasks} retrains done, report written, {Seconds:F1} s")]
    private partial void LogCompleted(string jobId, int tasks, double seconds);


}
