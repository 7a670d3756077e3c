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
        var helpful = new Best(k, ascending: true);
        var harmful = new Best(k, ascending: false);
        for (int q = 0; q < queries; q++)
        {
            var row = block.AsSpan(checked((int)((long)q * count)), count);
            for (int j = 0; j < row.Length; j++)
            {
                var s = new Scored(firstIndex + j, row[j]);
                helpful.Offer(s);
                harmful.Offer(s);
            }
            pro[q] = helpful.Take();
            opp[q] = harmful.Take();
        }
        return new TopKLists(pro, opp);
    }

    /// <summary>Merges shard-local lists into global ones (ties broken by the lower training index).</summary>
    public static TopKLists Merge(IReadOnlyList<TopKLists> parts, int k)
    {
        int queries = parts[0].Proponents.Length;
        var pro = new Scored[queries][];
        var opp = new Scored[queries][];
        var helpful = new Best(k, ascending: true);
        var harmful = new Best(k, ascending: false);
        for (int q = 0; q < queries; q++)
        {
            foreach (var p in parts)
            {
                foreach (var s in p.Proponents[q]) helpful.Offer(s);
                foreach (var s in p.Opponents[q]) harmful.Offer(s);
            }
            pro[q] = helpful.Take();
            opp[q] = harmful.Take();
        }
        return new TopKLists(pro, opp);
    }

    /// <summary>
    /// The k first of the offered scores in the order (influence, then the lower training index),
    /// influence ascending or descending (NaN sorts as the smallest, as in OrderBy). A bounded heap
    /// whose root is the worst kept score: most offers cost one comparison with it, where sorting
    /// every row cost most of the all-pairs scoring time.
    /// </summary>
    private sealed class Best(int k, bool ascending)
    {
        private readonly PriorityQueue<Scored, Scored> heap = new(k + 1, Comparer<Scored>.Create((a, b) => Compare(b, a, ascending)));

        private static int Compare(Scored a, Scored b, bool ascending)
        {
            int byValue = ascending ? a.Influence.CompareTo(b.Influence) : b.Influence.CompareTo(a.Influence);
            return byValue != 0 ? byValue : a.TrainIndex.CompareTo(b.TrainIndex);
        }

        public void Offer(Scored s)
        {
            if (heap.Count < k) heap.Enqueue(s, s);
            else if (heap.TryPeek(out var worst, out _) && Compare(s, worst, ascending) < 0) heap.DequeueEnqueue(s, s);
        }

        /// <summary>The kept scores, best first; the heap is empty again.</summary>
        public Scored[] Take()
        {
            var result = new Scored[heap.Count];
            for (int i = result.Length - 1; i >= 0; i--) result[i] = heap.Dequeue();
            return result;
        }
    }
}
