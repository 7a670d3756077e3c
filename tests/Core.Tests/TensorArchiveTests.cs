using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Influence.Core.Storage;
using Xunit;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

public class TensorArchiveTests
{
    private static MemoryStream Written(params KeyValuePair<string, Tensor>[] tensors)
    {
        var s = new MemoryStream();
        TensorArchive.Write(s, tensors);
        s.Position = 0;
        return s;
    }

    [Fact]
    public void Named_tensors_and_scalars_round_trip_with_their_dtypes_and_shapes()
    {
        using var m = arange(6, dtype: ScalarType.Float64).reshape(2, 3).div(7);
        using var f = tensor(new float[] { 1.5f, -2 });
        using var s = Written(new("matrix", m), new("floats", f), new("count", TensorArchive.Scalar(42L)),
            new("damping", TensorArchive.Scalar(1e-3)), new("flag", TensorArchive.Scalar(true)));
        using var a = TensorArchive.Read(s, "test archive", CPU);
        Assert.Equal([2L, 3], a["matrix"].shape);
        Assert.Equal(m.data<double>().ToArray(), a["matrix"].data<double>().ToArray());
        Assert.Equal(ScalarType.Float32, a["floats"].dtype);
        Assert.Equal([1.5f, -2f], a["floats"].data<float>().ToArray());
        Assert.Equal((42L, 1e-3, true), (a.Long("count"), a.Double("damping"), a.Bool("flag")));
        Assert.False(a.Has("other"));
        Assert.Equal("test archive has no tensor 'other'", Assert.Throws<InvalidDataException>(() => a["other"]).Message);
    }

    /// <summary>Tensors are written from native memory in 64 MB slices: one of 72 MB crosses a slice boundary, behind a small one.</summary>
    [Fact]
    public void A_tensor_larger_than_a_write_slice_round_trips()
    {
        using var small = tensor(new float[] { 3, 4, 5 });
        using var large = arange(9_000_000L, dtype: ScalarType.Float64).reshape(3_000, 3_000).div(3);
        using var s = Written(new("small", small), new("large", large));
        using var a = TensorArchive.Read(s, "test archive", CPU);
        Assert.Equal([3_000L, 3_000], a["large"].shape);
        Assert.True(a["large"].eq(large).all().item<bool>());
        Assert.Equal([3f, 4, 5], a["small"].data<float>().ToArray());
    }

    /// <summary>The layout is the safetensors format, checked by hand: an 8-byte little-endian index length, the JSON index, raw data.</summary>
    [Fact]
    public void The_bytes_are_safetensors_as_python_reads_them()
    {
        using var v = tensor(new double[] { 0.25, -4 });
        var bytes = Written(new("v", v), new("n", TensorArchive.Scalar(7L))).ToArray();
        long indexLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var index = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)indexLength));
        var e = index.RootElement.GetProperty("v");
        Assert.Equal("F64", e.GetProperty("dtype").GetString());
        Assert.Equal([2L], e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        var range = e.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
        int data = 8 + (int)indexLength;
        Assert.Equal(0.25, BitConverter.ToDouble(bytes, data + (int)range[0]));
        Assert.Equal(-4.0, BitConverter.ToDouble(bytes, data + (int)range[0] + 8));
        var n = index.RootElement.GetProperty("n");
        Assert.Equal(("I64", 0), (n.GetProperty("dtype").GetString(), n.GetProperty("shape").GetArrayLength()));
        Assert.Equal(7L, BitConverter.ToInt64(bytes, data + (int)n.GetProperty("data_offsets")[0].GetInt64()));
    }

    [Fact]
    public void Only_the_tensors_asked_for_are_read_and_a_missing_one_is_named()
    {
        using var a1 = ones(3);
        using var b1 = zeros(2);
        using var s = Written(new("a", a1), new("b", b1));
        using (var a = TensorArchive.Read(s, "archive", CPU, ["b"]))
        {
            Assert.True(a.Has("b"));
            Assert.False(a.Has("a"));
        }
        s.Position = 0;
        var e = Assert.Throws<InvalidDataException>(() => TensorArchive.Read(s, "archive", CPU, ["c"]));
        Assert.StartsWith("archive has no tensor 'c'", e.Message);
    }

    /// <summary>An archive from an untrusted store: nothing is allocated from an index that does not match the bytes.</summary>
    [Theory]
    [InlineData("{\"x\":{\"dtype\":\"F64\",\"shape\":[1000000000,1000],\"data_offsets\":[0,16]}}", "does not fit its byte range")]
    [InlineData("{\"x\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,32]}}", "does not fit its byte range")]
    [InlineData("{\"x\":{\"dtype\":\"F64\",\"shape\":[-2],\"data_offsets\":[0,16]}}", "negative dimension")]
    [InlineData("{\"x\":{\"dtype\":\"C64\",\"shape\":[2],\"data_offsets\":[0,16]}}", "unknown dtype")]
    [InlineData("{\"x\":{\"dtype\":\"F64\"}}", "malformed tensor index")]
    [InlineData("not json", "malformed tensor index")]
    public void A_malformed_archive_is_refused_with_its_source_named(string index, string problem)
    {
        var json = Encoding.UTF8.GetBytes(index);
        var s = new MemoryStream();
        s.Write(BitConverter.GetBytes((ulong)json.Length));
        s.Write(json);
        s.Write(new byte[16]);
        s.Position = 0;
        var e = Assert.Throws<InvalidDataException>(() => TensorArchive.Read(s, "artifact 'jobs/j/work/x.safetensors'", CPU));
        Assert.StartsWith("artifact 'jobs/j/work/x.safetensors'", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void A_stream_shorter_than_its_index_is_refused()
    {
        var s = new MemoryStream([.. BitConverter.GetBytes(1000UL), .. "{}"u8.ToArray()]);
        var e = Assert.Throws<InvalidDataException>(() => TensorArchive.Read(s, "archive", CPU));
        Assert.Contains("is not a tensor archive", e.Message);
        Assert.Contains("is not a tensor archive", Assert.Throws<InvalidDataException>(() => TensorArchive.Read(new MemoryStream([1, 2]), "archive", CPU)).Message);
    }
}
