using Influence.Core.Storage;
using System.CommandLine;
using System.Globalization;
using Influence.Abstractions;
using Influence.Core.Jobs;
using Influence.Core.Loo;
using Spectre.Console;

namespace Influence.Client;

/// <summary>`influence loo`: predicted against actual leave-one-out changes, with a report.</summary>
public static class LooCommand
{
    /// <summary>The study's defaults, from the settings record (one place).</summary>
    private static readonly LooSettings LooDefaults = new() { Score = ScoreSettings.Defaults, Remove = "all" };

    public static readonly Option<string> Remove = new("--remove") { Description = "all, top:K, bottom:K, random:K[,seed], file:PATH, a '+' union (top:20+bottom:20), or subsets:M,α[,seed] (LDS)", DefaultValueFactory = _ => LooDefaults.Remove };
    public static readonly Option<string> Retrain = new("--retrain") { Description = "warm, cold, both, pbrf, or a comma list (warm,pbrf)", DefaultValueFactory = _ => string.Join(",", LooDefaults.Modes.Select(SettingsJson.Word)) };
    public static readonly Option<int> Parallel = new("--parallel") { Description = "Units of retrains at once per silo (in embedded mode also the silo's compute tasks)", DefaultValueFactory = _ => new LooJobRequest { Settings = LooDefaults }.ParallelPerSilo };
    public static readonly Option<int> NoiseSeeds = new("--noise-seeds") { Description = "Cold retrains of the full training set with S other seeds (the noise floor; needs cold)", DefaultValueFactory = _ => LooDefaults.NoiseSeeds };
    public static readonly Option<string?> Resume = new("--resume") { Description = "Resume job JOB (same options): finished retrains are not redone" };
    public static readonly Option<int> WarmBatch = new("--warm-batch") { Description = "Warm logistic-regression retrains solved together", DefaultValueFactory = _ => LooDefaults.WarmBatch };
    public static readonly Option<double?> Tolerance = new("--tolerance") { Description = "Target ‖∇F‖ of each retrain (1e-12 for float64 logistic regression)" };

    public static Command Create()
    {
        var command = new Command("loo", "Leave-one-out ground truth: retrain without each chosen example and compare with the predicted change");
        foreach (var o in ScoreOptions()) command.Options.Add(o);
        foreach (var o in new Option[] { Remove, Retrain, Parallel, NoiseSeeds, Resume, WarmBatch, Tolerance }) command.Options.Add(o);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    /// <summary>The options `score` has, shared by every command that runs a score job first.</summary>
    public static IEnumerable<Option> ScoreOptions() => ScoreCommand.All;

    public static RetrainMode[] ParseModes(string text)
    {
        var words = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .SelectMany(m => m.ToLowerInvariant() == "both" ? new[] { "warm", "cold" } : [m]).ToArray();
        if (words.Length == 0) throw new ArgumentException("--retrain selects no mode");
        var modes = SettingsJson.Words<RetrainMode>();
        foreach (var m in words)
            if (!modes.Contains(m.ToLowerInvariant()))
                throw new ArgumentException($"--retrain: '{Influence.Core.Safety.Echo.Cap(m)}' is not a mode; use {string.Join(", ", modes.Take(2))}, both, {string.Join(", ", modes.Skip(2))} or a comma list");
        return words.Select(m => SettingsJson.Parse<RetrainMode>(m, "--retrain")).Distinct().ToArray();
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        LooJobRequest request;
        OutputFolder output;
        try
        {
            request = new LooJobRequest
            {
                Settings = new LooSettings
                {
                    Score = ScoreCommand.BuildSettings(parse),
                    Remove = parse.GetValue(Remove)!,
                    Modes = ParseModes(parse.GetValue(Retrain)!),
                    NoiseSeeds = parse.GetValue(NoiseSeeds),
                    WarmBatch = parse.GetValue(WarmBatch),
                    Tolerance = parse.GetValue(Tolerance),
                },
                ParallelPerSilo = parse.GetValue(Parallel),
            };
            request.Settings.Validate();
            if (request.ParallelPerSilo < 1) throw new ArgumentException($"--parallel must be ≥ 1, not {request.ParallelPerSilo}");
            if (parse.GetValue(Resume) is { } resume) Influence.Core.Safety.StoreKeys.CheckJobId(resume, "--resume");
            output = ScoreCommand.PrepareOut(parse, "loo");
        }
        catch (ArgumentException e) { return ScoreCommand.Fail(e, 2); }
        return await RunJobAsync(request, output, parse.GetValue(Resume), parse.GetValue(ScoreCommand.Cluster),
            parse.GetValue(ScoreCommand.Store)!, parse.GetValue(ScoreCommand.Verbose), ct);
    }

    public static async Task<int> RunJobAsync(LooJobRequest request, OutputFolder output, string? resume, string? cluster, string storeRoot, bool verbose, CancellationToken ct)
    {
        await using var connection = await ClusterConnection.OpenAsync(cluster, storeRoot, verbose, ct, request.ParallelPerSilo);
        var jobId = resume ?? JobRunner.NewJobId("loo");
        if (resume is not null && !connection.Store.Exists(JobKeys.LooSettings(resume)))
            return ScoreCommand.Fail($"--resume {resume}: no such job in the store {storeRoot}", 2);
        Console.WriteLine($"Job {jobId} on the {connection.Description}: remove {request.Settings.Remove}, retrain {string.Join("+", request.Settings.Modes.Select(SettingsJson.Word))}, {request.Settings.Score.TestIndices.Length} test points{(resume is null ? "" : " (resumed)")}");
        var status = await JobRunner.RunLooAsync(connection, jobId, request, ct);
        if (status.Phase == JobPhase.Cancelled) return ScoreCommand.Fail($"job {jobId} was cancelled (resume with --resume {jobId})", 4);
        if (status.Phase == JobPhase.Failed) return ScoreCommand.FailedJob($"job {jobId}", status, $"resume with --resume {jobId}");

        output.Export(connection.Store, jobId, Influence.Core.Jobs.ScoreOutputs.Files, "loo_summary.json");
        ReportPage.Write(output, $"influence loo: job {jobId}", ["report.md"], request.Settings.Score);
        PrintSummary(output.FullPath);
        Console.WriteLine($"Done in {status.ElapsedSeconds:F1} s. Report: {Path.Combine(output.FullPath, "report.md")}");
        return 0;
    }

    private static void PrintSummary(string outDir)
    {
        var path = Path.Combine(outDir, "loo_summary.json");
        if (!File.Exists(path)) return;
        LooSummary summary;
        using (var s = File.OpenRead(path)) summary = LooSummary.Read(s, path);
        static string F(double v) => double.IsFinite(v) ? v.ToString("0.0000", CultureInfo.InvariantCulture) : "n/a";
        if (summary.Modes.Count > 0)
        {
            var table = new Table().Title("Predicted against actual LOO change").AddColumns("mode", "retrains", "mean Spearman", "min Spearman", "mean Pearson", "pooled Spearman", "pooled Pearson", "retrain s");
            foreach (var m in summary.Modes)
                table.AddRow(SettingsJson.Word(m.Mode), m.Stats.Count.ToString(CultureInfo.InvariantCulture), F(m.MeanSpearman), F(m.MinSpearman),
                    F(m.MeanPearson), F(m.PooledSpearman), F(m.PooledPearson), m.Stats.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture));
            AnsiConsole.Write(table);
        }
        foreach (var l in summary.Lds)
            Console.WriteLine($"LDS ({SettingsJson.Word(l.Mode)}): mean Spearman {F(l.Mean)} ± {F(l.StandardDeviation)} over test points");
    }
}
