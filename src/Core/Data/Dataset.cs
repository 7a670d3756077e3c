namespace Influence.Core.Data;

/// <summary>
/// A labelled dataset held in memory as float64, row-major: <c>Features[i * FeatureCount + j]</c>.
/// Row <c>i</c> is the 0-based row number of the input file (header excluded).
/// </summary>
public sealed class Dataset
{
    public Dataset(string source, double[] features, int[] labels, int featureCount)
    {
        if (featureCount <= 0) throw new ArgumentOutOfRangeException(nameof(featureCount));
        if (features.Length != labels.Length * featureCount)
            throw new ArgumentException($"{features.Length} feature values do not make {labels.Length} rows of {featureCount}.");
        Source = source;
        Features = features;
        Labels = labels;
        FeatureCount = featureCount;
    }

    public string Source { get; }
    public double[] Features { get; }
    public int[] Labels { get; }
    public int FeatureCount { get; }
    public int Count => Labels.Length;
    public int MaxLabel => Labels.Length == 0 ? -1 : Labels.Max();

    /// <summary>Rows [start, end) as a new dataset (used by shards).</summary>
    public Dataset Slice(int start, int end)
    {
        if (start < 0 || end > Count || start > end) throw new ArgumentOutOfRangeException(nameof(start), $"[{start},{end}) is outside 0..{Count}.");
        var f = new double[(end - start) * FeatureCount];
        Array.Copy(Features, (long)start * FeatureCount, f, 0, f.Length);
        return new Dataset($"{Source}[{start}:{end}]", f, Labels[start..end], FeatureCount);
    }

    /// <summary>The given rows, in the given order.</summary>
    public Dataset Select(IReadOnlyList<int> rows)
    {
        var f = new double[rows.Count * FeatureCount];
        var y = new int[rows.Count];
        for (int k = 0; k < rows.Count; k++)
        {
            int r = rows[k];
            if (r < 0 || r >= Count) throw new ArgumentOutOfRangeException(nameof(rows), $"row {r} is outside 0..{Count - 1} of {Source}");
            Array.Copy(Features, (long)r * FeatureCount, f, (long)k * FeatureCount, FeatureCount);
            y[k] = Labels[r];
        }
        return new Dataset(Source, f, y, FeatureCount);
    }
}
