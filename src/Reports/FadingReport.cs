using System.Globalization;
using System.Text;
using Influence.Core.Fading;
using Influence.Core.Metrics;
using Influence.Core.Storage;

namespace Influence.Reports;

/// <summary>What fading.md says about the job besides its rows.</summary>
public sealed record FadingReportHeader(string JobId, string Model, string Method, string Perturb, int Steps, double LearningRate, int BatchSize,
    int TrainCount, int Perturbed, int TestPoints, IReadOnlyDictionary<string, double> TimingsSeconds);

/// <summary>One recorded step: each prediction's agreement with the actual change, and how far the runs have diverged.</summary>
/// <param name="Spearman">Per prediction (influence, TracIn, linearised): Spearman over the perturbed examples, averaged over test points.</param>
public sealed record FadingStep(int Step, double[] Spearman, double[] Pearson, double MedianDistance, double MeanAbsoluteDelta);

/// <summary>fading.csv, fading.md and its two plots.</summary>
public static class FadingReport
{
    public static readonly string[] Predictions = ["influence", "TracIn", "linearised"];
    public const string AgreementPlot = "fading_agreement.png";
    public const string DivergencePlot = "fading_divergence.png";

    private static string F(double v, string format = "0.000") => double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "–";

    public static IReadOnlyList<FadingStep> Steps(IReadOnlyList<FadingRow> rows) =>
        rows.GroupBy(r => r.Step).OrderBy(g => g.Key).Select(g =>
        {
            var perTest = g.GroupBy(r => r.TestIndex).Where(t => t.Count() >= 3).ToList();
            double Mean(Func<IReadOnlyList<double>, IReadOnlyList<double>, double> correlation, Func<FadingRow, double> predicted) =>
                perTest.Count == 0 ? double.NaN : perTest.Select(t => correlation(t.Select(predicted).ToArray(), t.Select(r => r.ActualDelta).ToArray())).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
            Func<FadingRow, double>[] predictions = [r => r.PredictedIf, r => r.PredictedTracin, r => r.PredictedLinear];
            var distances = g.GroupBy(r => r.TrainIndex).Select(j => j.First().ParamDistance).OrderBy(d => d).ToArray();
            return new FadingStep(g.Key, predictions.Select(p => Mean(Correlation.Spearman, p)).ToArray(), predictions.Select(p => Mean(Correlation.Pearson, p)).ToArray(),
                distances[distances.Length / 2], g.Average(r => Math.Abs(r.ActualDelta)));
        }).ToList();

    public static IReadOnlyList<string> Write(IArtifactStore store, FadingReportHeader header, IReadOnlyList<FadingRow> rows)
    {
        store.Write(JobKeys.Output(header.JobId, "fading.csv"), s => FadingJob.WriteRows(s, rows));
        var steps = Steps(rows);
        store.Write(JobKeys.Output(header.JobId, AgreementPlot), s => s.Write(Plot(steps, "Agreement with the actual change", "mean Spearman over test points",
            Predictions.Select((name, i) => (name, steps.Select(t => t.Spearman[i]).ToArray())).ToArray(), logY: false)));
        store.Write(JobKeys.Output(header.JobId, DivergencePlot), s => s.Write(Plot(steps, "Divergence of the perturbed runs", "median ‖θ_t(j) − θ_t‖",
            [("divergence", steps.Select(t => t.MedianDistance).ToArray())], logY: true)));
        store.Write(JobKeys.Output(header.JobId, "fading.md"), s => WriteMarkdown(s, header, steps));
        return ["fading.csv", "fading.md", AgreementPlot, DivergencePlot];
    }

    private static byte[] Plot(IReadOnlyList<FadingStep> steps, string title, string yLabel, (string Name, double[] Values)[] lines, bool logY)
    {
        var x = steps.Select(t => (double)t.Step).ToArray();
        return Plots.Lines(title, "training step t", yLabel, lines.Select(l => (l.Name, x, l.Values)).ToList(), logX: true, logY: logY);
    }

    private static void WriteMarkdown(Stream stream, FadingReportHeader h, IReadOnlyList<FadingStep> steps)
    {
        using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        w.WriteLine($"# Influence over training time: job {h.JobId}");
        w.WriteLine();
        w.WriteLine($"{h.Model}, {h.TrainCount:N0} training rows. From θ₀, {h.Steps:N0} steps of plain minibatch SGD (learning rate {F(h.LearningRate, "G3")}, batches of {h.BatchSize}, " +
            $"one seeded batch order for every run); {h.Perturbed} training examples each perturbed ({h.Perturb}) on the same batches; {h.TestPoints} test points. " +
            $"At each recorded step t, the actual change Δ(t) of each test loss against: the influence prediction at θ₀ (--method {h.Method}), " +
            "TracIn's sum of the perturbation's first-order effects along the baseline trajectory, and the linearised trajectory with the Hessian term " +
            "(δ_{s+1} = δ_s − η(H_B(θ_s)δ_s + 1[j ∈ B_s](ε/|B|)∇L(z_j; θ_s)), predicted ∇L(test; θ_t)·δ_t). Correlations are over the perturbed examples, averaged over test points.");
        w.WriteLine();
        w.WriteLine($"Timings (s): {string.Join(", ", h.TimingsSeconds.Select(t => $"{t.Key} {F(t.Value, "0.0")}"))}.");
        w.WriteLine();
        w.WriteLine($"![agreement]({AgreementPlot}) ![divergence]({DivergencePlot})");
        w.WriteLine();
        w.WriteLine("| step | Spearman: influence | TracIn | linearised | Pearson: influence | TracIn | linearised | median ‖θ_t(j) − θ_t‖ | mean abs Δ(t) |");
        w.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var t in steps)
            w.WriteLine($"| {t.Step} | {F(t.Spearman[0])} | {F(t.Spearman[1])} | {F(t.Spearman[2])} | {F(t.Pearson[0])} | {F(t.Pearson[1])} | {F(t.Pearson[2])} | {F(t.MedianDistance, "0.00E+0")} | {F(t.MeanAbsoluteDelta, "0.00E+0")} |");
    }
}
