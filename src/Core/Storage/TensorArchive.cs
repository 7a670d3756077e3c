using System.Buffers.Binary;
using System.Text.Json;
using Influence.Core.Safety;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Influence.Core.Storage;

/// <summary>
/// The one container for tensor artifacts: named tensors in the safetensors format (an 8-byte
/// header length, a JSON index of name → dtype, shape, byte range, then the raw little-endian
/// data), written and read by TorchSharp.PyBridge. Python opens any artifact with
/// <c>safetensors.numpy.load_file</c>. Numbers that go with the tensors (a damping, a count, a
/// flag) are 0-d tensors. The store's contents are untrusted: the index is checked against the
/// stream's length before any tensor is allocated.
/// </summary>
public sealed class TensorArchive : IDisposable
{
    /// <summary>The name of an artifact's only tensor (<see cref="WriteOne"/>).</summary>
    public const string Only = "tensor";
    private const long MaxIndexBytes = 16 << 20;

    private readonly Dictionary<string, Tensor> tensors;
    private readonly string source;

    private TensorArchive(Dictionary<string, Tensor> tensors, string source)
    {
        this.tensors = tensors;
        this.source = source;
    }

    /// <summary>Writes <paramref name="tensors"/> (in their order) to <paramref name="stream"/>, leaving it open.</summary>
    /// <remarks>
    /// Each tensor's bytes go from its native memory to the stream in slices: a managed copy of a
    /// 493 MB Hessian cost more than its write (a fresh large array is page-faulted in and zeroed).
    /// </remarks>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        using var scope = NewDisposeScope();
        var cpu = tensors.Select(e => (Name: e.Key, Tensor: e.Value.detach().cpu().contiguous())).ToList();
        var index = new Dictionary<string, object>();
        long offset = 0;
        foreach (var (name, t) in cpu)
        {
            long bytes = t.numel() * t.ElementSize;
            index[name] = new { dtype = DTypeName(t.dtype, name), shape = t.shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(index);
        int padded = (json.Length + 7) / 8 * 8; // the data starts 8-byte aligned (the format pads the index with spaces)
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, padded);
        stream.Write(length);
        stream.Write(json);
        for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        foreach (var (_, t) in cpu)
        {
            using var flat = t.reshape(-1);
            long step = WriteSliceBytes / t.ElementSize;
            for (long start = 0; start < flat.shape[0]; start += step)
            {
                using var slice = flat.narrow(0, start, Math.Min(step, flat.shape[0] - start));
                stream.Write(slice.bytes);
            }
        }
    }

    private const long WriteSliceBytes = 64 << 20;

    private static string DTypeName(ScalarType dtype, string name) => dtype switch
    {
        ScalarType.Float64 => "F64", ScalarType.Float32 => "F32", ScalarType.Float16 => "F16", ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64", ScalarType.Int32 => "I32", ScalarType.Int16 => "I16", ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8", ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"tensor '{name}': dtype {dtype} has no safetensors name"),
    };

    public static void Write(IArtifactStore store, string key, IEnumerable<KeyValuePair<string, Tensor>> tensors) =>
        store.Write(key, s => Write(s, tensors));

    public static void WriteOne(IArtifactStore store, string key, Tensor t) => Write(store, key, [new(Only, t)]);

    /// <summary>
    /// Reads the archive at <paramref name="key"/> onto <paramref name="device"/>; with
    /// <paramref name="only"/>, just those tensors (the rest are not read).
    /// </summary>
    public static TensorArchive Read(IArtifactStore store, string key, Device device, IReadOnlyCollection<string>? only = null)
    {
        using var s = store.OpenRead(key);
        return Read(s, $"artifact '{Echo.Cap(key)}'", device, only);
    }

    public static TensorArchive Read(Stream stream, string source, Device device, IReadOnlyCollection<string>? only = null)
    {
        stream.Position = 0; // an archive is the whole stream, wherever a reader left it
        var names = ReadIndex(stream, source).Entries.Keys.ToHashSet();
        if (only?.FirstOrDefault(n => !names.Contains(n)) is { } missing)
            throw new InvalidDataException($"{source} has no tensor '{missing}' (it holds {string.Join(", ", names.Take(10))})");
        stream.Position = 0;
        var loaded = Safetensors.LoadStateDict(stream, leaveOpen: true, keysToKeep: only?.ToList());
        if (device.type != DeviceType.CPU)
            foreach (var name in loaded.Keys.ToList())
            {
                var cpu = loaded[name];
                loaded[name] = cpu.to(device);
                cpu.Dispose();
            }
        return new TensorArchive(loaded, source);
    }

    public static Tensor ReadOne(IArtifactStore store, string key, Device device)
    {
        using var archive = Read(store, key, device, [Only]);
        return archive.Take(Only);
    }

    public bool Has(string name) => tensors.ContainsKey(name);

    /// <summary>The tensor called <paramref name="name"/>; it stays owned by the archive (disposed with it).</summary>
    public Tensor this[string name] => tensors.TryGetValue(name, out var t) ? t
        : throw new InvalidDataException($"{source} has no tensor '{Echo.Cap(name)}'");

    /// <summary>The tensor called <paramref name="name"/>, now owned by the caller.</summary>
    public Tensor Take(string name)
    {
        var t = this[name];
        tensors.Remove(name);
        return t;
    }

    public Tensor? TakeOptional(string name) => Has(name) ? Take(name) : null;

    public double Double(string name)
    {
        using var value = this[name].to(ScalarType.Float64);
        return value.item<double>();
    }

    public long Long(string name)
    {
        using var value = this[name].to(ScalarType.Int64);
        return value.item<long>();
    }

    public int Int(string name) => checked((int)Long(name));
    public bool Bool(string name) => Long(name) != 0;

    /// <summary>A 0-d tensor holding a number, for the scalars that go with an artifact's tensors.</summary>
    public static Tensor Scalar(double value) => tensor(value, dtype: ScalarType.Float64);
    public static Tensor Scalar(long value) => tensor(value, dtype: ScalarType.Int64);
    public static Tensor Scalar(bool value) => tensor(value ? 1L : 0L, dtype: ScalarType.Int64);

    public void Dispose()
    {
        foreach (var t in tensors.Values) t.Dispose();
        tensors.Clear();
    }

    /// <summary>Where a tensor's bytes are: <see cref="Start"/> is from the beginning of the stream.</summary>
    public sealed record Entry(string DType, long[] Shape, long Start, long Length);

    public sealed record Index(IReadOnlyDictionary<string, Entry> Entries, string Source)
    {
        /// <summary>The entry called <paramref name="name"/>, checked to be <paramref name="dtype"/> of <paramref name="shape"/>.</summary>
        public Entry Expect(string name, string dtype, params long[] shape) =>
            Entries.TryGetValue(name, out var e) && e.DType == dtype && e.Shape.SequenceEqual(shape) ? e
                : throw new InvalidDataException($"{Source}: expected tensor '{name}' of {dtype} [{string.Join(", ", shape)}]" +
                    (e is null ? ", it has none" : $", found {e.DType} [{string.Join(", ", e.Shape)}]"));
    }

    /// <summary>
    /// Reads the index at the stream's start (leaving the stream after it), checking that every entry
    /// is a known dtype whose shape matches its byte range inside the stream.
    /// </summary>
    public static Index ReadIndex(Stream stream, string source)
    {
        Span<byte> head = stackalloc byte[8];
        try { stream.ReadExactly(head); }
        catch (EndOfStreamException) { throw new InvalidDataException($"{source} is not a tensor archive (shorter than its header)"); }
        long indexBytes = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(head), long.MaxValue);
        long dataBytes = stream.Length - 8 - indexBytes;
        if (indexBytes > MaxIndexBytes || dataBytes < 0)
            throw new InvalidDataException($"{source} is not a tensor archive (index of {indexBytes} bytes in a stream of {stream.Length})");
        var json = new byte[indexBytes];
        stream.ReadExactly(json);
        var entries = new Dictionary<string, Entry>();
        try
        {
            using var doc = JsonDocument.Parse(json);
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__") continue;
                var e = entry.Value;
                long size = e.GetProperty("dtype").GetString() switch
                {
                    "F64" or "I64" => 8, "F32" or "I32" => 4, "F16" or "BF16" or "I16" => 2, "I8" or "U8" or "BOOL" => 1,
                    var d => throw new InvalidDataException($"{source}: tensor '{Echo.Cap(entry.Name)}' has unknown dtype '{Echo.Cap(d ?? "")}'"),
                };
                long elements = 1;
                var shape = new List<long>();
                foreach (var dim in e.GetProperty("shape").EnumerateArray())
                {
                    long d = dim.GetInt64();
                    if (d < 0) throw new InvalidDataException($"{source}: tensor '{Echo.Cap(entry.Name)}' has a negative dimension");
                    elements = checked(elements * d);
                    shape.Add(d);
                }
                var range = e.GetProperty("data_offsets").EnumerateArray().Select(o => o.GetInt64()).ToArray();
                if (range.Length != 2 || range[0] < 0 || range[1] > dataBytes || checked(range[1] - range[0]) != checked(elements * size))
                    throw new InvalidDataException($"{source}: tensor '{Echo.Cap(entry.Name)}' does not fit its byte range");
                entries[entry.Name] = new Entry(e.GetProperty("dtype").GetString()!, shape.ToArray(), 8 + indexBytes + range[0], range[1] - range[0]);
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or OverflowException or FormatException)
        {
            throw new InvalidDataException($"{source} has a malformed tensor index ({e.GetType().Name})", e);
        }
        return new Index(entries, source);
    }
}
