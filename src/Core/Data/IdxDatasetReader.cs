using System.Buffers.Binary;
using System.IO.Compression;

namespace Influence.Core.Data;

/// <summary>
/// Reads MNIST-format IDX files (images: unsigned bytes, any number of dimensions after the first;
/// labels: one unsigned byte each), gzip-compressed or not. Pixels are divided by <c>featureScale</c>.
/// The header is read first and checked against <see cref="MaxValues"/> and this process's memory
/// (each value becomes a double: 9 bytes with its byte); then exactly the values it promises are
/// read, into a buffer that grows only as data arrives, so that a small file that inflates to
/// gigabytes (a gzip bomb), or a header that promises more than the file holds, stops with an error
/// naming the file instead of filling memory.
/// </summary>
public static class IdxDatasetReader
{
    /// <summary>At most this many values in one file (the whole Fashion-MNIST training set holds 47 million).</summary>
    public const long MaxValues = 1_000_000_000;

    public static Dataset Read(string imagesPath, string labelsPath, double featureScale = 1.0)
    {
        var (imageDims, pixels) = ReadIdx(imagesPath);
        var (labelDims, labelBytes) = ReadIdx(labelsPath);
        if (imageDims.Length < 2) throw new DataFormatException(imagesPath, "header", $"an image file needs at least 2 dimensions, found {imageDims.Length}");
        if (labelDims.Length != 1) throw new DataFormatException(labelsPath, "header", $"a label file has 1 dimension, found {labelDims.Length}");
        if (imageDims[0] != labelDims[0])
            throw new DataFormatException(labelsPath, "header", $"{labelDims[0]} labels for {imageDims[0]} images in {imagesPath}");
        if (imageDims[0] == 0) throw new DataFormatException(imagesPath, null, "no images");
        int featureCount = RowSize(imageDims);
        var features = new double[pixels.Length];
        for (int i = 0; i < pixels.Length; i++) features[i] = pixels[i] / featureScale;
        var labels = labelBytes.Select(b => (int)b).ToArray();
        return new Dataset(imagesPath, features, labels, featureCount);
    }

    /// <summary>The labels of an IDX labels file.</summary>
    public static IEnumerable<int> Labels(string labelsPath) => ReadIdx(labelsPath).Data.Select(b => (int)b);

    /// <summary>Values per image, from the header alone.</summary>
    public static int FeatureCount(string imagesPath)
    {
        using var stream = Open(imagesPath);
        var dims = ReadHeader(stream, imagesPath);
        if (dims.Length < 2) throw new DataFormatException(imagesPath, "header", $"an image file needs at least 2 dimensions, found {dims.Length}");
        return RowSize(dims);
    }

    /// <summary>True when the file starts like an IDX file of unsigned bytes (plain or gzip).</summary>
    public static bool LooksLikeIdx(string path) =>
        path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) || path.Contains("-ubyte", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".idx", StringComparison.OrdinalIgnoreCase);

    private static int RowSize(int[] dims)
    {
        long size = 1;
        for (int d = 1; d < dims.Length; d++) size *= dims[d]; // each partial product bounded by MaxValues in ReadHeader
        return (int)size;
    }

    /// <summary>The product of <paramref name="dims"/>, or -1 once it passes <see cref="MaxValues"/> (no overflow).</summary>
    private static long BoundedProduct(IEnumerable<int> dims)
    {
        long total = 1;
        foreach (var d in dims)
        {
            if (d > 0 && total > MaxValues / d) return -1;
            total *= d;
        }
        return total;
    }

    private static Stream Open(string path)
    {
        if (Directory.Exists(path)) throw new DataFormatException(path, null, "is a folder, not a file");
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        var file = File.OpenRead(path);
        var magic = new byte[2];
        int read = file.Read(magic, 0, 2);
        file.Position = 0;
        if (read < 2) { file.Dispose(); throw new DataFormatException(path, null, "empty file"); }
        return magic[0] == 0x1f && magic[1] == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    /// <summary>The dimensions the header promises, checked: non-negative, and at most <see cref="MaxValues"/> values in all.</summary>
    private static int[] ReadHeader(Stream stream, string path)
    {
        var head = new byte[4];
        ReadExactly(stream, head, path, "header", "too short for an IDX header");
        if (head[0] != 0 || head[1] != 0) throw new DataFormatException(path, "header", "not an IDX file (the magic number must start with two zero bytes)");
        if (head[2] != 0x08) throw new DataFormatException(path, "header", $"element type 0x{head[2]:x2} is not supported (only unsigned bytes, 0x08)");
        int rank = head[3];
        if (rank == 0) throw new DataFormatException(path, "header", "no dimensions");
        var raw = new byte[4 * rank];
        ReadExactly(stream, raw, path, "header", "truncated dimension list");
        var dims = new int[rank];
        for (int d = 0; d < rank; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(raw.AsSpan(4 * d));
            if (dims[d] < 0) throw new DataFormatException(path, "header", $"dimension {d} is negative ({dims[d]})");
        }
        // Checked without overflow, the whole and one row alone (a zero count must not hide a huge row).
        if (BoundedProduct(dims) < 0 || BoundedProduct(dims.Skip(1)) < 0)
            throw new DataFormatException(path, "header", string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the dimensions {string.Join(" × ", dims)} promise more than {MaxValues:N0} values, the most this reader accepts"));
        long total = BoundedProduct(dims);
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (total * 9 > available)
            throw new DataFormatException(path, "header", string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the dimensions {string.Join(" × ", dims)} promise {total:N0} values, {total * 9 / (1L << 20):N0} MiB in memory, more than the {available / (1L << 20):N0} MiB this process may use"));
        return dims;
    }

    private static (int[] Dims, byte[] Data) ReadIdx(string path)
    {
        using var stream = Open(path);
        try
        {
            var dims = ReadHeader(stream, path);
            long total = BoundedProduct(dims);
            var data = ReadPromised(stream, (int)total, out int got);
            if (got < total) throw new DataFormatException(path, null, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the header promises {total:N0} values but the file holds {got:N0}"));
            // Exactly what was promised: one more byte means the file is not what its header says (and is not inflated further).
            if (stream.ReadByte() >= 0) throw new DataFormatException(path, null, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the file holds more than the {total:N0} values its header promises"));
            return (dims, data);
        }
        catch (InvalidDataException e) { throw new DataFormatException(path, null, $"corrupt gzip data ({e.Message})"); }
    }

    /// <summary>Up to <paramref name="promised"/> bytes, in a buffer that grows (doubling from 16 MiB) only as they arrive.</summary>
    private static byte[] ReadPromised(Stream stream, int promised, out int got)
    {
        var buffer = new byte[Math.Min(promised, 16 << 20)];
        got = 0;
        while (got < promised)
        {
            if (got == buffer.Length) Array.Resize(ref buffer, (int)Math.Min(promised, 2L * buffer.Length));
            int n = stream.Read(buffer, got, buffer.Length - got);
            if (n == 0) break;
            got += n;
        }
        return buffer;
    }

    private static void ReadExactly(Stream stream, byte[] buffer, string path, string where, string problem)
    {
        if (stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false) < buffer.Length) throw new DataFormatException(path, where, problem);
    }
}
