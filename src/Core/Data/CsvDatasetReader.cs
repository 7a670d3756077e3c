using System.Globalization;
using Influence.Core.Safety;

namespace Influence.Core.Data;

/// <summary>
/// Reads CSV with a header line, the integer class label in the first column and numeric features
/// after it. Every error names the file, line (1-based, header is line 1), data row (0-based, the
/// index used in all outputs) and column.
/// </summary>
public static class CsvDatasetReader
{
    public static Dataset Read(string path, double featureScale = 1.0)
    {
        if (Directory.Exists(path)) throw new DataFormatException(path, null, "is a folder, not a file");
        if (!File.Exists(path)) throw new DataFormatException(path, null, "file not found");
        using var reader = new StreamReader(path);
        return Read(reader, path, featureScale);
    }

    public static Dataset Read(TextReader reader, string name, double featureScale = 1.0)
    {
        if (!(featureScale > 0) || double.IsInfinity(featureScale))
            throw new ArgumentOutOfRangeException(nameof(featureScale), $"the feature scale must be a positive number, not {featureScale}");
        var header = reader.ReadLine();
        if (header is null || header.Trim().Length == 0) throw new DataFormatException(name, null, "empty file (expected a header line such as 'label,f0,f1,...')");
        var columns = header.Split(',');
        if (columns.Length < 2) throw new DataFormatException(name, "line 1", $"the header has {columns.Length} column; expected the label and at least one feature");
        int featureCount = columns.Length - 1;

        var features = new List<double>();
        var labels = new List<int>();
        int lineNumber = 1;
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNumber++;
            if (line.Length == 0 || (line.Length == 1 && line[0] == '\r')) continue;
            int row = labels.Count;
            string Where(int col) => $"line {lineNumber} (row {row}), column {col + 1} ('{Echo.Cap(columns[col].Trim(), 40)}')";
            var cells = line.TrimEnd('\r').Split(',');
            if (cells.Length != columns.Length)
                throw new DataFormatException(name, $"line {lineNumber} (row {row})", $"{cells.Length} fields where the header has {columns.Length}");

            var labelText = cells[0].Trim();
            if (!long.TryParse(labelText, NumberStyles.Integer, CultureInfo.InvariantCulture, out long label))
            {
                // Accept integral floats such as "3.0", reject anything else.
                if (!double.TryParse(labelText, NumberStyles.Float, CultureInfo.InvariantCulture, out double asDouble) || asDouble != Math.Floor(asDouble) || double.IsInfinity(asDouble))
                    throw new DataFormatException(name, Where(0), $"the label '{Echo.Cap(labelText)}' is not a non-negative integer");
                label = (long)asDouble;
            }
            if (label < 0 || label > 1_000_000)
                throw new DataFormatException(name, Where(0), $"the label {label} is not a non-negative integer class index");
            labels.Add((int)label);

            for (int c = 1; c < cells.Length; c++)
            {
                var text = cells[c].Trim();
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
                    throw new DataFormatException(name, Where(c), text.Length == 0 ? "empty field" : $"'{Echo.Cap(text)}' is not a number");
                if (!double.IsFinite(v))
                    throw new DataFormatException(name, Where(c), $"{Echo.Cap(text)} is not finite (NaN and infinities are not allowed)");
                features.Add(v / featureScale);
            }
        }
        if (labels.Count == 0) throw new DataFormatException(name, null, "the file has a header but no data rows");
        return new Dataset(name, features.ToArray(), labels.ToArray(), featureCount);
    }
}
