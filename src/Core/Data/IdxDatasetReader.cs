using System.Buffers.Binary;
using System.IO.Compression;

namespace Influence.Core.Data;

/// <summary>
/// Reads MNIST-format IDX files (images: unsigned bytes, any number of dimensions after the first;
/// labels: one unsigned byte each), gzip-compressed or not. Pixels are divided by <c>featureScale</c>.
/// </summary>
public static class IdxDatasetReader
{
    public static Dataset Read(string imagesPath, string labelsPath, double featureScale = 1.0)
    {
        var (imageDims, pixels) = ReadIdx(imagesPath);
        var (labelDims, labelBytes) = ReadIdx(labelsPath);
        if (imageDims.Length < 2) throw new DataFormatException(imagesPath, "header", $"an image file needs at least 2 dimensions, found {imageDims.Length}");
        if (labelDims.Length != 1) throw new DataFormatException(labelsPath, "header", $"a label file has 1 dimension, found {labelDims.Length}");
        if (imageDims[0] != labelDims[0])
            throw new DataFormatException(labelsPath, "header", $"{labelDims[0]} labels for {imageDims[0]} images in {imagesPath}");
        if (imageDims[0] == 0) throw new DataFormatException(imagesPath, null, "no images");
        int featureCount = 1;
        for (int d = 1; d < imageDims.Length; d++) featureCount *= imageDims[d];
        var features = new double[pixels.Length];
        for (int i = 0; i < pixels.Length; i++) features[i] = pixels[i] / featureScale;
        var labels = labelBytes.Select(b => (int)b).ToArray();
        return new Dataset(imagesPath, features, labels, featureCount);
    }

    /// <summary>True when the file starts like an IDX file of unsigned bytes (plain or gzip).</summary>
    public static bool LooksLikeIdx(string path) =>
        path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) || path.Contains("-ubyte", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".idx", StringComparison.OrdinalIgnoreCase);

    private static (int[] Dims, byte[] Data) ReadIdx(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        using var file = File.OpenRead(path);
        Stream stream = file;
        var magic = new byte[2];
        if (file.Read(magic, 0, 2) < 2) throw new DataFormatException(path, null, "empty file");
        file.Position = 0;
        if (magic[0] == 0x1f && magic[1] == 0x8b) stream = new GZipStream(file, CompressionMode.Decompress);
        using var ms = new MemoryStream();
        try { stream.CopyTo(ms); }
        catch (InvalidDataException e) { throw new DataFormatException(path, null, $"corrupt gzip data ({e.Message})"); }
        var bytes = ms.ToArray();
        if (bytes.Length < 4) throw new DataFormatException(path, "header", "too short for an IDX header");
        if (bytes[0] != 0 || bytes[1] != 0) throw new DataFormatException(path, "header", "not an IDX file (the magic number must start with two zero bytes)");
        if (bytes[2] != 0x08) throw new DataFormatException(path, "header", $"element type 0x{bytes[2]:x2} is not supported (only unsigned bytes, 0x08)");
        int rank = bytes[3];
        if (bytes.Length < 4 + 4 * rank) throw new DataFormatException(path, "header", "truncated dimension list");
        var dims = new int[rank];
        long total = 1;
        for (int d = 0; d < rank; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * d));
            if (dims[d] < 0) throw new DataFormatException(path, "header", $"dimension {d} is negative");
            total *= dims[d];
        }
        long offset = 4 + 4 * rank;
        if (bytes.Length - offset != total)
            throw new DataFormatException(path, null, $"the header promises {total} values but the file holds {bytes.Length - offset}");
        return (dims, bytes[(int)offset..]);
    }
}
