using Influence.Core.Scoring;
using Xunit;

namespace Influence.Core.Tests;

public class TopKTests
{
    /// <summary>The sort-everything definition: influence ascending (proponents) or descending (opponents), ties to the lower training index.</summary>
    private static Scored[] Reference(IEnumerable<Scored> items, int k, bool ascending) =>
        (ascending ? items.OrderBy(s => s.Influence) : items.OrderByDescending(s => s.Influence)).ThenBy(s => s.TrainIndex).Take(k).ToArray();

    [Theory]
    [InlineData(5, 1)]
    [InlineData(7, 3)]
    [InlineData(3, 10)]   // k larger than the rows: every row, in order
    [InlineData(40, 8)]
    public void Block_top_k_and_the_merge_of_shards_equal_sorting_every_row(int count, int k)
    {
        const int queries = 30, firstIndex = 100;
        var random = new Random(count * 31 + k);
        // Few distinct values, so that ties decide; a NaN and infinities in some rows.
        var block = Enumerable.Range(0, queries * count).Select(_ => (double)random.Next(-4, 5) * 0.25).ToArray();
        block[3] = double.NaN;
        block[count + 1] = double.PositiveInfinity;
        block[2 * count] = double.NegativeInfinity;
        var lists = TopKLists.FromBlock(block, queries, count, firstIndex, k);
        int half = count / 2;
        var left = TopKLists.FromBlock(Slice(block, queries, count, 0, half), queries, half, firstIndex, k);
        var right = TopKLists.FromBlock(Slice(block, queries, count, half, count - half), queries, count - half, firstIndex + half, k);
        var merged = TopKLists.Merge([right, left], k);
        for (int q = 0; q < queries; q++)
        {
            var row = Enumerable.Range(0, count).Select(j => new Scored(firstIndex + j, block[q * count + j])).ToArray();
            Assert.Equal(Reference(row, k, ascending: true), lists.Proponents[q]);
            Assert.Equal(Reference(row, k, ascending: false), lists.Opponents[q]);
            Assert.Equal(lists.Proponents[q], merged.Proponents[q]);
            Assert.Equal(lists.Opponents[q], merged.Opponents[q]);
        }
    }

    private static double[] Slice(double[] block, int queries, int count, int start, int length) =>
        Enumerable.Range(0, queries).SelectMany(q => block.Skip(q * count + start).Take(length)).ToArray();
}
