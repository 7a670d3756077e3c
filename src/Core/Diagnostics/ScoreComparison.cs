using Influence.Core.Storage;
using System.Globalization;
using Influence.Core.Data;
using Influence.Core.Metrics;

namespace Influence.Core.Diagnostics;

/// <summary>Agreement of one method's scores with a reference, per test point: mean and minimum Spearman, mean Pearson, and how many test points.</summary>
public sealed record Agreement(double MeanSpearman, double MinSpearman, double MeanPearson, int TestPoints)
{
    public static readonly Agreement None = new(double.NaN, double.NaN, double.NaN, 0);
}

/// <summary>Leave-one-out ground truth read from an `influence loo` run's loo.csv: per test point, the removed rows and their loo_delta.</summary>
public sealed record LooTruth(IReadOnlyDictionary<int, (int[] Train, double[] Delta)> ByTest, string Mode)
{
    /// <param name="mode">warm, cold or pbrf: which rows to take when the file has several modes.</param>
    public static LooTruth Read(string path, string mode = "warm")
    {
        var lines = File.ReadLines(path).ToList();
        if (lines.Count == 0) throw new DataFormatException(path, null, "empty file");
        var header = lines[0].Split(',');
        if (header.Length < 4 || header[0] != "test_index" || header[1] != "train_index" || header[3] != "loo_delta")
            throw new DataFormatException(path, "line 1", "expected the header test_index,train_index,predicted_delta,loo_delta[,mode] of an `influence loo` run");
        int modeColumn = Array.IndexOf(header, "mode");
        var byTest = new Dictionary<int, (List<int>, List<double>)>();
        for (int i = 1; i < lines.Count; i++)
        {
            var p = lines[i].Split(',');
            if (p.Length != header.Length) throw new DataFormatException(path, $"line {i + 1}", $"{p.Length} fields, expected {header.Length}");
            if (modeColumn >= 0 && !p[modeColumn].Equals(mode, StringComparison.OrdinalIgnoreCase)) continue;
            if (!int.TryParse(p[0], NumberStyles.None, CultureInfo.InvariantCulture, out int test) || !int.TryParse(p[1], NumberStyles.None, CultureInfo.InvariantCulture, out int train)
                || !double.TryParse(p[3], NumberStyles.Float, CultureInfo.InvariantCulture, out double delta))
                throw new DataFormatException(path, $"line {i + 1}", $"'{Safety.Echo.Cap(lines[i])}' is not test_index,train_index,predicted_delta,loo_delta");
            if (!byTest.TryGetValue(test, out var list)) byTest[test] = list = ([], []);
            list.Item1.Add(train);
            list.Item2.Add(delta);
        }
        if (byTest.Count == 0) throw new DataFormatException(path, null, $"no rows of mode {mode}");
        return new LooTruth(byTest.ToDictionary(kv => kv.Key, kv => (kv.Value.Item1.ToArray(), kv.Value.Item2.ToArray())), mode);
    }

    public int[] TestIndices => [.. ByTest.Keys.Order()];
}

/// <summary>Reads score outputs and measures how methods agree with the exact influence and with leave-one-out retraining.</summary>
public static class ScoreComparison
{
    /// <summary>
    /// A score job's influence.npy (written with --dense float64: test points in --test-indices
    /// order × training rows) as test index → influence of every training row.
    /// </summary>
    public static Dictionary<int, double[]> ReadInfluence(string npyPath, IReadOnlyList<int> testIndices, int trainCount)
    {
        using var s = File.OpenRead(npyPath);
        var rows = Npy.ReadMatrix(s, npyPath, testIndices.Count, trainCount);
        return testIndices.Select((t, k) => (t, k)).ToDictionary(p => p.t, p => rows[p.k]);
    }

    /// <summary>Per test point, correlations over all training rows with the reference scores.</summary>
    public static Agreement Against(IReadOnlyDictionary<int, double[]> scores, IReadOnlyDictionary<int, double[]> reference) =>
        Summarise(reference.Keys.Where(scores.ContainsKey).Select(t => (scores[t], reference[t])));

    /// <summary>Per test point, correlations over the removed rows between the predicted change −I/N and loo_delta.</summary>
    public static Agreement AgainstLoo(IReadOnlyDictionary<int, double[]> influence, LooTruth loo, int trainCount) =>
        Summarise(loo.ByTest.Where(kv => influence.ContainsKey(kv.Key)).Select(kv =>
            (kv.Value.Train.Select(j => -influence[kv.Key][j] / trainCount).ToArray(), kv.Value.Delta)));

    private static Agreement Summarise(IEnumerable<(double[] A, double[] B)> pairs)
    {
        var s = new List<double>();
        var p = new List<double>();
        foreach (var (a, b) in pairs)
        {
            s.Add(Correlation.Spearman(a, b));
            p.Add(Correlation.Pearson(a, b));
        }
        return s.Count == 0 ? Agreement.None : new Agreement(s.Average(), s.Min(), p.Average(), s.Count);
    }
}
