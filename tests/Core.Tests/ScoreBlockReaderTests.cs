using Influence.Core.Jobs;
using Xunit;

namespace Influence.Core.Tests;

public class ScoreBlockReaderTests
{
    /// <summary>A block as ScoreShard writes it: Q, n, Q×n influence (query-major), n self-influence, timings.</summary>
    private static MemoryStream Block(int q, int n)
    {
        var s = new MemoryStream();
        using (var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            w.Write(q);
            w.Write(n);
            for (int k = 0; k < q; k++)
                for (int j = 0; j < n; j++) w.Write(100.0 * k + j);
            for (int j = 0; j < n; j++) w.Write(-j - 0.5);
            w.Write(1.25);
            w.Write(0.5);
            w.Write(3);
        }
        s.Position = 0;
        return s;
    }

    [Fact]
    public void Reads_rows_query_by_query_then_self_influence_then_timings()
    {
        using var reader = new ScoreBlockReader(Block(3, 4), "block", 4, 3);
        var row = new double[6]; // longer than the shard: only the first n are written
        reader.ReadInfluenceRow(row);
        Assert.Equal([0.0, 1, 2, 3, 0, 0], row);
        reader.ReadInfluenceRow(row);
        Assert.Equal([100.0, 101, 102, 103], row[..4]);
        Assert.Throws<InvalidOperationException>(() => reader.ReadSelfInfluence()); // one row unread
        Assert.Equal([200.0, 201, 202, 203], reader.ReadAllInfluence());
        Assert.Equal([-0.5, -1.5, -2.5, -3.5], reader.ReadSelfInfluence());
        Assert.Equal(new ScoreJob.BlockTimings(1.25, 0.5, 3), reader.ReadTimings());
    }

    [Fact]
    public void A_block_of_other_dimensions_is_refused_with_its_name()
    {
        var e = Assert.Throws<InvalidDataException>(() => new ScoreBlockReader(Block(3, 4), "score block of shard 7", 5, 3));
        Assert.Contains("score block of shard 7 holds 3×4, expected 3×5", e.Message);
    }
}
