using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Influence.Core.Storage;

/// <summary>
/// numpy's .npy format (version 1.0), for dense matrices too large for CSV: a magic string, a
/// header dict (dtype, C order, shape) padded to 64 bytes, then the raw little-endian values row
/// after row. Written row by row, so no process holds the matrix; numpy opens it with
/// <c>np.load(path, mmap_mode="r")</c>.
/// </summary>
public static partial class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0];

    /// <summary>The element types written here: float32 ('&lt;f4') and float64 ('&lt;f8').</summary>
    public enum DType { Float32, Float64 }

    public static string Descr(DType dtype) => dtype == DType.Float32 ? "<f4" : "<f8";

    /// <summary>Writes the header of a C-order array of <paramref name="shape"/>; the rows follow (<see cref="WriteRow"/>).</summary>
    public static void WriteHeader(Stream stream, DType dtype, params long[] shape)
    {
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture)));
        string dict = $"{{'descr': '{Descr(dtype)}', 'fortran_order': False, 'shape': ({dims}), }}";
        int unpadded = Magic.Length + 2 + dict.Length + 1;
        var header = dict + new string(' ', (64 - unpadded % 64) % 64) + "\n";
        stream.Write(Magic);
        Span<byte> length = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(length, checked((ushort)header.Length));
        stream.Write(length);
        stream.Write(Encoding.ASCII.GetBytes(header));
    }

    /// <summary>Appends one row, converted to <paramref name="dtype"/>.</summary>
    public static void WriteRow(Stream stream, DType dtype, ReadOnlySpan<double> row)
    {
        if (dtype == DType.Float64)
        {
            stream.Write(MemoryMarshal.AsBytes(row));
            return;
        }
        var buffer = new float[row.Length];
        for (int i = 0; i < row.Length; i++) buffer[i] = (float)row[i];
        stream.Write(MemoryMarshal.AsBytes(buffer.AsSpan()));
    }

    /// <summary>An array's header as read back: its dtype, shape and where its data starts.</summary>
    public sealed record Header(DType DType, long[] Shape, long DataOffset)
    {
        public int ElementSize => DType == DType.Float32 ? 4 : 8;
    }

    /// <summary>Reads a header this class wrote (C order, float32 or float64); anything else is refused naming <paramref name="source"/>.</summary>
    public static Header ReadHeader(Stream stream, string source)
    {
        var (descr, shape, offset) = ParseHeader(stream, source);
        if (descr is not ("<f4" or "<f8")) throw new InvalidDataException($"{source}: a .npy array of '{descr}', not float32 or float64");
        var header = new Header(descr == "<f4" ? DType.Float32 : DType.Float64, shape, offset);
        CheckLength(stream, source, shape, header.ElementSize, offset);
        return header;
    }

    /// <summary>
    /// A whole input array (a dataset's features or labels) as float64, with its shape: numpy's
    /// numeric dtypes (float32/64, signed and unsigned integers, bool), little-endian, C order.
    /// Its size is checked against <paramref name="maxValues"/> before anything is read.
    /// </summary>
    public static (long[] Shape, double[] Values) ReadValues(Stream stream, string source, long maxValues)
    {
        var (descr, shape, offset) = ParseHeader(stream, source);
        string type = descr.TrimStart('<', '|');
        if (descr[0] == '>' || !InputTypes.TryGetValue(type, out var size))
            throw new InvalidDataException($"{source}: a .npy array of '{descr}'; expected little-endian numbers (float32/64, int8-64, uint8-64 or bool)");
        long count = shape.Aggregate(1L, (a, d) => checked(a * d));
        if (count > maxValues) throw new InvalidDataException(FormattableString.Invariant($"{source}: {count:N0} values, more than the {maxValues:N0} accepted"));
        CheckLength(stream, source, shape, size, offset);
        var bytes = new byte[count * size];
        stream.Position = offset;
        stream.ReadExactly(bytes);
        var values = new double[count];
        switch (type)
        {
            case "f4": Widen(MemoryMarshal.Cast<byte, float>(bytes), values); break;
            case "f8": MemoryMarshal.Cast<byte, double>(bytes).CopyTo(values); break;
            case "i1": Widen(MemoryMarshal.Cast<byte, sbyte>(bytes), values); break;
            case "u1" or "b1": Widen<byte>(bytes, values); break;
            case "i2": Widen(MemoryMarshal.Cast<byte, short>(bytes), values); break;
            case "u2": Widen(MemoryMarshal.Cast<byte, ushort>(bytes), values); break;
            case "i4": Widen(MemoryMarshal.Cast<byte, int>(bytes), values); break;
            case "u4": Widen(MemoryMarshal.Cast<byte, uint>(bytes), values); break;
            case "i8": Widen(MemoryMarshal.Cast<byte, long>(bytes), values); break;
            case "u8": Widen(MemoryMarshal.Cast<byte, ulong>(bytes), values); break;
        }
        return (shape, values);
    }

    private static void Widen<T>(ReadOnlySpan<T> from, double[] to) where T : System.Numerics.INumberBase<T>
    {
        for (int i = 0; i < from.Length; i++) to[i] = double.CreateChecked(from[i]);
    }

    /// <summary>The shape in a .npy header (any dtype), for checks made before the data is read.</summary>
    public static long[] ReadHeaderShape(Stream stream, string source) => ParseHeader(stream, source).Shape;

    /// <summary>Element sizes of the dtypes <see cref="ReadValues"/> takes (by numpy's descr without the byte-order mark).</summary>
    private static readonly Dictionary<string, int> InputTypes = new()
    {
        ["f4"] = 4, ["f8"] = 8, ["i1"] = 1, ["u1"] = 1, ["b1"] = 1, ["i2"] = 2, ["u2"] = 2, ["i4"] = 4, ["u4"] = 4, ["i8"] = 8, ["u8"] = 8,
    };

    /// <summary>The magic, version 1, and the header dict of a C-order array; anything else is refused naming <paramref name="source"/>.</summary>
    private static (string Descr, long[] Shape, long DataOffset) ParseHeader(Stream stream, string source)
    {
        Span<byte> start = stackalloc byte[10];
        try { stream.ReadExactly(start); }
        catch (EndOfStreamException) { throw new InvalidDataException($"{source} is not a .npy file (too short)"); }
        if (!start[..6].SequenceEqual(Magic.AsSpan(0, 6)) || start[6] != 1)
            throw new InvalidDataException($"{source} is not a version 1 .npy file");
        int length = BinaryPrimitives.ReadUInt16LittleEndian(start[8..]);
        var text = new byte[length];
        try { stream.ReadExactly(text); }
        catch (EndOfStreamException) { throw new InvalidDataException($"{source}: the .npy header is cut short"); }
        var m = HeaderPattern().Match(Encoding.ASCII.GetString(text));
        if (!m.Success) throw new InvalidDataException($"{source}: not a C-order numeric .npy array (a Fortran-order or structured array? save with np.ascontiguousarray)");
        long[] shape;
        try
        {
            shape = m.Groups["shape"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(d => long.Parse(d, NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (OverflowException) { throw new InvalidDataException($"{source}: a dimension of the .npy shape is too large"); }
        return (m.Groups["descr"].Value, shape, 10 + length);
    }

    private static void CheckLength(Stream stream, string source, long[] shape, int elementSize, long offset)
    {
        long expected;
        try { expected = shape.Aggregate((long)elementSize, (a, d) => checked(a * d)); }
        catch (OverflowException) { throw new InvalidDataException($"{source}: the .npy shape ({string.Join(", ", shape)}) is too large"); }
        if (stream.Length - offset != expected)
            throw new InvalidDataException($"{source}: {stream.Length - offset} bytes of data for shape ({string.Join(", ", shape)}), expected {expected}");
    }

    /// <summary>Reads row <paramref name="row"/> of a 2-d array into <paramref name="into"/> (as float64).</summary>
    public static void ReadRow(Stream stream, Header header, long row, Span<double> into)
    {
        long columns = header.Shape[1];
        if (into.Length != columns || row < 0 || row >= header.Shape[0]) throw new ArgumentOutOfRangeException(nameof(row));
        stream.Position = header.DataOffset + row * columns * header.ElementSize;
        if (header.DType == DType.Float64)
        {
            stream.ReadExactly(MemoryMarshal.AsBytes(into));
            return;
        }
        var buffer = new float[columns];
        stream.ReadExactly(MemoryMarshal.AsBytes(buffer.AsSpan()));
        for (int i = 0; i < buffer.Length; i++) into[i] = buffer[i];
    }

    /// <summary>
    /// Every row of a 2-d array that must have the shape (<paramref name="rows"/>, <paramref name="columns"/>),
    /// as float64; anything else is refused naming <paramref name="source"/>.
    /// </summary>
    public static double[][] ReadMatrix(Stream stream, string source, long rows, long columns)
    {
        var header = ReadHeader(stream, source);
        if (!header.Shape.SequenceEqual([rows, columns]))
            throw new InvalidDataException($"{source} has shape ({string.Join(", ", header.Shape)}), expected ({rows}, {columns})");
        var result = new double[rows][];
        for (long k = 0; k < rows; k++)
        {
            result[k] = new double[columns];
            ReadRow(stream, header, k, result[k]);
        }
        return result;
    }

    [GeneratedRegex(@"^\{'descr': '(?<descr>[<|>]?[fiub][1248])', 'fortran_order': False, 'shape': \((?<shape>[0-9, ]*)\), \} *\n$")]
    private static partial Regex HeaderPattern();
}
