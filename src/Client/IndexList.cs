using System.Globalization;
using Influence.Core.Safety;

namespace Influence.Client;

/// <summary>Parses index lists such as "0-9,15" (0-based, ranges inclusive).</summary>
public static class IndexList
{
    /// <summary>At most this many indices: far more test points than any job scores, and a bound checked before anything is allocated.</summary>
    public const int MaxCount = 1_000_000;

    public static int[] Parse(string text, string option = "--test-indices")
    {
        var result = new List<int>();
        foreach (var raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dash = raw.IndexOf('-', 1);
            if (dash > 0)
            {
                int a = ParseOne(raw[..dash], option), b = ParseOne(raw[(dash + 1)..], option);
                if (b < a) throw new ArgumentException($"{option}: the range '{Echo.Cap(raw)}' runs backwards");
                if ((long)b - a + 1 + result.Count > MaxCount) throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{option}: '{Echo.Cap(text)}' selects more than {MaxCount:N0} indices"));
                for (long i = a; i <= b; i++) result.Add((int)i); // long: b may be int.MaxValue
            }
            else result.Add(ParseOne(raw, option));
            if (result.Count > MaxCount) throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{option}: '{Echo.Cap(text)}' selects more than {MaxCount:N0} indices"));
        }
        if (result.Count == 0) throw new ArgumentException($"{option}: '{Echo.Cap(text)}' selects nothing");
        return result.Distinct().ToArray();
    }

    private static int ParseOne(string s, string option) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new ArgumentException($"{option}: '{Echo.Cap(s)}' is not a non-negative integer (at most {int.MaxValue})");
}
