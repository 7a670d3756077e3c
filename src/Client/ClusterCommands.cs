using Influence.Core.Storage;
using System.CommandLine;
using System.Globalization;
using Influence.Abstractions;
using Influence.Grains;
using Spectre.Console;

namespace Influence.Client;

/// <summary>`influence cluster status` and `influence job show|cancel JOB`: looking at and steering a running cluster.</summary>
public static class ClusterCommands
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private static readonly Option<string?> RequiredCluster = new("--cluster")
    {
        Description = $"The cluster: redis://HOST:PORT[,password=...] or localhost:GATEWAY_PORT (default ${ClusterConnection.ClusterVariable})",
        DefaultValueFactory = _ => ClusterConnection.DefaultCluster(),
        Validators = { r => { if (r.GetValueOrDefault<string?>() is null) r.AddError($"--cluster is required (or set ${ClusterConnection.ClusterVariable})"); } },
    };
    private static readonly Option<bool> All = new("--all") { Description = "List every job the cluster remembers, finished ones and those started by other jobs too" };
    private static readonly Argument<string> Job = new("JOB") { Description = "The job id (as printed when it was submitted)" };
    private static readonly Option<bool> Watch = new("--watch") { Description = "Keep the tables on screen, refreshed every --interval seconds, until Ctrl+C" };
    private static readonly Option<double> Interval = new("--interval") { Description = "--watch: seconds between refreshes", DefaultValueFactory = _ => 2.0 };

    public static Command Cluster()
    {
        var status = new Command("status", "Silos of the cluster, its jobs and their progress");
        status.Options.Add(RequiredCluster);
        status.Options.Add(All);
        status.Options.Add(Watch);
        status.Options.Add(Interval);
        status.SetAction((p, ct) => StatusAsync(p.GetValue(RequiredCluster)!, p.GetValue(All), p.GetValue(Watch), p.GetValue(Interval), ct));
        var command = new Command("cluster", "Look at a running cluster");
        command.Subcommands.Add(status);
        return command;
    }

    public static Command Jobs()
    {
        var show = new Command("show", "A job's status and progress");
        var cancel = new Command("cancel", "Stop a job (finished work stays in the store: the same job can be resumed)");
        foreach (var c in new[] { show, cancel })
        {
            c.Arguments.Add(Job);
            c.Options.Add(RequiredCluster);
        }
        show.SetAction((p, ct) => JobAsync(p.GetValue(RequiredCluster)!, p.GetValue(Job)!, cancel: false, ct));
        cancel.SetAction((p, ct) => JobAsync(p.GetValue(RequiredCluster)!, p.GetValue(Job)!, cancel: true, ct));
        var export = new Command("export", "Copy a finished job's outputs from the artifact store into --out (no cluster needed: the store the silos use)");
        export.Arguments.Add(Job);
        foreach (var o in new Option[] { ScoreCommand.Out, ScoreCommand.Overwrite, ScoreCommand.Store }) export.Options.Add(o);
        export.SetAction(p => Export(p.GetValue(Job)!, p));
        var command = new Command("job", "Look at, cancel or export one job");
        command.Subcommands.Add(show);
        command.Subcommands.Add(cancel);
        command.Subcommands.Add(export);
        return command;
    }

    private static int Export(string jobId, ParseResult parse)
    {
        OutputFolder output;
        try
        {
            Influence.Core.Safety.StoreKeys.CheckJobId(jobId, "JOB");
            output = ScoreCommand.PrepareOut(parse, "job export");
        }
        catch (ArgumentException e) { return ScoreCommand.Fail(e.Message, 2); }
        Influence.Core.Storage.IArtifactStore store;
        try { store = Influence.Storage.ArtifactStores.Open(Influence.Storage.ArtifactStoreOptions.Parse(parse.GetValue(ScoreCommand.Store)!)); }
        catch (Influence.Storage.ArtifactStoreException e) { return ScoreCommand.Fail($"--store: {e.Message}", 3); }
        // LOO jobs and studies list their files in outputs.json; a score job has the standard set.
        var required = store.Exists(JobKeys.Manifest(jobId)) ? "outputs.json" : "summary.json";
        if (!store.Exists($"{JobKeys.Prefix(jobId)}/{required}"))
            return ScoreCommand.Fail($"no finished job '{jobId}' in the store {store.Describe(JobKeys.Prefix(jobId))} (is --store the silos' store?)", 2);
        var written = output.Export(store, jobId, Influence.Core.Jobs.ScoreOutputs.Files, required);
        // The job's own reports; the explained test points need its data files, which the job's command has.
        ReportPage.Write(output, $"influence job {jobId}", ["report.md", "study.md", "correct.md", "fading.md"], null);
        Console.WriteLine($"Files in {output.FullPath}: {string.Join(", ", written)}");
        return 0;
    }

    public static IJobGrain Grain(IClusterClient client, JobEntry entry) => entry.Kind switch
    {
        "score" => client.GetGrain<IScoreJobGrain>(entry.JobId),
        "loo" => client.GetGrain<ILooJobGrain>(entry.JobId),
        "study" => client.GetGrain<IStudyJobGrain>(entry.JobId),
        "correct" => client.GetGrain<ICorrectJobGrain>(entry.JobId),
        "fading" => client.GetGrain<IFadingJobGrain>(entry.JobId),
        _ => throw new InvalidOperationException($"unknown job kind '{entry.Kind}'"),
    };

    private static async Task<int> StatusAsync(string cluster, bool all, bool watch, double interval, CancellationToken ct)
    {
        if (watch && !(interval >= 0.2 && interval <= 3600)) return ScoreCommand.Fail($"--interval must be 0.2-3600 seconds, not {interval}", 2);
        // Logs and pipes get the whole table rather than columns folded to 80 characters.
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 240;
        await using var connection = await ClusterConnection.OpenAsync(cluster, LocalStoreFolder, verbose: false, ct);
        if (!watch)
        {
            AnsiConsole.Write(await StatusTables(connection, all, ct));
            return 0;
        }
        try
        {
            await AnsiConsole.Live(await StatusTables(connection, all, ct)).StartAsync(async live =>
            {
                while (true)
                {
                    await Task.Delay(TimeSpan.FromSeconds(interval), ct);
                    live.UpdateTarget(await StatusTables(connection, all, ct));
                }
            });
        }
        catch (OperationCanceledException) { /* Ctrl+C ends the watch */ }
        return 0;
    }

    /// <summary>The silos (with the retrain workers active on each) and the jobs, with their progress and rates.</summary>
    private static async Task<Spectre.Console.Rendering.IRenderable> StatusTables(ClusterConnection connection, bool all, CancellationToken ct)
    {
        var management = connection.Client.GetGrain<IManagementGrain>(0);
        var silos = await management.GetDetailedHosts(onlyActive: true).WaitAsync(CallTimeout, ct);
        // Retrain workers (a LOO study's, correct's or fading's units in flight) per silo, from Orleans' activation counts.
        var workers = (await management.GetSimpleGrainStatistics().WaitAsync(CallTimeout, ct))
            .Where(g => g.GrainType.Contains(nameof(RetrainWorkerGrain), StringComparison.Ordinal))
            .GroupBy(g => g.SiloAddress).ToDictionary(g => g.Key, g => g.Sum(x => x.ActivationCount));
        var siloTable = new Table().Title($"{silos.Length} active silo(s) at {DateTime.UtcNow:HH:mm:ss} UTC").AddColumns("name", "address", "status", "started (UTC)", "retrain workers");
        foreach (var s in silos.OrderBy(s => s.SiloName, StringComparer.Ordinal))
            siloTable.AddRow(Markup.Escape(s.SiloName ?? "?"), Markup.Escape(s.SiloAddress.ToString()), s.Status.ToString(), s.StartTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
                workers.GetValueOrDefault(s.SiloAddress).ToString(CultureInfo.InvariantCulture));

        var entries = await connection.Client.GetGrain<IJobRegistryGrain>(JobGrainNames.RegistryKey).List().WaitAsync(CallTimeout, ct);
        var rows = new List<(JobEntry Entry, JobStatus? Status)>();
        foreach (var e in entries.Where(e => all || e.Parent is null).OrderByDescending(e => e.SubmittedUtc))
            rows.Add((e, await TryStatus(Grain(connection.Client, e), ct)));
        if (!all) rows = [.. rows.Where(r => r.Status is not { IsFinished: true }), .. rows.Where(r => r.Status is { IsFinished: true }).Take(10)];
        var jobTable = new Table().Title(all ? "Jobs" : "Jobs (running, and the 10 most recent finished; --all for every one)")
            .AddColumns("job", "kind", "phase", "progress", "rate", "ETA", "coordinator", "submitted (UTC)", "message");
        foreach (var (e, s) in rows)
            jobTable.AddRow(Markup.Escape(e.JobId), e.Kind, s?.Phase.ToString() ?? "unreachable", s is { Total: > 0 } ? $"{s.Done}/{s.Total}" : "",
                s is { Rate: > 0 } ? $"{s.Rate:G3}/s" : "", s is { Rate: > 0, IsFinished: false } ? $"{s.EtaSeconds:F0} s" : "",
                Markup.Escape(s?.Coordinator ?? ""), e.SubmittedUtc.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture), Markup.Escape(Shorten(s?.Error ?? s?.Message ?? "")));
        return new Rows(siloTable, jobTable);
    }

    private static async Task<int> JobAsync(string cluster, string jobId, bool cancel, CancellationToken ct)
    {
        await using var connection = await ClusterConnection.OpenAsync(cluster, LocalStoreFolder, verbose: false, ct);
        var entries = await connection.Client.GetGrain<IJobRegistryGrain>(JobGrainNames.RegistryKey).List().WaitAsync(CallTimeout, ct);
        // A LOO job and its score job share an id: the one the user submitted comes first.
        var entry = entries.Where(e => e.JobId == jobId).OrderBy(e => e.Parent is null ? 0 : 1).FirstOrDefault();
        if (entry is null) return ScoreCommand.Fail($"no job '{jobId}' in the cluster at {cluster} (influence cluster status --all lists them)", 2);
        var grain = Grain(connection.Client, entry);
        var status = cancel ? await grain.Cancel().WaitAsync(CallTimeout, ct) : await grain.GetStatus().WaitAsync(CallTimeout, ct);
        Console.WriteLine($"job:         {entry.JobId} ({entry.Kind}{(entry.Parent is null ? "" : $", started by {entry.Parent}")})");
        Console.WriteLine($"submitted:   {entry.SubmittedUtc:yyyy-MM-dd HH:mm:ss} UTC");
        Console.WriteLine($"phase:       {status.Phase}");
        if (status.Total > 0) Console.WriteLine($"progress:    {status.Done}/{status.Total}{(status.Rate > 0 ? $", {status.Rate:G3}/s, ETA {status.EtaSeconds:F0} s" : "")}");
        Console.WriteLine($"elapsed:     {status.ElapsedSeconds:F1} s");
        Console.WriteLine($"coordinator: {status.Coordinator}");
        Console.WriteLine($"message:     {status.Message}");
        if (status.Error is not null) Console.WriteLine($"error:       {status.Error}");
        if (status.OutputPrefix is not null) Console.WriteLine($"outputs:     {status.OutputPrefix}/ in the artifact store");
        return 0;
    }

    private static async Task<JobStatus?> TryStatus(IJobGrain grain, CancellationToken ct)
    {
        try { return await grain.GetStatus().WaitAsync(CallTimeout, ct); }
        catch (Exception e) when (e is OrleansException or TimeoutException) { return null; }
    }

    /// <summary>These commands read no artifacts; the local default store is only opened.</summary>
    private static string LocalStoreFolder => Influence.Core.Storage.LocalArtifactStore.DefaultRoot();

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";
}
