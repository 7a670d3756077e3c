using System.Globalization;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Diagnostics;

/// <summary>Clean and noisy labels of a training set: a CSV <c>index,label_clean,label_noisy</c> with one row per training row.</summary>
public sealed record NoisyLabels(int[] Clean, int[] Noisy)
{
    public bool[] Changed => Clean.Zip(Noisy, (c, n) => c != n).ToArray();

    public static NoisyLabels Read(string path, int trainCount)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        var clean = Enumerable.Repeat(-1, trainCount).ToArray();
        var noisy = Enumerable.Repeat(-1, trainCount).ToArray();
        int line = 0;
        foreach (var raw in File.ReadLines(path))
        {
            line++;
            if (line == 1)
            {
                if (raw.Trim() != "index,label_clean,label_noisy") throw new DataFormatException(path, "line 1", $"the header must be 'index,label_clean,label_noisy', not '{Safety.Echo.Cap(raw)}'");
                continue;
            }
            if (raw.Length == 0) continue;
            var f = raw.Split(',');
            if (f.Length != 3) throw new DataFormatException(path, $"line {line}", $"expected 3 columns, found {f.Length}");
            var v = new int[3];
            for (int k = 0; k < 3; k++)
                if (!int.TryParse(f[k], NumberStyles.None, CultureInfo.InvariantCulture, out v[k]))
                    throw new DataFormatException(path, $"line {line}, column {k + 1}", $"'{Safety.Echo.Cap(f[k])}' is not a non-negative integer");
            if (v[0] >= trainCount) throw new DataFormatException(path, $"line {line}", $"index {v[0]} is outside the training set (rows 0..{trainCount - 1})");
            if (clean[v[0]] >= 0) throw new DataFormatException(path, $"line {line}", $"index {v[0]} appears twice");
            clean[v[0]] = v[1];
            noisy[v[0]] = v[2];
        }
        int missing = Array.IndexOf(clean, -1);
        if (missing >= 0) throw new DataFormatException(path, "rows", $"training row {missing} has no labels (one row per training example is needed)");
        return new NoisyLabels(clean, noisy);
    }

    /// <summary>The training set with its labels replaced by the noisy ones.</summary>
    public Dataset ApplyNoisy(Dataset train) => new($"{train.Source} (noisy labels)", train.Features, Noisy, train.FeatureCount);
}

/// <summary>Per-example signals that flag mislabelled training examples, and the recall of a ranking.</summary>
public static class MislabelRanking
{
    /// <summary>Training loss and ‖∇L_i‖ of every example under θ (float64).</summary>
    public static (double[] Loss, double[] GradientNorm) PerExample(ModelSpec spec, Tensor theta, DataTensors data, int batchSize = 512)
    {
        var loss = new List<double>();
        var norm = new List<double>();
        for (long start = 0; start < data.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var rows = data.Rows(start, Math.Min(batchSize, data.Count - start));
            using (no_grad()) loss.AddRange(Objective.PerExampleLoss(spec, theta, rows).to(ScalarType.Float64).cpu().data<double>().ToArray());
            norm.AddRange(ShardScorer.Gradients(spec, theta, rows).norm(1).to(ScalarType.Float64).cpu().data<double>().ToArray());
        }
        return (loss.ToArray(), norm.ToArray());
    }

    /// <summary>The fraction of changed labels found among the top ⌈fraction·N⌉ examples by descending score (ties by index).</summary>
    public static double Recall(IReadOnlyList<double> score, bool[] changed, double fraction)
    {
        int total = changed.Count(c => c);
        if (total == 0) return double.NaN;
        int k = (int)Math.Ceiling(fraction * changed.Length);
        var top = Enumerable.Range(0, changed.Length).OrderByDescending(i => score[i]).ThenBy(i => i).Take(k);
        return top.Count(i => changed[i]) / (double)total;
    }

    /// <summary>A seeded random ranking (the baseline; its expected recall is the fraction itself).</summary>
    public static double[] RandomScores(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.NextDouble()).ToArray();
    }
}
