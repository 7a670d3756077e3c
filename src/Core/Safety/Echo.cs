using System.Text;

namespace Influence.Core.Safety;

/// <summary>
/// Values quoted back in error messages (a cell, a name, a path from a request): at most
/// <see cref="DefaultLimit"/> characters with the full length said, control characters shown as
/// escapes, so that one bad 100 MB cell gives a one-line error, not 100 MB of output.
/// </summary>
public static class Echo
{
    public const int DefaultLimit = 80;

    public static string Cap(string? value, int limit = DefaultLimit)
    {
        if (value is null) return "";
        var shown = value.Length <= limit ? value : value[..limit];
        var b = new StringBuilder(shown.Length + 24);
        foreach (var c in shown)
        {
            if (c == '\n') b.Append("\\n");
            else if (c == '\r') b.Append("\\r");
            else if (c == '\t') b.Append("\\t");
            else if (char.IsControl(c)) b.Append($"\\u{(int)c:x4}");
            else b.Append(c);
        }
        if (value.Length > limit) b.Append($"… ({value.Length} characters)");
        return b.ToString();
    }
}
