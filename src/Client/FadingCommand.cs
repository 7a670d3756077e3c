using System.CommandLine;
using System.Globalization;
using Influence.Abstractions;
using Influence.Core.Fading;
using Influence.Core.Jobs;
using Influence.Core.Safety;
using Influence.Core.Storage;
using Influence.Reports;
using Spectre.Console;

namespace Influence.Client;

/// <summary>
/// `influence fading`: how long influence predicts the effect of perturbing a training example as
/// minibatch training continues (Schioppa et al. 2023), against TracIn and the linearised trajectory.
/// </summary>
public static class FadingCommand
{
    private static readonly FadingSettings D = new() { Score = ScoreSettings.Defaults };

    public static readonly Option<string> Remove = new("--remove") { Description = "The training examples perturbed, as loo's --remove (top:K, random:K[,seed], file:PATH, ...)", DefaultValueFactory = _ => D.Remove };
    public static readonly Option<string> Perturb = new("--perturb") { Description = "remove (weight 1 → 0) or upweight:ε (weight 1 → 1 + ε)", DefaultValueFactory = _ => D.Perturb };
    public static readonly Option<int> Steps = new("--steps") { Description = "Steps T of plain minibatch SGD from θ₀ (learning rate --lr, batches of --train-batch); recorded at 1, 2, 5, 10, … and T", DefaultValueFactory = _ => D.Steps };

    public static Command Create()
    {
        var command = new Command("fading", "Follow the effect of perturbing training examples over continued minibatch training, against influence, TracIn and the linearised trajectory");
        foreach (var o in LooCommand.ScoreOptions()) command.Options.Add(o);
        foreach (var o in new Option[] { Remove, Perturb, Steps, LooCommand.Parallel, LooCommand.Resume }) command.Options.Add(o);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        FadingJobRequest request;
        OutputFolder output;
        string? resume = parse.GetValue(LooCommand.Resume);
        try
        {
            request = new FadingJobRequest
            {
                Settings = new FadingSettings
                {
                    Score = ScoreCommand.BuildSettings(parse),
                    Remove = parse.GetValue(Remove)!,
                    Perturb = parse.GetValue(Perturb)!,
                    Steps = parse.GetValue(Steps),
                },
                ParallelPerSilo = parse.GetValue(LooCommand.Parallel),
            };
            request.Settings.Validate();
            if (request.ParallelPerSilo < 1) throw new ArgumentException($"--parallel must be ≥ 1, not {request.ParallelPerSilo}");
            if (resume is not null) StoreKeys.CheckJobId(resume, "--resume");
            output = ScoreCommand.PrepareOut(parse, "fading");
        }
        catch (ArgumentException e) { return ScoreCommand.Fail(e, 2); }

        string storeRoot = parse.GetValue(ScoreCommand.Store)!;
        await using var connection = await ClusterConnection.OpenAsync(parse.GetValue(ScoreCommand.Cluster), storeRoot, parse.GetValue(ScoreCommand.Verbose), ct, request.ParallelPerSilo);
        var jobId = resume ?? JobRunner.NewJobId("fading");
        if (resume is not null && !connection.Store.Exists(FadingJob.SettingsKeyOf(resume)))
            return ScoreCommand.Fail($"--resume {resume}: no such fading job in the store {storeRoot}", 2);
        var s = request.Settings;
        Console.WriteLine($"Job {jobId} on the {connection.Description}: perturb ({s.Perturb}) {s.Remove}, {s.Steps:N0} SGD steps (lr {s.LearningRate.ToString("G3", CultureInfo.InvariantCulture)}, batches of {s.BatchSize}), {s.Score.TestIndices.Length} test points{(resume is null ? "" : " (resumed)")}");
        var status = await JobRunner.RunFadingAsync(connection, jobId, request, ct);
        if (status.Phase == JobPhase.Cancelled) return ScoreCommand.Fail($"job {jobId} was cancelled (resume with --resume {jobId})", 4);
        if (status.Phase == JobPhase.Failed) return ScoreCommand.Fail($"job {jobId} failed: {status.Error} (resume with --resume {jobId})", 1);
        output.Export(connection.Store, jobId, ScoreOutputs.Files, "fading.md");
        PrintSummary(Path.Combine(output.FullPath, "fading.csv"));
        Console.WriteLine($"Done in {status.ElapsedSeconds:F1} s. Report: {Path.Combine(output.FullPath, "fading.md")}");
        return 0;
    }

    private static void PrintSummary(string csv)
    {
        if (!File.Exists(csv)) return;
        IReadOnlyList<FadingRow> rows;
        using (var s = File.OpenRead(csv)) rows = FadingJob.ReadRows(s, csv);
        var table = new Table().Title("Mean Spearman of each prediction against the actual change").AddColumns("step", "influence", "TracIn", "linearised", "median ‖θ(j) − θ‖");
        foreach (var t in FadingReport.Steps(rows))
            table.AddRow(t.Step.ToString(CultureInfo.InvariantCulture), F(t.Spearman[0]), F(t.Spearman[1]), F(t.Spearman[2]), t.MedianDistance.ToString("0.00E+0", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);
        static string F(double v) => double.IsFinite(v) ? v.ToString("0.000", CultureInfo.InvariantCulture) : "–";
    }
}
