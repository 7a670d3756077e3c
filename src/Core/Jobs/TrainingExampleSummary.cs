namespace Influence.Core.Jobs;

/// <summary>
/// The training-side view of a score job, built from its influence rows one test point at a time
/// (never holding N × Q): per training example, the total and mean influence over the queries,
/// and the k test points it helps most (most negative influence: it lowers their loss, as a
/// proponent does) and harms most (most positive).
/// </summary>
public sealed class TrainingExampleSummary
{
    private readonly int trainCount, k;
    private readonly double[] total;
    private readonly Extremes helps, harms;
    private int queries;

    public TrainingExampleSummary(int trainCount, int k)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        (this.trainCount, this.k) = (trainCount, k);
        total = new double[trainCount];
        helps = new Extremes(trainCount, k, smallest: true);
        harms = new Extremes(trainCount, k, smallest: false);
    }

    /// <summary>Adds test point <paramref name="query"/> (its position in the job's queries): its influence on every training row.</summary>
    public void Add(int query, ReadOnlySpan<double> row)
    {
        if (row.Length != trainCount) throw new ArgumentException($"a row of {row.Length} values, expected {trainCount}");
        for (int j = 0; j < trainCount; j++)
        {
            double v = row[j];
            total[j] += v;
            helps.Offer(j, query, v);
            harms.Offer(j, query, v);
        }
        queries++;
    }

    public int QueryCount => queries;
    public int TrainCount => trainCount;
    public double Total(int train) => total[train];
    public double Mean(int train) => queries == 0 ? double.NaN : total[train] / queries;

    /// <summary>The test points (query positions) training row <paramref name="train"/> helps most, best first.</summary>
    public IReadOnlyList<(int Query, double Influence)> Helps(int train) => helps.Of(train);

    /// <summary>The test points training row <paramref name="train"/> harms most, worst first.</summary>
    public IReadOnlyList<(int Query, double Influence)> Harms(int train) => harms.Of(train);

    /// <summary>
    /// The k most extreme values per row, kept sorted (most extreme first) in flat N × k arrays;
    /// a value enters by insertion, which for small k is cheaper than a heap. Ties keep the
    /// earlier query.
    /// </summary>
    private sealed class Extremes(int rows, int k, bool smallest)
    {
        private readonly double[] values = new double[(long)rows * k];
        private readonly int[] queries = new int[(long)rows * k];
        private readonly int[] count = new int[rows];

        private bool Better(double a, double b) => smallest ? a < b : a > b;

        public void Offer(int row, int query, double v)
        {
            if (double.IsNaN(v)) return;
            int n = count[row], start = row * k;
            if (n == k && !Better(v, values[start + k - 1])) return;
            int i = n == k ? k - 1 : n;
            while (i > 0 && Better(v, values[start + i - 1]))
            {
                values[start + i] = values[start + i - 1];
                queries[start + i] = queries[start + i - 1];
                i--;
            }
            values[start + i] = v;
            queries[start + i] = query;
            if (n < k) count[row] = n + 1;
        }

        public IReadOnlyList<(int, double)> Of(int row) =>
            Enumerable.Range(row * k, count[row]).Select(i => (queries[i], values[i])).ToArray();
    }
}
