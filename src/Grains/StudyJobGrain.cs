using System.Text.Json;
using Influence.Abstractions;
using Influence.Core.Storage;
using Influence.Reports;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>Runs a study grid: one LOO study per configuration, then the table (see <see cref="IStudyJobGrain"/>).</summary>
public sealed partial class StudyJobGrain(
    ComputeExecutor executor,
    IArtifactStore store,
    ILogger<StudyJobGrain> logger) : Grain, IStudyJobGrain
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);
    private JobStatusTracker tracker = null!;

    private string JobId => this.GetPrimaryKeyString();
    private string Prefix => $"jobs/{JobId}";

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        tracker = new JobStatusTracker(JobId);
        return Task.CompletedTask;
    }

    public Task<JobStatus> Start(StudyJobRequest request) => tracker.StartOnce(() =>
        request.Points.Length > 0 ? () => RunAsync(request) : throw new ArgumentException("the study grid is empty"));

    public Task<JobStatus> GetStatus() => tracker.Snapshot();

    public static string ConfigJobId(string studyId, int index) => $"{studyId}-c{index:D3}";

    private async Task RunAsync(StudyJobRequest request)
    {
        var rows = new List<StudyRow>();
        int total = request.Points.Length;
        try
        {
            for (int i = 0; i < total; i++)
            {
                var point = request.Points[i];
                var id = ConfigJobId(JobId, i);
                var grain = GrainFactory.GetGrain<ILooJobGrain>(id);
                int done = i;
                var s = await JobPolling.RunToEndAsync(() => grain.Start(point.Study), grain.GetStatus, PollInterval, status =>
                {
                    tracker.Set(status.Phase, done, total, $"{point.Label} ({done + 1}/{total}): {status.Message}");
                    return Task.CompletedTask;
                });
                if (s.Phase == JobPhase.Failed) throw new InvalidOperationException($"configuration {point.Label} failed: {s.Error}");
                var row = await executor.Run(() => StudyRow.From(store, $"jobs/{id}", point.Label, point.Depth, point.Width, point.WeightDecay, point.Seed));
                rows.Add(row);
                await executor.Run(() => { StudyTable.WriteCsv(store, $"{Prefix}/study.csv", rows); return 0; });
                LogConfigDone(JobId, point.Label, i + 1, total);
            }
            await executor.Run(() =>
            {
                StudyTable.WriteMarkdown(store, $"{Prefix}/study.md", request.Name, rows, tracker.ElapsedSeconds);
                store.Write($"{Prefix}/outputs.json", s => JsonSerializer.Serialize(s, new[] { "study.csv", "study.md" }));
                return 0;
            });
            tracker.Set(JobPhase.Completed, total, total, $"done in {tracker.ElapsedSeconds:F1} s", outputPrefix: Prefix);
        }
        catch (Exception e)
        {
            LogFailed(e, JobId);
            tracker.Fail(e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Study {JobId}: {Label} done ({Done}/{Total})")]
    private partial void LogConfigDone(string jobId, string label, int done, int total);

    [LoggerMessage(Level = LogLevel.Error, Message = "Study {JobId} failed")]
    private partial void LogFailed(Exception e, string jobId);
}
