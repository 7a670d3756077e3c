using System.Globalization;
using System.Text;
using Influence.Core.Loo;
using Influence.Core.Storage;

namespace Influence.Reports;

/// <summary>What the report says about the study besides its numbers.</summary>
public sealed record LooReportHeader(string JobId, string ModelDescription, long Parameters, int TrainCount,
    string RemovalText, double Damping, double TestAccuracy, double MinEigenvalue, double MaxEigenvalue,
    IReadOnlyDictionary<string, double> TimingsSeconds);

/// <summary>
/// Writes a study's outputs to the artifact store: loo.csv (and lds.csv, noise.csv), retrains.csv,
/// loo_summary.json, report.md and the scatter plots it embeds. Returns the file names written.
/// </summary>
public static class LooReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static string R(double v) => v.ToString("R", Inv);
    private static string G(double v) => double.IsNaN(v) ? "n/a" : v.ToString("0.0000", Inv);
    private static string E(double v) => double.IsNaN(v) ? "n/a" : v.ToString("0.00E+0", Inv);
    private static string Mode(RetrainMode m) => m.ToString().ToLowerInvariant();

    /// <summary>Per-test-point plots are drawn for at most this many test points.</summary>
    public const int MaxPlottedTestPoints = 12;

    public static IReadOnlyList<string> Write(IArtifactStore store, LooReportHeader header, LooResults results)
    {
        var files = new List<string>();
        void Text(string name, Action<TextWriter> write)
        {
            store.Write(JobKeys.Output(header.JobId, name), s =>
            {
                using var w = new StreamWriter(s, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
                write(w);
            });
            files.Add(name);
        }
        void Png(string name, byte[] bytes)
        {
            store.Write(JobKeys.Output(header.JobId, name), s => s.Write(bytes));
            files.Add(name);
        }

        bool several = results.Modes.Count > 1;
        if (results.Pairs.Count > 0)
            Text("loo.csv", w =>
            {
                w.WriteLine(several ? "test_index,train_index,predicted_delta,loo_delta,mode" : "test_index,train_index,predicted_delta,loo_delta");
                foreach (var p in results.Pairs)
                    w.Write(several ? $"{p.TestIndex},{p.Item},{R(p.Predicted)},{R(p.Actual)},{Mode(p.Mode)}\n" : $"{p.TestIndex},{p.Item},{R(p.Predicted)},{R(p.Actual)}\n");
            });
        if (results.LdsPairs.Count > 0)
            Text("lds.csv", w =>
            {
                w.WriteLine("test_index,subset,predicted_delta,actual_delta,mode");
                foreach (var p in results.LdsPairs) w.Write($"{p.TestIndex},{p.Item},{R(p.Predicted)},{R(p.Actual)},{Mode(p.Mode)}\n");
            });
        var seedRows = results.Rows.Where(r => r.Kind == UnitKind.Seed).ToList();
        if (seedRows.Count > 0)
            Text("noise.csv", w =>
            {
                w.WriteLine("seed_offset,test_index,delta");
                foreach (var r in seedRows.OrderBy(r => r.Item).ThenBy(r => r.TestIndex)) w.Write($"{r.Item},{r.TestIndex},{R(r.Delta)}\n");
            });
        Text("retrains.csv", w =>
        {
            w.WriteLine("mode,kind,item,gradient_norm,iterations,distance,seconds,converged");
            foreach (var r in results.Rows.GroupBy(r => (r.Mode, r.Kind, r.Item)).Select(g => g.First()).OrderBy(r => r.Mode).ThenBy(r => r.Kind).ThenBy(r => r.Item))
                w.Write($"{Mode(r.Mode)},{r.Kind.ToString().ToLowerInvariant()},{r.Item},{R(r.GradientNorm)},{r.Iterations},{R(r.Distance)},{R(r.Seconds)},{(r.Converged ? 1 : 0)}\n");
        });

        var plots = new List<(string Title, string File)>();
        foreach (var m in results.Modes)
        {
            var mine = results.Pairs.Where(p => p.Mode == m.Mode).ToList();
            var pooled = $"loo_{Mode(m.Mode)}_pooled.png";
            Png(pooled, Plots.Scatter(mine.Select(p => p.Predicted).ToArray(), mine.Select(p => p.Actual).ToArray(),
                $"{m.Mode}: all test points (Pearson {G(m.PooledPearson)}, Spearman {G(m.PooledSpearman)})", "predicted Δ test loss (−I/N)", $"actual Δ test loss ({Mode(m.Mode)})"));
            plots.Add(($"{m.Mode}, pooled", pooled));
            foreach (var t in m.PerTest.Take(MaxPlottedTestPoints))
            {
                var pts = mine.Where(p => p.TestIndex == t.TestIndex).ToList();
                var file = $"loo_{Mode(m.Mode)}_test{t.TestIndex}.png";
                Png(file, Plots.Scatter(pts.Select(p => p.Predicted).ToArray(), pts.Select(p => p.Actual).ToArray(),
                    $"{m.Mode}, test {t.TestIndex} (Pearson {G(t.Pearson)}, Spearman {G(t.Spearman)})", "predicted Δ test loss", "actual Δ test loss"));
                plots.Add(($"{m.Mode}, test point {t.TestIndex}", file));
            }
        }
        foreach (var l in results.Lds)
        {
            var mine = results.LdsPairs.Where(p => p.Mode == l.Mode).ToList();
            var file = $"lds_{Mode(l.Mode)}.png";
            Png(file, Plots.Scatter(mine.Select(p => p.Predicted).ToArray(), mine.Select(p => p.Actual).ToArray(),
                $"LDS {l.Mode}: mean Spearman {G(l.Mean)}", "predicted Δ (sum over left-out rows)", "actual Δ test loss"));
            plots.Add(($"LDS, {l.Mode}", file));
        }

        files.Add("loo_summary.json");
        store.Write(JobKeys.Output(header.JobId, "loo_summary.json"), new LooSummary(header.JobId, header.RemovalText, results.Modes, results.Lds, results.Noise, header.TimingsSeconds).Write);
        files.Add("report.md");
        store.Write(JobKeys.Output(header.JobId, "report.md"), s =>
        {
            using var w = new StreamWriter(s, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
            Markdown(w, header, results, plots);
        });
        return files;
    }

    private static void Markdown(TextWriter w, LooReportHeader h, LooResults r, List<(string Title, string File)> plots)
    {
        w.WriteLine($"# Leave-one-out study {h.JobId}");
        w.WriteLine();
        w.WriteLine($"* Model: {h.ModelDescription}, {h.Parameters} parameters, N = {h.TrainCount} training examples; test accuracy {h.TestAccuracy.ToString("P1", Inv)}.");
        w.WriteLine($"* Hessian eigenvalues at θ̂: [{E(h.MinEigenvalue)}, {E(h.MaxEigenvalue)}]; damping δ = {R(h.Damping)} (influence and PBRF; LOO retrains are undamped).");
        w.WriteLine($"* Removal set `{h.RemovalText}`: {r.Plan.Removed.Length} single removals, {r.Plan.TestIndices.Length} test points, {r.Plan.Units.Length} units of work, {r.Plan.TaskCount} retrains.");
        w.WriteLine("* Predicted Δ = −I/N = (1/N)∇L_testᵀH⁻¹∇L(z); actual Δ = L(z_test; θ̂₋ⱼ) − L(z_test; θ̂), normaliser kept at 1/N.");
        w.WriteLine($"* Timings (s): {string.Join(", ", h.TimingsSeconds.Select(kv => $"{kv.Key} {kv.Value.ToString("F1", Inv)}"))}.");
        w.WriteLine();
        if (r.Modes.Count > 0)
        {
            w.WriteLine("## Predicted against actual");
            w.WriteLine();
            w.WriteLine("| mode | mean Pearson | min Pearson | mean Spearman | min Spearman | pooled Pearson | pooled Spearman | retrains | converged | median ‖∇F‖ | max ‖∇F‖ | median iterations | median ‖θ̂₋ⱼ − θ̂‖ | retrain time (s) |");
            w.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            foreach (var m in r.Modes)
                w.WriteLine($"| {Mode(m.Mode)} | {G(m.MeanPearson)} | {G(m.MinPearson)} | {G(m.MeanSpearman)} | {G(m.MinSpearman)} | {G(m.PooledPearson)} | {G(m.PooledSpearman)} | {m.Stats.Count} | {m.Stats.Converged} | {E(m.Stats.MedianGradientNorm)} | {E(m.Stats.MaxGradientNorm)} | {m.Stats.MedianIterations.ToString("0.#", Inv)} | {E(m.Stats.MedianDistance)} | {m.Stats.TotalSeconds.ToString("F1", Inv)} |");
            w.WriteLine();
            w.WriteLine("Per test point:");
            w.WriteLine();
            w.WriteLine("| test point | " + string.Join(" | ", r.Modes.Select(m => $"{Mode(m.Mode)} Pearson | {Mode(m.Mode)} Spearman")) + " |");
            w.WriteLine("|---|" + string.Concat(Enumerable.Repeat("---|---|", r.Modes.Count)));
            foreach (var t in r.Plan.TestIndices)
                w.WriteLine($"| {t} | " + string.Join(" | ", r.Modes.Select(m => m.PerTest.FirstOrDefault(c => c.TestIndex == t) is { } c ? $"{G(c.Pearson)} | {G(c.Spearman)}" : "n/a | n/a")) + " |");
            w.WriteLine();
        }
        if (r.Noise.Count > 0)
        {
            w.WriteLine("## Noise floor (cold training with other seeds)");
            w.WriteLine();
            w.WriteLine("Seed-to-seed standard deviation of each test loss (θ̂ and the other seeds, full training set) next to the mean |cold LOO Δ|. Where the ratio is below about 1, cold LOO deltas are under the noise.");
            w.WriteLine();
            w.WriteLine("| test point | seeds | seed-to-seed std | mean \\|cold LOO Δ\\| | ratio |");
            w.WriteLine("|---|---|---|---|---|");
            foreach (var nf in r.Noise)
                w.WriteLine($"| {nf.TestIndex} | {nf.Seeds + 1} | {E(nf.SeedStd)} | {E(nf.MeanAbsColdLoo)} | {(double.IsInfinity(nf.SignalToNoise) ? "∞" : nf.SignalToNoise.ToString("0.00", Inv))} |");
            w.WriteLine();
        }
        if (r.Lds.Count > 0)
        {
            w.WriteLine("## Linear datamodeling score");
            w.WriteLine();
            var s = r.Plan.Subsets!;
            w.WriteLine($"{s.Count} random subsets keeping α = {R(s.Fraction)} of the training set (seed {s.Seed}); per test point, the Spearman correlation between the summed predicted Δ of the rows a subset leaves out and the actual change of the test loss after training on the subset (normaliser 1/N).");
            w.WriteLine();
            w.WriteLine("| mode | mean LDS | std over test points | " + string.Join(" | ", r.Plan.TestIndices.Select(t => $"test {t}")) + " |");
            w.WriteLine("|---|---|---|" + string.Concat(Enumerable.Repeat("---|", r.Plan.TestIndices.Length)));
            foreach (var l in r.Lds)
                w.WriteLine($"| {Mode(l.Mode)} | {G(l.Mean)} | {G(l.StandardDeviation)} | " + string.Join(" | ", r.Plan.TestIndices.Select(t => l.PerTest.FirstOrDefault(c => c.TestIndex == t) is { } c ? G(c.Spearman) : "n/a")) + " |");
            w.WriteLine();
        }
        if (plots.Count > 0)
        {
            w.WriteLine("## Plots");
            w.WriteLine();
            foreach (var (title, file) in plots)
            {
                w.WriteLine($"### {title}");
                w.WriteLine();
                w.WriteLine($"![{title}]({file})");
                w.WriteLine();
            }
        }
    }
}
