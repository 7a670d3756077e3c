using System.Globalization;
using Parquet;
using Parquet.Schema;

namespace Influence.Core.Storage;

/// <summary>
/// A result table (a CSV with a header, as every command writes) as Parquet with typed columns,
/// for <c>pandas.read_parquet</c>: a column is int64 when every value is an integer, float64 when
/// every value is a number (NaN included), text otherwise; an empty field is a null. Two passes over
/// the CSV (types, then values in row groups of <see cref="RowGroupRows"/>, about 60 MB of parsed text for a three-column table), so no table is held whole.
/// </summary>
public static class ParquetTables
{
    public const int RowGroupRows = 1 << 18;

    private enum Kind { Integer, Real, Text }

    public static void FromCsv(string csvPath, Stream output) => FromCsvAsync(csvPath, output).GetAwaiter().GetResult();

    private static async Task FromCsvAsync(string csvPath, Stream output)
    {
        string[] names;
        Kind[] kinds;
        bool[] nullable;
        using (var reader = new StreamReader(csvPath))
        {
            names = Split(await reader.ReadLineAsync() ?? throw new InvalidDataException($"{csvPath}: empty"));
            kinds = new Kind[names.Length];
            nullable = new bool[names.Length];
            for (string? line; (line = await reader.ReadLineAsync()) is not null;)
            {
                if (line.Length == 0) continue;
                var cells = Cells(line, names.Length, csvPath);
                for (int c = 0; c < cells.Length; c++)
                {
                    if (cells[c].Length == 0) { nullable[c] = true; continue; }
                    if (kinds[c] == Kind.Integer && !long.TryParse(cells[c], NumberStyles.Integer, CultureInfo.InvariantCulture, out _)) kinds[c] = Kind.Real;
                    if (kinds[c] == Kind.Real && !double.TryParse(cells[c], NumberStyles.Float, CultureInfo.InvariantCulture, out _)) kinds[c] = Kind.Text;
                }
            }
        }
        var fields = names.Select((n, c) => kinds[c] switch
        {
            Kind.Integer => new DataField(n, typeof(long), nullable[c]),
            Kind.Real => new DataField(n, typeof(double), nullable[c]),
            _ => new DataField(n, typeof(string), true),
        }).ToArray();
        await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(fields), output);
        using var rows = new StreamReader(csvPath);
        await rows.ReadLineAsync();
        var block = new List<string[]>(RowGroupRows);
        while (true)
        {
            block.Clear();
            for (string? line; block.Count < RowGroupRows && (line = await rows.ReadLineAsync()) is not null;)
                if (line.Length > 0) block.Add(Cells(line, names.Length, csvPath));
            if (block.Count == 0) break;
            using var group = writer.CreateRowGroup();
            for (int c = 0; c < fields.Length; c++)
            {
                int column = c;
                switch (kinds[c])
                {
                    case Kind.Integer when nullable[c]:
                        await group.WriteAsync<long>(fields[c], block.Select(r => r[column].Length == 0 ? (long?)null : long.Parse(r[column], CultureInfo.InvariantCulture)).ToArray().AsMemory());
                        break;
                    case Kind.Integer:
                        await group.WriteAsync<long>(fields[c], block.Select(r => long.Parse(r[column], CultureInfo.InvariantCulture)).ToArray().AsMemory());
                        break;
                    case Kind.Real when nullable[c]:
                        await group.WriteAsync<double>(fields[c], block.Select(r => r[column].Length == 0 ? (double?)null : double.Parse(r[column], CultureInfo.InvariantCulture)).ToArray().AsMemory());
                        break;
                    case Kind.Real:
                        await group.WriteAsync<double>(fields[c], block.Select(r => double.Parse(r[column], CultureInfo.InvariantCulture)).ToArray().AsMemory());
                        break;
                    default:
                        await group.WriteAsync(fields[c], block.Select(r => r[column].Length == 0 ? null : r[column]).ToArray());
                        break;
                }
            }
        }
    }

    private static string[] Cells(string line, int count, string source)
    {
        var cells = Split(line);
        if (cells.Length != count) throw new InvalidDataException($"{source}: a line with {cells.Length} fields where the header has {count}");
        return cells;
    }

    /// <summary>
    /// One CSV line's fields: commas separate, a field in double quotes may hold commas and doubled
    /// quotes (the report writers quote free text such as study configurations).
    /// </summary>
    private static string[] Split(string line)
    {
        if (!line.Contains('"')) return line.TrimEnd('\r').Split(',');
        var cells = new List<string>();
        var current = new System.Text.StringBuilder();
        bool quoted = false;
        for (int i = 0; i < line.Length; i++)
        {
            char ch = line[i];
            if (quoted)
            {
                if (ch == '"' && i + 1 < line.Length && line[i + 1] == '"') { current.Append('"'); i++; }
                else if (ch == '"') quoted = false;
                else current.Append(ch);
            }
            else if (ch == '"') quoted = true;
            else if (ch == ',') { cells.Add(current.ToString()); current.Clear(); }
            else if (ch != '\r') current.Append(ch);
        }
        cells.Add(current.ToString());
        return cells.ToArray();
    }
}
