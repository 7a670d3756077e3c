using Influence.Core.Safety;
using System.Globalization;

namespace Influence.Core.Loo;

/// <summary>
/// Which training examples a leave-one-out study removes, as the user writes it:
/// <c>all</c>, <c>top:K</c> / <c>bottom:K</c> (per test point, the K largest / smallest predicted
/// LOO deltas: the strongest proponents / opponents), <c>random:K[,seed]</c>, <c>file:PATH</c>
/// (indices separated by commas, spaces or new lines; # starts a comment), or a union of those
/// joined by '+', e.g. <c>top:20+bottom:20</c>. <c>subsets:M,α[,seed]</c> asks for an LDS study
/// instead: M random subsets each keeping a fraction α of the training set.
/// </summary>
public sealed record RemovalSet(string Text, IReadOnlyList<RemovalSet.Part> Parts, LdsSubsets? Subsets)
{
    public abstract record Part;
    public sealed record All : Part;
    public sealed record Top(int K) : Part;
    public sealed record Bottom(int K) : Part;
    public sealed record Random(int K, int Seed) : Part;
    public sealed record FromFile(string Path) : Part;

    public bool IsLds => Subsets is not null;

    public static RemovalSet Parse(string text)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new ArgumentException("--remove is empty; use all, top:K, bottom:K, random:K[,seed], file:PATH or subsets:M,α[,seed]");
        var trimmed = text.Trim();
        if (trimmed.StartsWith("subsets:", StringComparison.OrdinalIgnoreCase))
            return new RemovalSet(trimmed, [], LdsSubsets.Parse(trimmed["subsets:".Length..]));
        var parts = trimmed.Split('+', StringSplitOptions.TrimEntries).Select(ParsePart).ToList();
        return new RemovalSet(trimmed, parts, null);
    }

    private static Part ParsePart(string part)
    {
        int colon = part.IndexOf(':');
        string kind = (colon < 0 ? part : part[..colon]).ToLowerInvariant();
        string arg = colon < 0 ? "" : part[(colon + 1)..].Trim();
        switch (kind)
        {
            case "all" when arg.Length == 0: return new All();
            case "top": return new Top(PositiveInt(arg, part));
            case "bottom": return new Bottom(PositiveInt(arg, part));
            case "random":
                var pieces = arg.Split(',', StringSplitOptions.TrimEntries);
                if (pieces.Length > 2) throw new ArgumentException($"--remove '{Echo.Cap(part)}': expected random:K or random:K,SEED");
                return new Random(PositiveInt(pieces[0], part), pieces.Length == 2 ? Int(pieces[1], part) : 0);
            case "file" when arg.Length > 0: return new FromFile(arg);
            case "subsets": throw new ArgumentException($"--remove '{Echo.Cap(part)}': subsets:M,α cannot be combined with other removal sets");
            default: throw new ArgumentException($"--remove '{Echo.Cap(part)}' is not a removal set; use all, top:K, bottom:K, random:K[,seed], file:PATH or subsets:M,α[,seed]");
        }
    }

    private static int Int(string s, string part) =>
        int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v)
            ? v : throw new ArgumentException($"--remove '{Echo.Cap(part)}': '{Echo.Cap(s)}' is not an integer");

    private static int PositiveInt(string s, string part)
    {
        int v = Int(s, part);
        return v > 0 ? v : throw new ArgumentException($"--remove '{Echo.Cap(part)}': K must be positive, not {v}");
    }

    /// <summary>
    /// The distinct training indices to remove, ascending. <paramref name="predictedDelta"/>[q][i] is
    /// the predicted LOO change of test point q's loss when row i is removed.
    /// </summary>
    public int[] Resolve(int trainCount, IReadOnlyList<double[]> predictedDelta)
    {
        if (IsLds) throw new InvalidOperationException("an LDS study has subsets, not single removals");
        var chosen = new SortedSet<int>();
        foreach (var part in Parts)
        {
            switch (part)
            {
                case All:
                    for (int i = 0; i < trainCount; i++) chosen.Add(i);
                    break;
                case Top t:
                    foreach (var row in predictedDelta)
                        foreach (var i in Enumerable.Range(0, trainCount).OrderByDescending(i => row[i]).ThenBy(i => i).Take(t.K)) chosen.Add(i);
                    break;
                case Bottom b:
                    foreach (var row in predictedDelta)
                        foreach (var i in Enumerable.Range(0, trainCount).OrderBy(i => row[i]).ThenBy(i => i).Take(b.K)) chosen.Add(i);
                    break;
                case Random r:
                    foreach (var i in Sample(trainCount, Math.Min(r.K, trainCount), r.Seed)) chosen.Add(i);
                    break;
                case FromFile f:
                    foreach (var i in ReadIndexFile(f.Path, trainCount)) chosen.Add(i);
                    break;
            }
        }
        return chosen.ToArray();
    }

    /// <summary>K distinct indices of 0..n−1 chosen uniformly with a seeded generator (a partial Fisher–Yates shuffle).</summary>
    public static int[] Sample(int n, int k, int seed)
    {
        var rng = new System.Random(seed);
        var a = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < k; i++)
        {
            int j = rng.Next(i, n);
            (a[i], a[j]) = (a[j], a[i]);
        }
        return a[..k];
    }

    /// <summary>This set with the path of every file: part mapped (e.g. to a local copy of a stored file).</summary>
    public RemovalSet WithFiles(Func<string, string> map) =>
        this with { Parts = Parts.Select(p => p is FromFile f ? new FromFile(map(f.Path)) : p).ToList() };

    /// <summary>Reads training indices from a text file; errors name the file, line and problem.</summary>
    public static IEnumerable<int> ReadIndexFile(string path, int trainCount)
    {
        if (!File.Exists(path)) throw new ArgumentException($"--remove file:{Echo.Cap(path)}: file not found");
        int lineNumber = 0;
        var result = new List<int>();
        foreach (var raw in File.ReadLines(path))
        {
            lineNumber++;
            var line = raw;
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            foreach (var token in line.Split([',', ' ', '\t', ';'], StringSplitOptions.RemoveEmptyEntries))
            {
                if (!int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out int i))
                    throw new ArgumentException($"{Echo.Cap(path)}, line {lineNumber}: '{Echo.Cap(token)}' is not a training index");
                if (i >= trainCount)
                    throw new ArgumentException($"{Echo.Cap(path)}, line {lineNumber}: index {i} is outside the training set (rows 0..{trainCount - 1})");
                result.Add(i);
            }
        }
        if (result.Count == 0) throw new ArgumentException($"{Echo.Cap(path)}: no training index in the file");
        return result;
    }
}

/// <summary>LDS subsets: M random subsets, each keeping round(α·N) training examples.</summary>
public sealed record LdsSubsets(int Count, double Fraction, int Seed)
{
    public static LdsSubsets Parse(string arg)
    {
        var pieces = arg.Split(',', StringSplitOptions.TrimEntries);
        if (pieces.Length is < 2 or > 3) throw new ArgumentException($"--remove subsets:{Echo.Cap(arg)}: expected subsets:M,α or subsets:M,α,SEED");
        if (!int.TryParse(pieces[0], NumberStyles.None, CultureInfo.InvariantCulture, out int m) || m < 3)
            throw new ArgumentException($"--remove subsets:{Echo.Cap(arg)}: M must be an integer ≥ 3 (a Spearman correlation needs several subsets)");
        if (!double.TryParse(pieces[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double alpha) || !(alpha > 0 && alpha < 1))
            throw new ArgumentException($"--remove subsets:{Echo.Cap(arg)}: α must be a fraction strictly between 0 and 1");
        int seed = 0;
        if (pieces.Length == 3 && !int.TryParse(pieces[2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out seed))
            throw new ArgumentException($"--remove subsets:{Echo.Cap(arg)}: '{Echo.Cap(pieces[2])}' is not an integer seed");
        return new LdsSubsets(m, alpha, seed);
    }

    /// <summary>The kept rows of subset <paramref name="index"/>, ascending; the same in every process (no randomised hashing).</summary>
    public int[] Kept(int index, int trainCount)
    {
        int keep = Math.Max(1, (int)Math.Round(Fraction * trainCount));
        var rows = RemovalSet.Sample(trainCount, keep, Seeds.LdsSubset(Seed, index));
        Array.Sort(rows);
        return rows;
    }
}
