using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core;

/// <summary>Raw little-endian tensor serialisation (float32/float64/int64): dtype, shape, data.</summary>
public static class TensorIO
{
    private const int ChunkElements = 1 << 20;

    /// <summary>Writes one tensor to a stream, leaving the stream open.</summary>
    public static void Write(Stream stream, Tensor t)
    {
        using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        Write(w, t);
    }

    public static void Write(BinaryWriter w, Tensor t)
    {
        var cpu = t.detach().cpu().contiguous();
        w.Write((int)cpu.dtype);
        w.Write(cpu.shape.Length);
        foreach (var d in cpu.shape) w.Write(d);
        switch (cpu.dtype)
        {
            case ScalarType.Float64: WriteData<double>(w, cpu); break;
            case ScalarType.Float32: WriteData<float>(w, cpu); break;
            case ScalarType.Int64: WriteData<long>(w, cpu); break;
            default: throw new NotSupportedException($"dtype {cpu.dtype}");
        }
    }

    public static void WriteOptional(BinaryWriter w, Tensor? t)
    {
        w.Write(t is not null);
        if (t is not null) Write(w, t);
    }

    public static Tensor Read(BinaryReader r, Device device)
    {
        var dtype = (ScalarType)r.ReadInt32();
        var shape = new long[r.ReadInt32()];
        for (int i = 0; i < shape.Length; i++) shape[i] = r.ReadInt64();
        var t = dtype switch
        {
            ScalarType.Float64 => ReadData<double>(r, shape, dtype, a => tensor(a)),
            ScalarType.Float32 => ReadData<float>(r, shape, dtype, a => tensor(a)),
            ScalarType.Int64 => ReadData<long>(r, shape, dtype, a => tensor(a)),
            _ => throw new InvalidDataException($"dtype {dtype}"),
        };
        return device.type == DeviceType.CPU ? t : t.to(device);
    }

    public static Tensor? ReadOptional(BinaryReader r, Device device) => r.ReadBoolean() ? Read(r, device) : null;

    /// <summary>A named artifact of several tensors: the name, their count, then each.</summary>
    public static void WriteList(Stream stream, string magic, IReadOnlyList<Tensor> tensors)
    {
        using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        w.Write(magic);
        w.Write(tensors.Count);
        foreach (var t in tensors) Write(w, t);
    }

    /// <summary>The first <paramref name="count"/> tensors of a <see cref="WriteList"/> artifact (the rest are not read).</summary>
    public static Tensor[] ReadList(Stream stream, string magic, int count, Device device)
    {
        using var r = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        var found = r.ReadString();
        if (found != magic) throw new InvalidDataException($"expected a '{magic}' artifact, found '{found}'");
        int stored = r.ReadInt32();
        if (count > stored) throw new InvalidDataException($"the '{magic}' artifact holds {stored} tensors, not {count}");
        var result = new Tensor[count];
        for (int i = 0; i < count; i++) result[i] = Read(r, device);
        return result;
    }

    private static void WriteData<T>(BinaryWriter w, Tensor cpu) where T : unmanaged
    {
        var flat = cpu.view(-1);
        long n = flat.shape[0];
        var buffer = new T[Math.Min(n, ChunkElements)];
        for (long start = 0; start < n; start += ChunkElements)
        {
            long len = Math.Min(ChunkElements, n - start);
            using var chunk = flat.narrow(0, start, len);
            chunk.data<T>().CopyTo(buffer);
            w.Write(MemoryMarshal.AsBytes(buffer.AsSpan(0, (int)len)));
        }
    }

    private static Tensor ReadData<T>(BinaryReader r, long[] shape, ScalarType dtype, Func<T[], Tensor> fromArray) where T : unmanaged
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        var t = empty(shape, dtype: dtype);
        var flat = t.view(-1);
        var buffer = new T[Math.Min(n, ChunkElements)];
        for (long start = 0; start < n; start += ChunkElements)
        {
            int len = (int)Math.Min(ChunkElements, n - start);
            var bytes = MemoryMarshal.AsBytes(buffer.AsSpan(0, len));
            r.BaseStream.ReadExactly(bytes);
            using var src = fromArray(buffer.AsSpan(0, len).ToArray());
            flat.narrow(0, start, len).copy_(src);
        }
        return t;
    }
}
