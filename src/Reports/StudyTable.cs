using System.Globalization;
using System.Text;
using Influence.Core.Jobs;
using Influence.Core.Loo;
using Influence.Core.Storage;

namespace Influence.Reports;

/// <summary>One configuration's row: its model, the Hessian at θ̂, and how well influence predicted each retrain mode.</summary>
/// <param name="WarmLds">An LDS study's (--remove subsets:…) mean LDS over test points, warm retrains; NaN for single removals.</param>
/// <param name="DampingGiven">The configuration's damping as written (a number or auto); <paramref name="Damping"/> is the δ used.</param>
public sealed record StudyRow(string Label, int Depth, int Width, double WeightDecay, string DampingGiven, int Seed, long Parameters,
    double MinEigenvalue, double Damping, double TestAccuracy,
    double WarmSpearman, double WarmPearson, double ColdSpearman, double ColdPearson, double PbrfSpearman, double PbrfPearson,
    double ColdMedianDistance, double NoiseRatio, double WarmLds = double.NaN, double ColdLds = double.NaN)
{
    /// <summary>Reads a finished LOO study's summary.json and loo_summary.json from the store.</summary>
    public static StudyRow From(IArtifactStore store, string jobId, string label, int depth, int width, double weightDecay, string dampingGiven, int seed)
    {
        ScoreSummary summary;
        string summaryKey = JobKeys.Output(jobId, "summary.json"), looKey = JobKeys.Output(jobId, "loo_summary.json");
        using (var s1 = store.OpenRead(summaryKey)) summary = ScoreSummary.Read(s1, summaryKey);
        LooSummary loo;
        using (var s2 = store.OpenRead(looKey)) loo = LooSummary.Read(s2, looKey);
        var modes = loo.Modes.ToDictionary(m => m.Mode);
        double Mode(RetrainMode mode, Func<ModeSummary, double> value) => modes.TryGetValue(mode, out var m) ? value(m) : double.NaN;
        double Lds(RetrainMode mode) => loo.Lds.FirstOrDefault(l => l.Mode == mode)?.Mean ?? double.NaN;
        double coldDistance = Mode(RetrainMode.Cold, m => m.Stats.MedianDistance);
        var ratios = loo.NoiseFloor.Select(n => n.SignalToNoise).Where(double.IsFinite).ToArray();
        return new StudyRow(label, depth, width, weightDecay, dampingGiven, seed, summary.Model.Parameters,
            summary.Curvature.MinEigenvalue ?? double.NaN, summary.Curvature.Damping, summary.Training.TestAccuracy,
            Mode(RetrainMode.Warm, m => m.MeanSpearman), Mode(RetrainMode.Warm, m => m.MeanPearson), Mode(RetrainMode.Cold, m => m.MeanSpearman), Mode(RetrainMode.Cold, m => m.MeanPearson),
            Mode(RetrainMode.Pbrf, m => m.MeanSpearman), Mode(RetrainMode.Pbrf, m => m.MeanPearson), coldDistance, ratios.Length > 0 ? ratios.Average() : double.NaN,
            Lds(RetrainMode.Warm), Lds(RetrainMode.Cold));
    }

}

/// <summary>The study table as study.csv and study.md.</summary>
public static class StudyTable
{
    private static string F(double v, string format = "0.000") => double.IsNaN(v) ? "" : v.ToString(format, CultureInfo.InvariantCulture);

    public static void WriteCsv(IArtifactStore store, string key, IReadOnlyList<StudyRow> rows) => store.Write(key, s =>
    {
        using var w = new StreamWriter(s, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        w.WriteLine("config,depth,width,weight_decay,damping_given,seed,parameters,lambda_min,damping,test_accuracy,warm_spearman,warm_pearson,cold_spearman,cold_pearson,pbrf_spearman,pbrf_pearson,cold_median_distance,noise_signal_to_noise,warm_lds,cold_lds");
        foreach (var r in rows)
            w.WriteLine(string.Join(",", $"\"{r.Label}\"", r.Depth, r.Width, F(r.WeightDecay, "R"), r.DampingGiven, r.Seed, r.Parameters, F(r.MinEigenvalue, "R"), F(r.Damping, "R"), F(r.TestAccuracy, "R"),
                F(r.WarmSpearman, "R"), F(r.WarmPearson, "R"), F(r.ColdSpearman, "R"), F(r.ColdPearson, "R"), F(r.PbrfSpearman, "R"), F(r.PbrfPearson, "R"), F(r.ColdMedianDistance, "R"), F(r.NoiseRatio, "R"), F(r.WarmLds, "R"), F(r.ColdLds, "R")));
    });

    public static void WriteMarkdown(IArtifactStore store, string key, string name, IReadOnlyList<StudyRow> rows, double seconds) => store.Write(key, s =>
    {
        using var w = new StreamWriter(s, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        w.WriteLine($"# Study {name}");
        w.WriteLine();
        w.WriteLine($"{rows.Count} configurations, {seconds:F0} s. Spearman and Pearson: means over test points of predicted (exact influence) against actual change. Noise S/N: mean |cold LOO Δ| over the seed-to-seed std, averaged over test points. LDS (a study of subsets): mean over test points of the Spearman correlation over subsets. damping: the δ the influence and the PBRF retrains used (the configuration's, or with auto the one chosen from the spectrum).");
        w.WriteLine();
        w.WriteLine("| config | parameters | λ_min | damping | test acc. | warm Spearman | warm Pearson | cold Spearman | cold Pearson | PBRF Spearman | PBRF Pearson | cold median ‖θ̂₋ⱼ − θ̂‖ | noise S/N | warm LDS | cold LDS |");
        w.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            w.WriteLine($"| {r.Label} | {r.Parameters} | {F(r.MinEigenvalue, "0.00E+0")} | {F(r.Damping, "G3")} | {F(r.TestAccuracy, "P1")} | {F(r.WarmSpearman)} | {F(r.WarmPearson)} | {F(r.ColdSpearman)} | {F(r.ColdPearson)} | {F(r.PbrfSpearman)} | {F(r.PbrfPearson)} | {F(r.ColdMedianDistance, "0.00E+0")} | {F(r.NoiseRatio, "0.00")} | {F(r.WarmLds)} | {F(r.ColdLds)} |");
    });
}
