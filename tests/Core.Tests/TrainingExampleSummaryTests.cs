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
}
