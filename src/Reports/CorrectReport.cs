using System.Globalization;
using System.Text;
using Influence.Core.Correction;
using Influence.Core.Storage;

namespace Influence.Reports;

/// <summary>What correct.md says about the job besides its rows.</summary>
public sealed record CorrectReportHeader(string JobId, string Model, string Method, CorrectDirection Direction, int TrainCount, int TestCount,
    int Requested, int Targets, double TestAccuracy, IReadOnlyDictionary<string, double> TimingsSeconds);

/// <summary>One cell of the table: a selection at one k, step count and learning rate, over targets (and seeds).</summary>
/// <param name="FixLow">Wilson 95 % interval of the fix rate.</param>
/// <param name="TargetLossMedianChange">The median change of the target's loss: the mean is ruled by the few runs whose loss explodes.</param>
/// <param name="AccuracyHalfWidth">Half-width of the 95 % interval of the mean collateral accuracy change (normal approximation over runs).</param>
public sealed record CorrectCell(string Selection, int K, int Steps, double Lr, int Runs, double FixRate, double FixLow, double FixHigh,
    double TargetLossChange, double TargetLossMedianChange, double AccuracyChange, double AccuracyHalfWidth, double LossChange, double LossHalfWidth);

/// <summary>Influence against one other selection at one setting: the paired difference of fix rates over targets.</summary>
public sealed record CorrectComparison(string Baseline, int K, int Steps, double Lr, int Targets, double Difference, double HalfWidth);

/// <summary>correct.csv (every run), correct.md (fix rates, collateral, influence against each baseline) and the fix-rate plot.</summary>
public static class CorrectReport
{
    public const string PlotFile = "correct_fix_rate.png";

    private static string F(double v, string format = "0.000") => double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "–";

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        int m = sorted.Length / 2;
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
    }

    public static IReadOnlyList<CorrectCell> Cells(IReadOnlyList<CorrectRow> rows) =>
        rows.GroupBy(r => (r.Selection, r.K, r.Steps, r.Lr))
            .OrderBy(g => Selections.All.ToList().IndexOf(g.Key.Selection)).ThenBy(g => g.Key.K).ThenBy(g => g.Key.Steps).ThenBy(g => g.Key.Lr)
            .Select(g =>
            {
                int n = g.Count(), fixedCount = g.Count(r => r.Fixed);
                var (low, high) = Wilson(fixedCount, n);
                var (acc, accHalf) = MeanAndHalfWidth(g.Select(r => r.OtherAccuracyChange).ToArray());
                var (loss, lossHalf) = MeanAndHalfWidth(g.Select(r => r.OtherLossChange).ToArray());
                return new CorrectCell(g.Key.Selection, g.Key.K, g.Key.Steps, g.Key.Lr, n, (double)fixedCount / n, low, high,
                    g.Average(r => r.TargetLossAfter - r.TargetLossBefore), Median(g.Select(r => r.TargetLossAfter - r.TargetLossBefore)), acc, accHalf, loss, lossHalf);
            }).ToList();

    /// <summary>
    /// Influence's fix rate minus each other selection's, per target (a seeded selection's runs
    /// averaged per target first), with a 95 % interval from the paired differences.
    /// </summary>
    public static IReadOnlyList<CorrectComparison> Comparisons(IReadOnlyList<CorrectRow> rows)
    {
        var perTarget = rows.GroupBy(r => (r.Selection, r.K, r.Steps, r.Lr, r.TestIndex))
            .ToDictionary(g => g.Key, g => g.Average(r => r.Fixed ? 1.0 : 0.0));
        var result = new List<CorrectComparison>();
        foreach (var setting in rows.Where(r => r.Selection == Selections.Influence).Select(r => (r.K, r.Steps, r.Lr)).Distinct().OrderBy(s => s.K).ThenBy(s => s.Steps).ThenBy(s => s.Lr))
            foreach (var baseline in Selections.All.Where(s => s != Selections.Influence))
            {
                var differences = perTarget.Where(p => p.Key.Selection == Selections.Influence && (p.Key.K, p.Key.Steps, p.Key.Lr) == setting)
                    .Select(p => perTarget.TryGetValue((baseline, setting.K, setting.Steps, setting.Lr, p.Key.TestIndex), out var b) ? p.Value - b : double.NaN)
                    .Where(double.IsFinite).ToArray();
                if (differences.Length == 0) continue;
                var (mean, half) = MeanAndHalfWidth(differences);
                result.Add(new CorrectComparison(baseline, setting.K, setting.Steps, setting.Lr, differences.Length, mean, half));
            }
        return result;
    }

    /// <summary>The Wilson score interval (95 %) of a proportion: sensible at 0 and at n, unlike the normal one.</summary>
    public static (double Low, double High) Wilson(int successes, int n)
    {
        if (n == 0) return (double.NaN, double.NaN);
        const double z = 1.959963984540054;
        double p = (double)successes / n, z2 = z * z;
        double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / (1 + z2 / n);
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }

    private static (double Mean, double HalfWidth) MeanAndHalfWidth(double[] values)
    {
        double mean = values.Average();
        if (values.Length < 2) return (mean, double.NaN);
        double sd = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Length - 1));
        return (mean, 1.959963984540054 * sd / Math.Sqrt(values.Length));
    }

    /// <summary>Writes the three files under the job's prefix; returns their names.</summary>
    public static IReadOnlyList<string> Write(IArtifactStore store, CorrectReportHeader header, IReadOnlyList<CorrectRow> rows)
    {
        store.Write(JobKeys.Output(header.JobId, "correct.csv"), s => CorrectJob.WriteRows(s, rows));
        var cells = Cells(rows);
        var comparisons = Comparisons(rows);
        store.Write(JobKeys.Output(header.JobId, PlotFile), s => s.Write(Plot(cells)));
        store.Write(JobKeys.Output(header.JobId, "correct.md"), s => WriteMarkdown(s, header, cells, comparisons));
        return ["correct.csv", "correct.md", PlotFile];
    }

    /// <summary>Fix rate against k (log axis), one line per selection, at the most steps and the first learning rate.</summary>
    private static byte[] Plot(IReadOnlyList<CorrectCell> cells)
    {
        if (cells.Count == 0) return Plots.Lines("Mispredictions fixed", "k (examples fine-tuned on)", "fix rate", []);
        int steps = cells.Max(c => c.Steps);
        double lr = cells.Min(c => c.Lr);
        var series = cells.Where(c => c.Steps == steps && c.Lr == lr).GroupBy(c => c.Selection)
            .Select(g => g.OrderBy(c => c.K).ToArray())
            .Select(points => (points[0].Selection, points.Select(c => (double)c.K).ToArray(), points.Select(c => c.FixRate).ToArray())).ToList();
        return Plots.Lines(FormattableString.Invariant($"Mispredictions fixed after {steps} steps (lr {lr:G3})"), "k (examples fine-tuned on)", "fix rate", series, logX: true);
    }

    private static void WriteMarkdown(Stream stream, CorrectReportHeader h, IReadOnlyList<CorrectCell> cells, IReadOnlyList<CorrectComparison> comparisons)
    {
        using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        w.WriteLine($"# Correcting mispredictions by fine-tuning: job {h.JobId}");
        w.WriteLine();
        w.WriteLine($"{h.Model}, {h.TrainCount:N0} training rows, test accuracy {F(h.TestAccuracy, "P1")}. Of {h.Requested} test points asked for, θ̂ mispredicts {h.Targets}; " +
            $"each is fine-tuned from θ̂ by full-batch gradient steps on its selection's mean training loss (no regulariser). " +
            $"Influence: --method {h.Method}, direction {h.Direction.ToString().ToLowerInvariant()} (grad-dot follows it; the other selections are fine-tuned by descent). " +
            "Fixed: the target is predicted right after the steps. Collateral: the mean change of accuracy and loss over every other test row. " +
            "Intervals are 95 %: Wilson for fix rates, normal over runs for means.");
        w.WriteLine();
        w.WriteLine($"Timings (s): {string.Join(", ", h.TimingsSeconds.Select(t => $"{t.Key} {F(t.Value, "0.0")}"))}.");
        w.WriteLine();
        if (cells.Count == 0)
        {
            w.WriteLine("No test point among those asked for is mispredicted: nothing to correct.");
            return;
        }
        w.WriteLine($"![fix rate against k]({PlotFile})");
        w.WriteLine();
        w.WriteLine("## Fix rate and collateral");
        w.WriteLine();
        w.WriteLine("| selection | k | steps | lr | runs | fix rate [95 % CI] | target loss change: median (mean) | other accuracy change ± | other loss change ± |");
        w.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var c in cells)
            w.WriteLine($"| {c.Selection} | {c.K} | {c.Steps} | {F(c.Lr, "G3")} | {c.Runs} | {F(c.FixRate)} [{F(c.FixLow)}, {F(c.FixHigh)}] | {F(c.TargetLossMedianChange, "0.000E+0")} ({F(c.TargetLossChange, "0.000E+0")}) | " +
                $"{F(c.AccuracyChange, "0.0000")} ± {F(c.AccuracyHalfWidth, "0.0000")} | {F(c.LossChange, "0.000E+0")} ± {F(c.LossHalfWidth, "0.0E+0")} |");
        if (comparisons.Count == 0) return;
        w.WriteLine();
        w.WriteLine("## Influence against each other selection");
        w.WriteLine();
        w.WriteLine("Influence's fix rate minus the other selection's, paired by target (random selections averaged over their seeds first); positive: influence fixes more.");
        w.WriteLine();
        w.WriteLine("| other selection | k | steps | lr | targets | difference ± 95 % |");
        w.WriteLine("|---|---|---|---|---|---|");
        foreach (var c in comparisons)
            w.WriteLine($"| {c.Baseline} | {c.K} | {c.Steps} | {F(c.Lr, "G3")} | {c.Targets} | {F(c.Difference, "+0.000;-0.000;0.000")} ± {F(c.HalfWidth)} |");
    }
}
