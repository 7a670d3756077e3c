using Influence.Core.Jobs;
using Xunit;

namespace Influence.Core.Tests;

public class TrainingExampleSummaryTests
{
    /// <summary>Fed row by row, it agrees with sorting each column of the dense matrix.</summary>
    [Theory]
    [InlineData(7, 50, 3)]
    [InlineData(2, 9, 5)] // fewer queries than k
    public void Agrees_with_the_dense_matrix(int queries, int trainCount, int k)
    {
        var random = new Random(11);
        // Values from a small set, so ties happen: the earlier query must win them.
        var dense = Enumerable.Range(0, queries).Select(_ => Enumerable.Range(0, trainCount).Select(_ => random.Next(-20, 21) / 4.0).ToArray()).ToArray();
        var summary = new TrainingExampleSummary(trainCount, k);
        for (int q = 0; q < queries; q++) summary.Add(q, dense[q]);

        for (int j = 0; j < trainCount; j++)
        {
            var column = Enumerable.Range(0, queries).Select(q => (Query: q, Influence: dense[q][j])).ToList();
            double total = column.Sum(c => c.Influence);
            Assert.Equal(total, summary.Total(j), 12);
            Assert.Equal(total / queries, summary.Mean(j), 12);
            Assert.Equal(column.OrderBy(c => c.Influence).ThenBy(c => c.Query).Take(k).ToList(), summary.Helps(j));
            Assert.Equal(column.OrderByDescending(c => c.Influence).ThenBy(c => c.Query).Take(k).ToList(), summary.Harms(j));
        }
    }

    [Fact]
    public void A_row_of_the_wrong_length_is_refused()
    {
        var summary = new TrainingExampleSummary(4, 2);
        Assert.Throws<ArgumentException>(() => summary.Add(0, new double[3]));
    }

    [Fact]
    public void Influence_csv_is_written_up_to_the_pair_limit_and_the_reason_names_the_setting()
    {
        var settings = ScoreSettings.Defaults with { TestIndices = Enumerable.Range(0, 1000).ToArray() };
        long atLimit = ScoreSettings.CsvPairLimit / 1000;
        Assert.Null(settings.InfluenceCsvOmitted(atLimit));
        Assert.Equal("not written: 10,001,000 (test, train) pairs are more than 10,000,000 (--influence-csv on writes it anyway)",
            settings.InfluenceCsvOmitted(atLimit + 1, name => "--" + name.Replace('_', '-')));
        Assert.Null((settings with { InfluenceCsv = PairsCsv.On }).InfluenceCsvOmitted(atLimit + 1));
        Assert.Equal("not written (influence_csv off)", (settings with { InfluenceCsv = PairsCsv.Off }).InfluenceCsvOmitted(1));
    }

    [Fact]
    public void Shards_are_added_until_each_shards_score_block_fits_the_memory_budget()
    {
        var allPairs = ScoreSettings.Defaults with { TestIndices = Enumerable.Range(0, 10_000).ToArray() };
        // 10,000 × 60,000 pairs at 16 bytes are 9.6 GB: five blocks of at most 2 GiB.
        Assert.Equal(5, allPairs.ScoringShards(60_000));
        Assert.All(allPairs.ShardRangesFor(60_000), r => Assert.True(10_000L * (r.End - r.Start) * ScoreSettings.ShardBytesPerPair <= 2048L << 20));
        Assert.Equal(16, (allPairs with { Shards = 16 }).ScoringShards(60_000));                      // more asked for: kept
        Assert.Equal(4, (allPairs with { TestIndices = [0, 1, 2] }).ScoringShards(60_000));           // small blocks: --shards
        Assert.Equal(144, (allPairs with { MemoryBudgetMb = 64 }).ScoringShards(60_000));            // 9.6e9 B / 64 MiB = 143.1
        var huge = allPairs with { TestIndices = new int[2_000_000], MemoryBudgetMb = 16 };           // 2e6 × 16 B a row: 30.5 MiB
        Assert.Equal(10, huge.ScoringShards(10));                                                       // never more shards than rows
    }
}
