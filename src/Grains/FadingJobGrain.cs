using System.Diagnostics;
using System.Text.Json;
using Influence.Abstractions;
using Influence.Core.Fading;
using Influence.Core.Jobs;
using Influence.Core.Storage;
using Influence.Reports;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>
/// Coordinates an `influence fading` job: the score job of the same id (θ₀ and the influence at θ₀),
/// the frozen plan of perturbed examples, their trajectory units on the retrain workers (the
/// dispatch, failure and resume behaviour of a LOO study), then the report.
/// </summary>
public sealed partial class FadingJobGrain(
    [PersistentState("job", JobGrainNames.StorageName)] IPersistentState<JobRecord<FadingJobRequest>> record,
    ComputeExecutor executor,
    ArtifactCache cache,
    IArtifactStore store,
    Microsoft.Extensions.Options.IOptions<InputFileOptions> inputs,
    ILogger<FadingJobGrain> logger) : JobGrain<FadingJobRequest>(record, logger), IFadingJobGrain
{
    protected override string Kind => JobKinds.Fading;

    protected override Func<Task> Prepare(FadingJobRequest request)
    {
        request.Settings.Validate();
        if (request.ParallelPerSilo < 1) throw new SettingError($"{SettingError.Name("Parallel")} must be ≥ 1, not {request.ParallelPerSilo}");
        return () => RunAsync(request);
    }

    protected override async Task CancelChildren()
    {
        try { await Grains.GetGrain<IScoreJobGrain>(JobId).Cancel().WaitAsync(RetrainWorkerPool<FadingUnit>.CallTimeout); }
        catch (Exception e) when (e is OrleansException or TimeoutException) { /* it stops when its silo does */ }
    }

    private async Task RunAsync(FadingJobRequest request)
    {
        var settings = request.Settings;
        Tracker.Set(JobPhase.Training, 0, 0, "starting", 0, 0, null);
        var job = new FadingJob(store, JobId, settings) { AllowLocalFiles = inputs.Value.AllowLocalFiles };
        var timings = new Dictionary<string, double>();
        var phase = Stopwatch.StartNew();
        await executor.Run(() => { job.CheckSettings(); return 0; });
        await RunScoreJobAsync(store, executor, JobId, settings.ScoreJob, "score job");
        timings["score"] = Lap(phase);

        var plan = await executor.Run(() => job.Plan(job.Score.LoadData()));
        await RetrainWorkerPool<FadingUnit>.RunAsync(Grains, executor, JobId, ShortTrainingKind.Fading, request.ParallelPerSilo, plan.Units,
            u => u.Id, job.IsDone, u => u.Items.Length, u => $"unit {u.Id} (training rows {string.Join(",", u.Items)})",
            $"perturbed trajectories of {settings.Steps:N0} steps", (p, message) => Tracker.Set(JobPhase.Retraining, p.Done + p.InFlight, p.Total, message, p.Rate, p.EtaSeconds, null),
            Cancellation, logger);
        timings["trajectories"] = Lap(phase);

        Tracker.Set(JobPhase.Writing, 0, 1, "writing the report", 0, 0, null);
        timings["total_before_report"] = Tracker.ElapsedSeconds;
        await executor.Run(() =>
        {
            var rows = plan.Units.SelectMany(job.ReadUnit).ToList();
            var summary = job.Score.LoadSummary();
            var header = new FadingReportHeader(JobId, summary.Model.Description, settings.Score.Method, settings.Perturb, settings.Steps, settings.LearningRate,
                settings.BatchSize, plan.TrainCount, plan.Removed.Length, plan.TestIndices.Length, timings);
            var files = FadingReport.Write(store, header, rows);
            store.Write(JobKeys.Manifest(JobId), s => JsonSerializer.Serialize(s, ScoreOutputs.Files.Concat(files).Distinct().ToArray()));
            return 0;
        });
        cache.Evict($"{job.Prefix}/");
        Tracker.Set(JobPhase.Completed, plan.TaskCount, plan.TaskCount, $"done in {Tracker.ElapsedSeconds:F1} s", 0, 0, job.Prefix);
        LogCompleted(JobId, plan.Removed.Length, Tracker.ElapsedSeconds);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: {Perturbed} perturbed trajectories, report written, {Seconds:F1} s")]
    private partial void LogCompleted(string jobId, int perturbed, double seconds);
}
