using System.Globalization;
using Influence.Core.Safety;

namespace Influence.Client;

/// <summary>Parses index lists such as "0-9,15" (0-based, ranges inclusive).</summary>
public static class IndexList
{
    /// <summary>At most this many indices: far more test points than any job scores, and a bound checked before anything is allocated.</summary>
    public const int MaxCount = 1_000_000;

    private const string Option = "--test-indices";

    public static int[] Parse(string text)
    {
        ArgumentException TooMany() => new(string.Create(CultureInfo.InvariantCulture, $"{Option}: '{Echo.Cap(text)}' selects more than {MaxCount:N0} indices"));
        var result = new List<int>();
        foreach (var raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = raw.IndexOf('-', 1);
            if (dash > 0)
            {
                int a = ParseOne(raw[..dash]), b = ParseOne(raw[(dash + 1)..]);
                if (b < a) throw new ArgumentException($"{Option}: the range '{Echo.Cap(raw)}' runs backwards");
                if ((long)b - a + 1 + result.Count > MaxCount) throw TooMany();
                for (long i = a; i <= b; i++) result.Add((int)i); // long: b may be int.MaxValue
            }
            else result.Add(ParseOne(raw));
            if (result.Count > MaxCount) throw TooMany();
        }
        if (result.Count == 0) throw new ArgumentException($"{Option}: '{Echo.Cap(text)}' selects nothing");
        return result.Distinct().ToArray();
    }

    private static int ParseOne(string s) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new ArgumentException($"{Option}: '{Echo.Cap(s)}' is not a non-negative integer (at most {int.MaxValue})");
}
