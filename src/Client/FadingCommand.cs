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

    private static Task<int> RunAsync(ParseResult parse, CancellationToken ct) => UnitJobCommand.RunAsync(parse, ct, "fading",
        p =>
        {
            var request = new FadingJobRequest
            {
                Settings = new FadingSettings { Score = ScoreCommand.BuildSettings(p), Remove = p.GetValue(Remove)!, Perturb = p.GetValue(Perturb)!, Steps = p.GetValue(Steps) },
                ParallelPerSilo = p.GetValue(LooCommand.Parallel),
            };
            request.Settings.Validate();
            return (request, request.ParallelPerSilo);
        },
        FadingJob.SettingsKeyOf,
        r => $"perturb ({r.Settings.Perturb}) {r.Settings.Remove}, {r.Settings.Steps:N0} SGD steps (lr {r.Settings.LearningRate.ToString("G3", CultureInfo.InvariantCulture)}, " +
            $"batches of {r.Settings.BatchSize}), {r.Settings.Score.TestIndices.Length} test points",
        JobRunner.RunFadingAsync, "fading.md", dir => PrintSummary(Path.Combine(dir, "fading.csv")), r => r.Settings.Score);

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
