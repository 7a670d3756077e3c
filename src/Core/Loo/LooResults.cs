using Influence.Core.Jobs;
using Influence.Core.Metrics;

namespace Influence.Core.Loo;

/// <summary>A predicted and an actual change of one test point's loss (a removal, or an LDS subset).</summary>
public sealed record PairRow(RetrainMode Mode, int TestIndex, int Item, double Predicted, double Actual);

public sealed record TestCorrelation(int TestIndex, int Count, double Pearson, double Spearman);

/// <summary>How the retrains of one mode ended (seconds: amortised per retrain for batched warm retrains).</summary>
public sealed record RetrainStats(int Count, int Converged, double MedianGradientNorm, double MaxGradientNorm,
    double MedianIterations, double MedianDistance, double MaxDistance, double TotalSeconds);

/// <summary>Correlation of predicted against actual changes for one retrain mode.</summary>
public sealed record ModeSummary(RetrainMode Mode, IReadOnlyList<TestCorrelation> PerTest,
    double MeanPearson, double MinPearson, double MeanSpearman, double MinSpearman,
    double PooledPearson, double PooledSpearman, RetrainStats Stats);

/// <summary>Seed-to-seed change of a test loss (cold training, full data) next to the cold LOO deltas.</summary>
public sealed record NoiseFloor(int TestIndex, int Seeds, double SeedStd, double MeanAbsColdLoo)
{
    /// <summary>Mean |cold LOO delta| over the seed-to-seed standard deviation: below ~1 the LOO signal is under the noise.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.Never)]
    public double SignalToNoise => SeedStd > 0 ? MeanAbsColdLoo / SeedStd : double.PositiveInfinity;
}

/// <summary>LDS of one mode: per test point the Spearman correlation over subsets, with its mean and spread.</summary>
public sealed record LdsSummary(RetrainMode Mode, IReadOnlyList<TestCorrelation> PerTest, double Mean, double StandardDeviation);

/// <summary>
/// loo_summary.json: a study's numbers, written and read back as this record with the naming of
/// every other output (<see cref="SettingsJson.Outputs"/>: snake_case, enums as their words).
/// </summary>
public sealed record LooSummary(string Job, string Remove, IReadOnlyList<ModeSummary> Modes, IReadOnlyList<LdsSummary> Lds,
    IReadOnlyList<NoiseFloor> NoiseFloor, IReadOnlyDictionary<string, double> TimingsSeconds)
{
    public void Write(Stream stream) => System.Text.Json.JsonSerializer.Serialize(stream, this, SettingsJson.Outputs);

    public static LooSummary Read(Stream stream, string source) => SettingsJson.ReadOutput<LooSummary>(stream, source);
}

/// <summary>Everything a study's report shows, computed from the persisted unit rows.</summary>
public sealed class LooResults
{
    public required LooPlan Plan { get; init; }
    public required IReadOnlyList<PairRow> Pairs { get; init; }
    public required IReadOnlyList<ModeSummary> Modes { get; init; }
    public required IReadOnlyList<NoiseFloor> Noise { get; init; }
    public required IReadOnlyList<PairRow> LdsPairs { get; init; }
    public required IReadOnlyList<LdsSummary> Lds { get; init; }
    public required IReadOnlyList<UnitRow> Rows { get; init; }

    /// <param name="predicted">Predicted LOO deltas, [test point position][train row].</param>
    /// <param name="groupPredicted">A method's own prediction of each LDS subset, [subset][test point position] (newton-step's); null: the sum of the left-out rows' predictions.</param>
    public static LooResults Build(LooPlan plan, double[][] predicted, IReadOnlyList<UnitRow> rows, IReadOnlyDictionary<int, double[]>? groupPredicted = null)
    {
        var position = plan.TestIndices.Select((t, k) => (t, k)).ToDictionary(p => p.t, p => p.k);
        var pairs = rows.Where(r => r.Kind == UnitKind.Removal)
            .Select(r => new PairRow(r.Mode, r.TestIndex, r.Item, predicted[position[r.TestIndex]][r.Item], r.Delta))
            .OrderBy(p => p.Mode).ThenBy(p => position[p.TestIndex]).ThenBy(p => p.Item).ToList();
        var modes = pairs.Select(p => p.Mode).Distinct().Select(m => Summarise(m, pairs.Where(p => p.Mode == m).ToList(),
            rows.Where(r => r.Mode == m && r.Kind == UnitKind.Removal).ToList(), plan.TestIndices)).ToList();

        var ldsPairs = new List<PairRow>();
        if (plan.Subsets is { } subsets)
        {
            // Predicted change of training on subset S: the method's own group prediction where it has
            // one, else the sum of the predicted deltas of the rows S leaves out.
            var leftOut = new Dictionary<int, int[]>();
            foreach (var r in rows.Where(r => r.Kind == UnitKind.Subset))
            {
                if (groupPredicted is not null)
                {
                    ldsPairs.Add(new PairRow(r.Mode, r.TestIndex, r.Item, groupPredicted[r.Item][position[r.TestIndex]], r.Delta));
                    continue;
                }
                if (!leftOut.TryGetValue(r.Item, out var removed))
                {
                    var kept = subsets.Kept(r.Item, plan.TrainCount).ToHashSet();
                    leftOut[r.Item] = removed = Enumerable.Range(0, plan.TrainCount).Where(i => !kept.Contains(i)).ToArray();
                }
                var row = predicted[position[r.TestIndex]];
                ldsPairs.Add(new PairRow(r.Mode, r.TestIndex, r.Item, removed.Sum(i => row[i]), r.Delta));
            }
            ldsPairs = ldsPairs.OrderBy(p => p.Mode).ThenBy(p => position[p.TestIndex]).ThenBy(p => p.Item).ToList();
        }
        var lds = ldsPairs.Select(p => p.Mode).Distinct().Select(m =>
        {
            var per = PerTest(ldsPairs.Where(p => p.Mode == m).ToList(), plan.TestIndices);
            var values = per.Select(t => t.Spearman).Where(double.IsFinite).ToArray();
            double mean = values.Length > 0 ? values.Average() : double.NaN;
            double std = values.Length > 1 ? Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Length - 1)) : double.NaN;
            return new LdsSummary(m, per, mean, std);
        }).ToList();

        var noise = new List<NoiseFloor>();
        var seedRows = rows.Where(r => r.Kind == UnitKind.Seed).ToList();
        if (seedRows.Count > 0)
            foreach (var t in plan.TestIndices)
            {
                var deltas = seedRows.Where(r => r.TestIndex == t).Select(r => r.Delta).ToArray();
                // The unmodified model θ̂ is one more draw of the same seed distribution (delta 0).
                var all = deltas.Append(0.0).ToArray();
                double mean = all.Average();
                double std = Math.Sqrt(all.Sum(v => (v - mean) * (v - mean)) / (all.Length - 1));
                var cold = pairs.Where(p => p.Mode == RetrainMode.Cold && p.TestIndex == t).Select(p => Math.Abs(p.Actual)).ToArray();
                noise.Add(new NoiseFloor(t, deltas.Length, std, cold.Length > 0 ? cold.Average() : double.NaN));
            }

        return new LooResults { Plan = plan, Pairs = pairs, Modes = modes, Noise = noise, LdsPairs = ldsPairs, Lds = lds, Rows = rows };
    }

    private static List<TestCorrelation> PerTest(IReadOnlyList<PairRow> pairs, int[] testIndices) =>
        testIndices.Select(t =>
        {
            var mine = pairs.Where(p => p.TestIndex == t).ToList();
            var x = mine.Select(p => p.Predicted).ToArray();
            var y = mine.Select(p => p.Actual).ToArray();
            return new TestCorrelation(t, mine.Count, Correlation.Pearson(x, y), Correlation.Spearman(x, y));
        }).Where(c => c.Count > 0).ToList();

    private static ModeSummary Summarise(RetrainMode mode, IReadOnlyList<PairRow> pairs, IReadOnlyList<UnitRow> rows, int[] testIndices)
    {
        var per = PerTest(pairs, testIndices);
        var pearson = per.Select(c => c.Pearson).Where(double.IsFinite).DefaultIfEmpty(double.NaN).ToArray();
        var spearman = per.Select(c => c.Spearman).Where(double.IsFinite).DefaultIfEmpty(double.NaN).ToArray();
        var x = pairs.Select(p => p.Predicted).ToArray();
        var y = pairs.Select(p => p.Actual).ToArray();
        // One record per retrain (the rows repeat it per test point).
        var retrains = rows.GroupBy(r => r.Item).Select(g => g.First()).ToList();
        var stats = new RetrainStats(retrains.Count, retrains.Count(r => r.Converged),
            Median(retrains.Select(r => r.GradientNorm)), retrains.Select(r => r.GradientNorm).DefaultIfEmpty(double.NaN).Max(),
            Median(retrains.Select(r => (double)r.Iterations)), Median(retrains.Select(r => r.Distance)),
            retrains.Select(r => r.Distance).DefaultIfEmpty(double.NaN).Max(), retrains.Sum(r => r.Seconds));
        return new ModeSummary(mode, per, pearson.Average(), pearson.Min(), spearman.Average(), spearman.Min(),
            Correlation.Pearson(x, y), Correlation.Spearman(x, y), stats);
    }

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Where(double.IsFinite).OrderBy(x => x).ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
