using System.CommandLine;
using System.Globalization;
using Influence.Abstractions;
using Influence.Core.Correction;
using Influence.Core.Jobs;
using Influence.Core.Safety;
using Influence.Core.Storage;
using Spectre.Console;

namespace Influence.Client;

/// <summary>
/// `influence correct`: fix each mispredicted test point by a few fine-tuning steps on its most
/// influential training examples, against the selections a skeptic would propose (Schioppa et al. 2023).
/// </summary>
public static class CorrectCommand
{
    private static readonly CorrectSettings D = new() { Score = ScoreSettings.Defaults };

    public static readonly Option<string> K = new("--k") { Description = "Examples to fine-tune on, a comma list", DefaultValueFactory = _ => List(D.K) };
    public static readonly Option<string> Steps = new("--steps") { Description = "Fine-tuning steps at which each run is recorded, a comma list", DefaultValueFactory = _ => List(D.Steps) };
    public static readonly Option<string> FineTuneLr = new("--fine-tune-lr") { Description = "Learning rates of the fine-tuning steps, a comma list (--lr is the training optimiser's)", DefaultValueFactory = _ => List(D.LearningRates) };
    public static readonly Option<string> Direction = new("--direction") { Description = "proponents (descent on the top-k), opponents (ascent on the bottom-k) or both", DefaultValueFactory = _ => SettingsJson.Word(D.Direction) };
    public static readonly Option<string> SelectionsOpt = new("--selections") { Description = $"Selections to compare, a comma list of {string.Join(", ", Selections.All)}", DefaultValueFactory = _ => string.Join(",", D.Selections) };
    public static readonly Option<int> SelectionSeeds = new("--selection-seeds") { Description = "Draws of each random selection", DefaultValueFactory = _ => D.Seeds };

    private static string List<T>(IEnumerable<T> values) where T : IFormattable => string.Join(",", values.Select(v => v.ToString(null, CultureInfo.InvariantCulture)));

    public static Command Create()
    {
        var command = new Command("correct", "Fix mispredicted test points by fine-tuning on their most influential training examples, against baseline selections");
        foreach (var o in LooCommand.ScoreOptions()) command.Options.Add(o);
        foreach (var o in new Option[] { K, Steps, FineTuneLr, Direction, SelectionsOpt, SelectionSeeds, LooCommand.Parallel, LooCommand.Resume }) command.Options.Add(o);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    private static int[] Ints(ParseResult p, Option<string> option) =>
        p.GetValue(option)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : throw new ArgumentException($"{option.Name}: '{Echo.Cap(s)}' is not a positive integer"))
            .ToArray();

    private static double[] Doubles(ParseResult p, Option<string> option) =>
        p.GetValue(option)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : throw new ArgumentException($"{option.Name}: '{Echo.Cap(s)}' is not a number"))
            .ToArray();

    public static CorrectJobRequest BuildRequest(ParseResult parse)
    {
        var request = new CorrectJobRequest
        {
            Settings = new CorrectSettings
            {
                Score = ScoreCommand.BuildSettings(parse),
                K = Ints(parse, K),
                Steps = Ints(parse, Steps),
                LearningRates = Doubles(parse, FineTuneLr),
                Direction = SettingsJson.Parse<CorrectDirection>(parse.GetValue(Direction)!, "--direction"),
                Selections = parse.GetValue(SelectionsOpt)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => s.ToLowerInvariant()).ToArray(),
                Seeds = parse.GetValue(SelectionSeeds),
            },
            ParallelPerSilo = parse.GetValue(LooCommand.Parallel),
        };
        request.Settings.Validate();
        return request;
    }

    private static Task<int> RunAsync(ParseResult parse, CancellationToken ct) => UnitJobCommand.RunAsync(parse, ct, "correct",
        p => { var r = BuildRequest(p); return (r, r.ParallelPerSilo); }, CorrectJob.SettingsKeyOf,
        r => $"method {r.Settings.Score.Method}, direction {SettingsJson.Word(r.Settings.Direction)}, {r.Settings.Score.TestIndices.Length} test points (the mispredicted ones are corrected), " +
            $"k {string.Join(",", r.Settings.K)}, steps {string.Join(",", r.Settings.Steps)}",
        JobRunner.RunCorrectAsync, "correct.md", dir => PrintSummary(Path.Combine(dir, "correct.csv")), r => r.Settings.Score);

    /// <summary>The fix rate of each selection at the largest k and most steps (the first learning rate).</summary>
    private static void PrintSummary(string csv)
    {
        if (!File.Exists(csv)) return;
        IReadOnlyList<CorrectRow> rows;
        using (var s = File.OpenRead(csv)) rows = CorrectJob.ReadRows(s, csv);
        if (rows.Count == 0) { Console.WriteLine("No mispredicted test point among those asked for: nothing to correct."); return; }
        int k = rows.Max(r => r.K), steps = rows.Max(r => r.Steps);
        double lr = rows.Min(r => r.Lr);
        var table = new Table().Title(FormattableString.Invariant($"Fixed after {steps} steps on k = {k} (lr {lr:G3})")).AddColumns("selection", "runs", "fix rate", "other accuracy change");
        foreach (var c in Influence.Reports.CorrectReport.Cells(rows).Where(c => c.K == k && c.Steps == steps && c.Lr == lr))
            table.AddRow(c.Selection, c.Runs.ToString(CultureInfo.InvariantCulture), c.FixRate.ToString("0.000", CultureInfo.InvariantCulture), c.AccuracyChange.ToString("+0.0000;-0.0000;0", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);
    }
}
