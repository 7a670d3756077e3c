using System.Text.Json;
using Influence.Abstractions;
using Influence.Core.Storage;
using Influence.Reports;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>Runs a study grid: one LOO study per configuration, then the table (see <see cref="IStudyJobGrain"/>).</summary>
public sealed partial class StudyJobGrain(
    [PersistentState("job", JobGrainNames.StorageName)] IPersistentState<JobRecord<StudyJobRequest>> record,
    ComputeExecutor executor,
    IArtifactStore store,
    ILogger<StudyJobGrain> logger) : JobGrain<StudyJobRequest>(record, logger), IStudyJobGrain
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);
    private string? currentConfig;

    private string Prefix => JobKeys.Prefix(JobId);

    protected override string Kind => JobKinds.Study;

    protected override Func<Task> Prepare(StudyJobRequest request) =>
        request.Points.Length > 0 ? () => RunAsync(request) : throw new ArgumentException("the study grid is empty");

    protected override async Task CancelChildren()
    {
        if (currentConfig is not { } id) return;
        try { await Grains.GetGrain<ILooJobGrain>(id).Cancel().WaitAsync(TimeSpan.FromSeconds(5)); }
        catch (Exception e) when (e is OrleansException or TimeoutException) { /* it stops when its silo does */ }
    }

    public static string ConfigJobId(string studyId, int index) => $"{studyId}-c{index:D3}";

    private async Task RunAsync(StudyJobRequest request)
    {
        var rows = new List<StudyRow>();
        int total = request.Points.Length;
        for (int i = 0; i < total; i++)
        {
            var point = request.Points[i];
            var id = ConfigJobId(JobId, i);
            var grain = Grains.GetGrain<ILooJobGrain>(id);
            currentConfig = id;
            await RegisterAsync(id, "loo", parent: JobId);
            int done = i;
            var s = await JobPolling.RunToEndAsync(() => grain.Start(point.Study), grain.GetStatus, PollInterval, status =>
            {
                Tracker.Set(status.Phase, done, total, $"{point.Label} ({done + 1}/{total}): {status.Message}");
                return Task.CompletedTask;
            }, Cancellation);
            if (s.Phase == JobPhase.Cancelled) throw new OperationCanceledException(Cancellation);
            if (s.Phase == JobPhase.Failed) throw ChildFailed(s, $"configuration {point.Label}");
            var row = await executor.Run(() => StudyRow.From(store, id, point.Label, point.Depth, point.Width, point.WeightDecay, point.DampingGiven, point.Seed));
            rows.Add(row);
            await executor.Run(() => { StudyTable.WriteCsv(store, JobKeys.Output(JobId, "study.csv"), rows); return 0; });
            LogConfigDone(JobId, point.Label, i + 1, total);
        }
        await executor.Run(() =>
        {
            StudyTable.WriteMarkdown(store, JobKeys.Output(JobId, "study.md"), request.Name, rows, Tracker.ElapsedSeconds);
            store.Write(JobKeys.Manifest(JobId), s => JsonSerializer.Serialize(s, new[] { "study.csv", "study.md" }));
            return 0;
        });
        Tracker.Set(JobPhase.Completed, total, total, $"done in {Tracker.ElapsedSeconds:F1} s", outputPrefix: Prefix);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Study {JobId}: {Label} done ({Done}/{Total})")]
    private partial void LogConfigDone(string jobId, string label, int done, int total);

}
