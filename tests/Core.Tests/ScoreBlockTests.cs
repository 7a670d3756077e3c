using Influence.Core.Jobs;
using Xunit;

namespace Influence.Core.Tests;

public class ScoreBlockTests
{
    /// <summary>A Q × n block: influence 100k + j, self-influence −j − 0.5, timings (1.25, 0.5, 3).</summary>
    private static MemoryStream Block(int q, int n, bool withSelfInfluence = true)
    {
        var s = new MemoryStream();
        var influence = Enumerable.Range(0, q).SelectMany(k => Enumerable.Range(0, n).Select(j => 100.0 * k + j)).ToArray();
        ScoreBlock.Write(s, q, n, influence, withSelfInfluence ? Enumerable.Range(0, n).Select(j => -j - 0.5).ToArray() : null, new ScoreJob.BlockTimings(1.25, 0.5, 3));
        s.Position = 0;
        return s;
    }

    [Fact]
    public void Reads_rows_query_by_query_then_self_influence_then_timings()
    {
        using var reader = new ScoreBlock(Block(3, 4), "block", 4, 3);
        var row = new double[6]; // longer than the shard: only the first n are written
        reader.ReadInfluenceRow(row);
        Assert.Equal([0.0, 1, 2, 3, 0, 0], row);
        reader.ReadInfluenceRow(row);
        Assert.Equal([100.0, 101, 102, 103], row[..4]);
        Assert.Equal([200.0, 201, 202, 203], reader.ReadAllInfluence());
        Assert.Equal([-0.5, -1.5, -2.5, -3.5], reader.ReadSelfInfluence());
        Assert.Equal(new ScoreJob.BlockTimings(1.25, 0.5, 3), reader.ReadTimings());
        Assert.Throws<InvalidOperationException>(() => reader.ReadInfluenceRow(row)); // all rows read
        using var none = new ScoreBlock(Block(1, 2, withSelfInfluence: false), "block", 2, 1);
        Assert.All(none.ReadSelfInfluence(), v => Assert.True(double.IsNaN(v)));
    }

    [Fact]
    public void A_block_of_other_dimensions_is_refused_with_its_name()
    {
        var e = Assert.Throws<InvalidDataException>(() => new ScoreBlock(Block(3, 4), "score block of shard 7", 5, 3));
        Assert.Equal("score block of shard 7: expected tensor 'influence' of F64 [3, 5], found F64 [3, 4]", e.Message);
    }
}
