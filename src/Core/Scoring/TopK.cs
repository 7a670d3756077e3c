namespace Influence.Core.Scoring;

/// <summary>One training example's influence on one query.</summary>
public readonly record struct Scored(int TrainIndex, double Influence);

/// <summary>
/// Per query, the k most helpful training examples (proponents: most negative influence, so
/// removing them raises the test loss) and the k most harmful (opponents: most positive).
/// </summary>
public sealed record TopKLists(Scored[][] Proponents, Scored[][] Opponents)
{
    /// <summary>Top-k of a Q×n block of scores whose column j is training index <c>firstIndex + j</c>.</summary>
    public static TopKLists FromBlock(double[] block, int queries, int count, int firstIndex, int k)
    {
        var pro = new Scored[queries][];
        var opp = new Scored[queries][];
        for (int q = 0; q < queries; q++)
        {
            var row = new Scored[count];
            for (int j = 0; j < count; j++) row[j] = new Scored(firstIndex + j, block[(long)q * count + j]);
            pro[q] = Select(row, k, ascending: true);
            opp[q] = Select(row, k, ascending: false);
        }
        return new TopKLists(pro, opp);
    }

    /// <summary>Merges shard-local lists into global ones (ties broken by the lower training index).</summary>
    public static TopKLists Merge(IReadOnlyList<TopKLists> parts, int k)
    {
        int queries = parts[0].Proponents.Length;
        var pro = new Scored[queries][];
        var opp = new Scored[queries][];
        for (int q = 0; q < queries; q++)
        {
            pro[q] = Select(parts.SelectMany(p => p.Proponents[q]).ToArray(), k, ascending: true);
            opp[q] = Select(parts.SelectMany(p => p.Opponents[q]).ToArray(), k, ascending: false);
        }
        return new TopKLists(pro, opp);
    }

    private static Scored[] Select(Scored[] items, int k, bool ascending)
    {
        var ordered = ascending
            ? items.OrderBy(s => s.Influence).ThenBy(s => s.TrainIndex)
            : items.OrderByDescending(s => s.Influence).ThenBy(s => s.TrainIndex);
        return ordered.Take(k).ToArray();
    }
}
