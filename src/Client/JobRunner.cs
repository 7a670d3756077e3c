using Influence.Abstractions;
using Influence.Core.Jobs;
using Influence.Grains;
using Spectre.Console;

namespace Influence.Client;

/// <summary>Submits a score job, shows its progress until it ends, and copies its outputs to the output folder.</summary>
public static class JobRunner
{
    /// <summary>The job this process last submitted (the interrupt message names it), or null.</summary>
    public static (string JobId, string Kind, bool Embedded)? Submitted { get; private set; }

    public static Task<JobStatus> RunScoreAsync(ClusterConnection connection, string jobId, ScoreSettings request, CancellationToken ct)
    {
        Submitted = (jobId, "score", connection.IsEmbedded);
        var grain = connection.Client.GetGrain<IScoreJobGrain>(jobId);
        if (!connection.IsEmbedded) request = new DataUpload(connection.Store).Apply(request);
        return WatchAsync(() => grain.Start(request), grain.GetStatus, ct);
    }

    public static Task<JobStatus> RunLooAsync(ClusterConnection connection, string jobId, LooJobRequest request, CancellationToken ct)
    {
        Submitted = (jobId, "loo", connection.IsEmbedded);
        var grain = connection.Client.GetGrain<ILooJobGrain>(jobId);
        if (!connection.IsEmbedded) request = new DataUpload(connection.Store).Apply(request);
        return WatchAsync(() => grain.Start(request), grain.GetStatus, ct);
    }

    public static Task<JobStatus> RunCorrectAsync(ClusterConnection connection, string jobId, CorrectJobRequest request, CancellationToken ct)
    {
        Submitted = (jobId, "correct", connection.IsEmbedded);
        var grain = connection.Client.GetGrain<ICorrectJobGrain>(jobId);
        if (!connection.IsEmbedded) request = new DataUpload(connection.Store).Apply(request);
        return WatchAsync(() => grain.Start(request), grain.GetStatus, ct);
    }

    public static Task<JobStatus> RunFadingAsync(ClusterConnection connection, string jobId, FadingJobRequest request, CancellationToken ct)
    {
        Submitted = (jobId, "fading", connection.IsEmbedded);
        var grain = connection.Client.GetGrain<IFadingJobGrain>(jobId);
        if (!connection.IsEmbedded) request = new DataUpload(connection.Store).Apply(request);
        return WatchAsync(() => grain.Start(request), grain.GetStatus, ct);
    }

    public static Task<JobStatus> RunStudyAsync(ClusterConnection connection, string jobId, StudyJobRequest request, CancellationToken ct)
    {
        Submitted = (jobId, "study", connection.IsEmbedded);
        var grain = connection.Client.GetGrain<IStudyJobGrain>(jobId);
        if (!connection.IsEmbedded) request = new DataUpload(connection.Store).Apply(request);
        return WatchAsync(() => grain.Start(request), grain.GetStatus, ct);
    }

    /// <summary>
    /// Starts a job and shows its progress until it ends. A coordinator whose silo died comes back
    /// empty (Pending) on another silo: starting it again resumes from the artifact store.
    /// </summary>
    private static async Task<JobStatus> WatchAsync(Func<Task<JobStatus>> start, Func<Task<JobStatus>> getStatus, CancellationToken ct)
    {
        var status = await start();
        if (status.IsFinished) return status;
        async Task<JobStatus> Poll(JobStatus last)
        {
            await Task.Delay(250, ct);
            return await JobPolling.NextAsync(start, getStatus, last, ct);
        }

        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            // Plain lines for logs and CI: one per phase change, and every 10 s, with an ETA from the
            // job's own rate (retraining) or from the phase's progress so far.
            var lastPhase = (JobPhase)(-1);
            var lastPrint = DateTime.MinValue;
            var (phaseStart, phaseStartDone) = (0.0, 0L);
            while (!status.IsFinished)
            {
                if (status.Phase != lastPhase) (phaseStart, phaseStartDone) = (status.ElapsedSeconds, status.Done);
                if (status.Phase != lastPhase || DateTime.UtcNow - lastPrint > TimeSpan.FromSeconds(10))
                {
                    double? etaSeconds = status.Rate > 0 ? status.EtaSeconds
                        : status.Done > phaseStartDone && status.Done < status.Total
                            ? (status.Total - status.Done) * (status.ElapsedSeconds - phaseStart) / (status.Done - phaseStartDone) : null;
                    var eta = etaSeconds is { } e ? $", ETA {e:F0} s" : "";
                    Console.WriteLine($"[{status.ElapsedSeconds,6:F1}s] {status.Phase}: {status.Message}{(status.Total > 0 ? $" ({status.Done}/{status.Total}{eta})" : "")}");
                    lastPhase = status.Phase;
                    lastPrint = DateTime.UtcNow;
                }
                status = await Poll(status);
            }
            return status;
        }

        await AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var tasks = new Dictionary<JobPhase, ProgressTask>();
                while (!status.IsFinished)
                {
                    foreach (var t in tasks.Where(t => t.Key < status.Phase)) t.Value.Value = t.Value.MaxValue;
                    if (!tasks.TryGetValue(status.Phase, out var task))
                    {
                        task = ctx.AddTask(status.Phase.ToString(), maxValue: 1);
                        tasks[status.Phase] = task;
                    }
                    task.Description = $"{status.Phase}: {Markup.Escape(Shorten(status.Message))}";
                    if (status.Total > 0) { task.IsIndeterminate = false; task.MaxValue = status.Total; task.Value = status.Done; }
                    else task.IsIndeterminate = true;
                    status = await Poll(status);
                }
                foreach (var t in tasks.Values) { t.IsIndeterminate = false; t.Value = t.MaxValue; }
            });
        return status;
    }

    private static string Shorten(string s) => s.Length <= 70 ? s : s[..67] + "...";

    public static string NewJobId(string kind) => $"{kind}-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..6]}";
}
