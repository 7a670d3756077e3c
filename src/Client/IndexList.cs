using System.Globalization;

namespace Influence.Client;

/// <summary>Parses index lists such as "0-9,15" (0-based, ranges inclusive).</summary>
public static class IndexList
{
    public static int[] Parse(string text)
    {
        var result = new List<int>();
        foreach (var raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = raw.IndexOf('-', 1);
            if (dash > 0)
            {
                int a = ParseOne(raw[..dash], text), b = ParseOne(raw[(dash + 1)..], text);
                if (b < a) throw new ArgumentException($"--test-indices: the range '{raw}' runs backwards");
                for (int i = a; i <= b; i++) result.Add(i);
            }
            else result.Add(ParseOne(raw, text));
        }
        if (result.Count == 0) throw new ArgumentException($"--test-indices: '{text}' selects nothing");
        return result.Distinct().ToArray();
    }

    private static int ParseOne(string s, string all) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new ArgumentException($"--test-indices: '{s}' in '{all}' is not a non-negative integer");
}
