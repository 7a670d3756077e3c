using System.Runtime.InteropServices;

namespace Influence.Core.Jobs;

/// <summary>
/// Reads one shard's score block front to back: the header (Q, n), Q rows of n influences (query
/// by query), n self-influences, then the shard's timings. Readers of several shards advanced
/// together give influence.csv's order (test point, then training row) while holding one row of
/// each shard, never the whole N × Q.
/// </summary>
public sealed class ScoreBlockReader : IDisposable
{
    private readonly Stream stream;
    private readonly BinaryReader reader;
    private readonly string name;
    private int rowsRead;
    private bool selfInfluenceRead;

    public int QueryCount { get; }
    public int Count { get; }

    public ScoreBlockReader(Stream stream, string name, int expectedCount, long expectedQueries)
    {
        this.stream = stream;
        this.name = name;
        reader = new BinaryReader(stream);
        QueryCount = reader.ReadInt32();
        Count = reader.ReadInt32();
        if (Count != expectedCount || QueryCount != expectedQueries)
        {
            Dispose();
            throw new InvalidDataException($"{name} holds {QueryCount}×{Count}, expected {expectedQueries}×{expectedCount}");
        }
    }

    /// <summary>The next query's influence on every row of the shard.</summary>
    public void ReadInfluenceRow(Span<double> into)
    {
        if (rowsRead == QueryCount) throw new InvalidOperationException($"{name}: all {QueryCount} rows were read");
        ReadDoubles(into[..Count]);
        rowsRead++;
    }

    /// <summary>All remaining influence rows, query-major (a shard's own block: Q × n of one shard).</summary>
    public double[] ReadAllInfluence()
    {
        var all = new double[(long)(QueryCount - rowsRead) * Count];
        for (long offset = 0; offset < all.LongLength; offset += Count) ReadInfluenceRow(all.AsSpan((int)offset, Count));
        return all;
    }

    /// <summary>The self-influence of every row (NaN where the method has none); after the influence rows.</summary>
    public double[] ReadSelfInfluence()
    {
        if (rowsRead != QueryCount || selfInfluenceRead) throw new InvalidOperationException($"{name}: {QueryCount - rowsRead} influence rows are still unread, or the self-influence was read");
        var self = new double[Count];
        ReadDoubles(self);
        selfInfluenceRead = true;
        return self;
    }

    /// <summary>The shard's timings; after the self-influence.</summary>
    public ScoreJob.BlockTimings ReadTimings()
    {
        if (!selfInfluenceRead) throw new InvalidOperationException($"{name}: read the influence and self-influence first");
        return new ScoreJob.BlockTimings(reader.ReadDouble(), reader.ReadDouble(), reader.ReadInt32());
    }

    // The block was written by BinaryWriter (little-endian), as is every platform .NET runs on here.
    private void ReadDoubles(Span<double> into) => stream.ReadExactly(MemoryMarshal.AsBytes(into));

    public void Dispose()
    {
        reader.Dispose();
        stream.Dispose();
    }
}
