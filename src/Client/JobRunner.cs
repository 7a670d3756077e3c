using Influence.Abstractions;
using Influence.Core.Jobs;
using Spectre.Console;

namespace Influence.Client;

/// <summary>Submits a score job, shows its progress until it ends, and copies its outputs to the output folder.</summary>
public static class JobRunner
{
    public static async Task<JobStatus> RunScoreAsync(ClusterConnection connection, string jobId, ScoreJobRequest request, CancellationToken ct)
    {
        var grain = connection.Client.GetGrain<IScoreJobGrain>(jobId);
        var status = await grain.Start(request);
        if (status.IsFinished) return status;

        if (Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            // Plain lines for logs and CI: one per phase change, and every 10 s.
            var lastPhase = (JobPhase)(-1);
            var lastPrint = DateTime.MinValue;
            while (!status.IsFinished)
            {
                if (status.Phase != lastPhase || DateTime.UtcNow - lastPrint > TimeSpan.FromSeconds(10))
                {
                    Console.WriteLine($"[{status.ElapsedSeconds,6:F1}s] {status.Phase}: {status.Message}{(status.Total > 0 ? $" ({status.Done}/{status.Total})" : "")}");
                    lastPhase = status.Phase;
                    lastPrint = DateTime.UtcNow;
                }
                await Task.Delay(250, ct);
                status = await grain.GetStatus();
            }
            return status;
        }

        await AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
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
                    if (status.Total > 0) { task.MaxValue = status.Total; task.Value = status.Done; }
                    else task.IsIndeterminate = true;
                    await Task.Delay(250, ct);
                    status = await grain.GetStatus();
                }
                foreach (var t in tasks.Values) { t.IsIndeterminate = false; t.Value = t.MaxValue; }
            });
        return status;
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";

    /// <summary>Copies the job's output files from the artifact store into <paramref name="outDir"/>.</summary>
    public static void Export(ClusterConnection connection, string prefix, string outDir)
    {
        Directory.CreateDirectory(outDir);
        foreach (var file in ScoreOutputs.Files)
        {
            var key = $"{prefix}/{file}";
            if (!connection.Store.Exists(key)) continue;
            using var source = connection.Store.OpenRead(key);
            var target = Path.Combine(outDir, file);
            var temp = target + ".partial";
            using (var dest = File.Create(temp)) source.CopyTo(dest);
            File.Move(temp, target, overwrite: true);
        }
    }

    public static string NewJobId(string kind) => $"{kind}-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..6]}";
}
