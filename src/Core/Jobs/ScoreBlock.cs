using System.Runtime.InteropServices;
using Influence.Core.Storage;

namespace Influence.Core.Jobs;

/// <summary>
/// One shard's score block, written once: a <see cref="TensorArchive"/> holding the influence
/// (Q × n, float64, query by query), the self-influence (n; NaN where the method has none) and the
/// shard's timings. Rows are read straight from the stream at their offsets: readers of several
/// shards advanced together give influence.csv's order (test point, then training row) while
/// holding one row of each shard, never the whole N × Q.
/// </summary>
public sealed class ScoreBlock : IDisposable
{
    public const string Influence = "influence", SelfInfluence = "self_influence",
        Seconds = "seconds", ForwardBackwardSeconds = "forward_backward_seconds", Passes = "passes",
        SelfInfluenceSeconds = "self_influence_seconds", GemmSeconds = "gemm_seconds";
    private static readonly string[] TimingScalars = [Seconds, ForwardBackwardSeconds, SelfInfluenceSeconds, GemmSeconds];

    private readonly Stream stream;
    private readonly TensorArchive.Index index;
    private readonly string name;
    private int rowsRead;

    public int QueryCount { get; }
    public int Count { get; }

    /// <summary>Writes a block: <paramref name="influence"/> query-major (Q × n), <paramref name="selfInfluence"/> null where the method has none.</summary>
    public static void Write(Stream stream, int queries, int count, double[] influence, double[]? selfInfluence, ScoreJob.BlockTimings timings)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        TensorArchive.Write(stream, [
            new(Influence, TorchSharp.torch.tensor(influence, [queries, count], TorchSharp.torch.ScalarType.Float64)),
            new(SelfInfluence, TorchSharp.torch.tensor(selfInfluence ?? Enumerable.Repeat(double.NaN, count).ToArray(), dtype: TorchSharp.torch.ScalarType.Float64)),
            new(Seconds, TensorArchive.Scalar(timings.Seconds)),
            new(ForwardBackwardSeconds, TensorArchive.Scalar(timings.ForwardBackwardSeconds)),
            new(SelfInfluenceSeconds, TensorArchive.Scalar(timings.SelfInfluenceSeconds)),
            new(GemmSeconds, TensorArchive.Scalar(timings.GemmSeconds)),
            new(Passes, TensorArchive.Scalar(timings.Passes))]);
    }

    public ScoreBlock(Stream stream, string name, int expectedCount, long expectedQueries)
    {
        this.stream = stream;
        this.name = name;
        try
        {
            index = TensorArchive.ReadIndex(stream, name);
            index.Expect(Influence, "F64", expectedQueries, expectedCount);
            index.Expect(SelfInfluence, "F64", expectedCount);
            foreach (var scalar in TimingScalars) index.Expect(scalar, "F64");
            index.Expect(Passes, "I64");
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        (QueryCount, Count) = ((int)expectedQueries, expectedCount);
    }

    /// <summary>The next query's influence on every row of the shard.</summary>
    public void ReadInfluenceRow(Span<double> into)
    {
        if (rowsRead == QueryCount) throw new InvalidOperationException($"{name}: all {QueryCount} rows were read");
        ReadInfluenceRow(rowsRead++, into);
    }

    /// <summary>Query <paramref name="query"/>'s influence on every row of the shard, into the first <see cref="Count"/> values.</summary>
    public void ReadInfluenceRow(int query, Span<double> into)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(query);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(query, QueryCount);
        stream.Position = index.Entries[Influence].Start + (long)query * Count * sizeof(double);
        ReadDoubles(into[..Count]);
    }

    /// <summary>All remaining influence rows, query-major (a shard's own block: Q × n of one shard).</summary>
    public double[] ReadAllInfluence()
    {
        var all = new double[(long)(QueryCount - rowsRead) * Count];
        for (long offset = 0; offset < all.LongLength; offset += Count) ReadInfluenceRow(all.AsSpan((int)offset, Count));
        return all;
    }

    /// <summary>The self-influence of every row (NaN where the method has none).</summary>
    public double[] ReadSelfInfluence()
    {
        using var a = TensorArchive.Read(stream, name, TorchSharp.torch.CPU, [SelfInfluence]);
        return a[SelfInfluence].data<double>().ToArray();
    }

    /// <summary>The shard's timings.</summary>
    public ScoreJob.BlockTimings ReadTimings()
    {
        using var a = TensorArchive.Read(stream, name, TorchSharp.torch.CPU, [.. TimingScalars, Passes]);
        return new ScoreJob.BlockTimings(a.Double(Seconds), a.Double(ForwardBackwardSeconds), a.Int(Passes), a.Double(SelfInfluenceSeconds), a.Double(GemmSeconds));
    }

    // safetensors is little-endian, as is every platform .NET runs on here.
    private void ReadDoubles(Span<double> into) => stream.ReadExactly(MemoryMarshal.AsBytes(into));

    public void Dispose() => stream.Dispose();
}
