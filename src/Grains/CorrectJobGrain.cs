using System.Diagnostics;
using System.Text.Json;
using Influence.Abstractions;
using Influence.Core.Correction;
using Influence.Core.Jobs;
using Influence.Core.Storage;
using Influence.Reports;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>
/// Coordinates an `influence correct` job: the score job of the same id (θ̂ and the method's
/// influence on every requested test point), a grad-dot score job on the same θ̂ where grad-dot is
/// a selection, the frozen plan of mispredicted test points, their fine-tuning units on the retrain
/// workers (the dispatch, failure and resume behaviour of a LOO study), then the report.
/// </summary>
public sealed partial class CorrectJobGrain(
    [PersistentState("job", JobGrainNames.StorageName)] IPersistentState<JobRecord<CorrectJobRequest>> record,
    ComputeExecutor executor,
    ArtifactCache cache,
    IArtifactStore store,
    Microsoft.Extensions.Options.IOptions<InputFileOptions> inputs,
    ILogger<CorrectJobGrain> logger) : JobGrain<CorrectJobRequest>(record, logger), ICorrectJobGrain
{
    protected override string Kind => JobKinds.Correct;

    protected override Func<Task> Prepare(CorrectJobRequest request)
    {
        request.Settings.Validate();
        if (request.ParallelPerSilo < 1) throw new SettingError($"{SettingError.Name("Parallel")} must be ≥ 1, not {request.ParallelPerSilo}");
        return () => RunAsync(request);
    }

    protected override async Task CancelChildren()
    {
        foreach (var id in new[] { JobId, $"{JobId}-grad-dot" })
        {
            try { await Grains.GetGrain<IScoreJobGrain>(id).Cancel().WaitAsync(RetrainWorkerPool<CorrectUnit>.CallTimeout); }
            catch (Exception e) when (e is OrleansException or TimeoutException) { /* it stops when its silo does */ }
        }
    }

    private void Set(JobPhase phase, long done, long total, string message, double rate = 0, double eta = 0, string? outputPrefix = null) =>
        Tracker.Set(phase, done, total, message, rate, eta, outputPrefix);

    private async Task RunAsync(CorrectJobRequest request)
    {
        var settings = request.Settings;
        Set(JobPhase.Training, 0, 0, "starting");
        var job = new CorrectJob(store, JobId, settings) { AllowLocalFiles = inputs.Value.AllowLocalFiles };
        var timings = new Dictionary<string, double>();
        var phase = Stopwatch.StartNew();
        await executor.Run(() => { job.CheckSettings(); return 0; });
        await RunScoreJobAsync(store, executor, JobId, settings.ScoreJob, "score job");
        if (settings.NeedsGradDotJob) await RunScoreJobAsync(store, executor, job.GradDotJobId, settings.GradDotJob(job.CheckpointInput), "grad-dot job");
        timings["score"] = Lap(phase);

        var (plan, data) = await executor.Run(() =>
        {
            var d = job.Score.LoadData();
            using var s = store.OpenRead(job.Score.CheckpointKey);
            return (job.Plan(d, Core.Models.Checkpoint.Load(s)), d);
        });
        await RetrainWorkerPool<CorrectUnit>.RunAsync(Grains, executor, JobId, ShortTrainingKind.Correct, request.ParallelPerSilo, plan.Units,
            u => u.Id, job.IsDone, u => u.Targets.Length * plan.RunsPerTarget,
            u => $"unit {u.Id} (test points {string.Join(",", u.Targets.Select(t => plan.Targets[t]))})",
            $"fine-tuning runs of {plan.Targets.Length} mispredicted test points", (p, message) => Set(JobPhase.Retraining, p.Done + p.InFlight, p.Total, message, p.Rate, p.EtaSeconds),
            Cancellation, logger);
        timings["fine_tune"] = Lap(phase);

        Set(JobPhase.Writing, 0, 1, "writing the report");
        timings["total_before_report"] = Tracker.ElapsedSeconds;
        await executor.Run(() =>
        {
            var rows = plan.Units.SelectMany(job.ReadUnit).ToList();
            var summary = job.Score.LoadSummary();
            var header = new CorrectReportHeader(JobId, summary.Model.Description, settings.Score.Method, settings.Direction, plan.TrainCount, plan.TestCount,
                settings.Score.TestIndices.Length, plan.Targets.Length, summary.Training.TestAccuracy, timings);
            var files = CorrectReport.Write(store, header, rows);
            var all = ScoreOutputs.Files.Concat(files).Distinct().ToArray();
            store.Write(JobKeys.Manifest(JobId), s => JsonSerializer.Serialize(s, all));
            return 0;
        });
        cache.Evict($"{job.Prefix}/");
        Set(JobPhase.Completed, plan.TaskCount, plan.TaskCount, $"done in {Tracker.ElapsedSeconds:F1} s", outputPrefix: job.Prefix);
        LogCompleted(JobId, plan.Targets.Length, plan.TaskCount, Tracker.ElapsedSeconds);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: {Targets} mispredicted test points, {Runs} fine-tuning runs, report written, {Seconds:F1} s")]
    private partial void LogCompleted(string jobId, int targets, int runs, double seconds);
}
