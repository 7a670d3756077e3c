using System.Globalization;
using Influence.Core.Storage;
using Parquet;
using Parquet.Schema;

namespace Influence.Core.Data;

/// <summary>
/// Datasets from the formats numpy and pandas write. A .npy feature array (N × D, or N images
/// N × H × W / N × C × H × W, flattened C × H × W) with a .npy label vector of N class indices;
/// or a Parquet table with an integer <see cref="LabelColumn"/> column and numeric feature columns
/// (every other column, in the table's order). Every error names the file, the row or column, and the problem.
/// </summary>
public static class ArrayDatasetReader
{
    public const string LabelColumn = "label";

    public static bool IsNpy(string path) => path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase);
    public static bool IsParquet(string path) => path.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase);

    public static Dataset ReadNpy(string featuresPath, string labelsPath, double featureScale = 1.0)
    {
        var (shape, values) = ReadArray(featuresPath);
        var (labelShape, labelValues) = ReadArray(labelsPath);
        if (shape.Length < 2) throw new DataFormatException(featuresPath, "shape", $"({string.Join(", ", shape)}): features need one row per example, shape (N, D) or images (N, H, W) / (N, C, H, W)");
        if (labelShape.Length != 1) throw new DataFormatException(labelsPath, "shape", $"({string.Join(", ", labelShape)}): labels are a vector of N class indices");
        if (labelShape[0] != shape[0]) throw new DataFormatException(labelsPath, "shape", $"{labelShape[0]} labels for {shape[0]} rows of {featuresPath}");
        if (shape[0] == 0) throw new DataFormatException(featuresPath, null, "no rows");
        long features = shape.Skip(1).Aggregate(1L, (a, d) => a * d);
        if (features < 1 || features > int.MaxValue) throw new DataFormatException(featuresPath, "shape", $"{features} features per row");
        for (long i = 0; i < values.LongLength; i++)
        {
            if (!double.IsFinite(values[i]))
                throw new DataFormatException(featuresPath, $"row {i / features}, column {i % features}", "not finite (NaN and infinities are not allowed)");
            values[i] /= featureScale;
        }
        return new Dataset(featuresPath, values, Labels(labelValues, labelsPath, "row"), (int)features);
    }

    /// <summary>Class indices from numbers: integral, 0 … 1,000,000 (as the CSV reader takes them).</summary>
    private static int[] Labels(IReadOnlyList<double> values, string source, string unit)
    {
        var labels = new int[values.Count];
        for (int i = 0; i < labels.Length; i++)
        {
            double v = values[i];
            if (!(v >= 0 && v <= 1_000_000 && v == Math.Floor(v)))
                throw new DataFormatException(source, $"{unit} {i}", $"the label {v.ToString(CultureInfo.InvariantCulture)} is not a non-negative integer class index");
            labels[i] = (int)v;
        }
        return labels;
    }

    private static (long[] Shape, double[] Values) ReadArray(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        try
        {
            using var stream = File.OpenRead(path);
            return Npy.ReadValues(stream, path, IdxDatasetReader.MaxValues);
        }
        catch (InvalidDataException e) { throw new DataFormatException(path, null, e.Message.StartsWith(path, StringComparison.Ordinal) ? e.Message[path.Length..].TrimStart(':', ' ') : e.Message); }
    }

    /// <summary>Features per row of a .npy feature array, from its header alone (null when it cannot be read).</summary>
    public static int? NpyFeatureCount(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            var shape = Npy.ReadHeaderShape(stream, path);
            return shape.Length >= 2 ? (int)shape.Skip(1).Aggregate(1L, (a, d) => a * d) : null;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or OverflowException) { return null; }
    }

    public static Dataset ReadParquet(string path, double featureScale = 1.0) => ReadParquetAsync(path, featureScale).GetAwaiter().GetResult();

    private static async Task<Dataset> ReadParquetAsync(string path, double featureScale)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        ParquetReader reader;
        try { reader = await ParquetReader.CreateAsync(path); }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            throw new DataFormatException(path, null, $"not a readable Parquet file ({e.Message})");
        }
        await using (reader)
        {
            var fields = reader.Schema.DataFields;
            var label = fields.FirstOrDefault(f => f.Name == LabelColumn)
                ?? throw new DataFormatException(path, "columns", $"no '{LabelColumn}' column among {string.Join(", ", fields.Take(10).Select(f => f.Name))}{(fields.Length > 10 ? ", …" : "")}");
            var features = fields.Where(f => f != label).ToArray();
            if (features.Length == 0) throw new DataFormatException(path, "columns", "no feature columns besides the label");
            foreach (var f in fields.Where(f => f.IsArray || !IsNumeric(f.ClrType)))
                throw new DataFormatException(path, $"column '{f.Name}'", $"{(f.IsArray ? "a list" : f.ClrType == typeof(string) || f.ClrType == typeof(ReadOnlyMemory<char>) ? "text" : f.ClrType.Name)}, not a number");
            long rows = reader.RowGroups.Sum(g => g.RowCount);
            if (rows == 0) throw new DataFormatException(path, null, "no rows");
            if (rows * fields.Length > IdxDatasetReader.MaxValues) throw new DataFormatException(path, null, $"{rows:N0} rows × {fields.Length} columns, more than the {IdxDatasetReader.MaxValues:N0} values accepted");
            var values = new double[rows * features.Length];
            var labelValues = new double[rows];
            long first = 0;
            for (int g = 0; g < reader.RowGroupCount; g++)
            {
                using var group = reader.OpenRowGroupReader(g);
                int n = checked((int)group.RowCount);
                var column = await ReadColumn(group, label, n, path, first);
                Array.Copy(column, 0, labelValues, first, n);
                for (int c = 0; c < features.Length; c++)
                {
                    column = await ReadColumn(group, features[c], n, path, first);
                    for (int i = 0; i < n; i++)
                    {
                        if (!double.IsFinite(column[i])) throw new DataFormatException(path, $"row {first + i}, column '{features[c].Name}'", "not finite (NaN and infinities are not allowed)");
                        values[(first + i) * features.Length + c] = column[i] / featureScale;
                    }
                }
                first += n;
            }
            return new Dataset(path, values, Labels(labelValues, path, "row"), features.Length);
        }
    }

    private static bool IsNumeric(Type t) => t == typeof(double) || t == typeof(float) || t == typeof(long) || t == typeof(int) || t == typeof(short)
        || t == typeof(sbyte) || t == typeof(byte) || t == typeof(ushort) || t == typeof(uint) || t == typeof(ulong) || t == typeof(bool);

    /// <summary>One column of a row group as float64; a null is refused naming its row.</summary>
    private static async Task<double[]> ReadColumn(ParquetRowGroupReader group, DataField field, int n, string path, long first) => field.ClrType switch
    {
        var t when t == typeof(double) => await Read<double>(group, field, n, path, first, v => v),
        var t when t == typeof(float) => await Read<float>(group, field, n, path, first, v => v),
        var t when t == typeof(long) => await Read<long>(group, field, n, path, first, v => v),
        var t when t == typeof(int) => await Read<int>(group, field, n, path, first, v => v),
        var t when t == typeof(short) => await Read<short>(group, field, n, path, first, v => v),
        var t when t == typeof(sbyte) => await Read<sbyte>(group, field, n, path, first, v => v),
        var t when t == typeof(byte) => await Read<byte>(group, field, n, path, first, v => v),
        var t when t == typeof(ushort) => await Read<ushort>(group, field, n, path, first, v => v),
        var t when t == typeof(uint) => await Read<uint>(group, field, n, path, first, v => v),
        var t when t == typeof(ulong) => await Read<ulong>(group, field, n, path, first, v => v),
        _ => await Read<bool>(group, field, n, path, first, v => v ? 1 : 0),
    };

    private static async Task<double[]> Read<T>(ParquetRowGroupReader group, DataField field, int n, string path, long first, Func<T, double> widen) where T : struct
    {
        var result = new double[n];
        if (field.IsNullable)
        {
            var buffer = new T?[n];
            await group.ReadAsync<T>(field, buffer.AsMemory());
            for (int i = 0; i < n; i++)
                result[i] = buffer[i] is { } v ? widen(v) : throw new DataFormatException(path, $"row {first + i}, column '{field.Name}'", "empty (null)");
        }
        else
        {
            var buffer = new T[n];
            await group.ReadAsync<T>(field, buffer.AsMemory());
            for (int i = 0; i < n; i++) result[i] = widen(buffer[i]);
        }
        return result;
    }
}
