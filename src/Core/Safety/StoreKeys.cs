using System.Text.RegularExpressions;

namespace Influence.Core.Safety;

/// <summary>
/// The shape every artifact key must have before any store (a folder or a blob container) is
/// touched with it: '/'-separated segments of letters, digits, '.', '_', '-' and '=', none empty,
/// none "." or "..", at most 512 characters. Keys come from requests and from the store's own
/// manifests, both untrusted, so they are checked here, not trusted to the filesystem.
/// </summary>
public static partial class StoreKeys
{
    public const int MaxLength = 512;

    /// <summary>null when <paramref name="key"/> is a valid artifact key, else what is wrong with it.</summary>
    public static string? Problem(string? key)
    {
        if (string.IsNullOrEmpty(key)) return "the key is empty";
        if (key.Length > MaxLength) return $"the key is longer than {MaxLength} characters";
        var segments = key.TrimEnd('/').Split('/');
        foreach (var s in segments)
        {
            if (s.Length == 0) return "the key has an empty segment (a leading '/' or '//')";
            if (s is "." or "..") return "the key has a '.' or '..' segment";
            if (!Segment().IsMatch(s)) return "the key has characters other than letters, digits, '.', '_', '-', '=' and '/'";
        }
        return null;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the key (capped) unless it is valid.</summary>
    public static string Check(string? key) =>
        Problem(key) is { } problem ? throw new ArgumentException($"bad artifact key '{Echo.Cap(key)}': {problem}") : key!;

    /// <summary>A plain file name: one segment, so that a folder joined with it stays that folder.</summary>
    public static bool IsPlainFileName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 255 && name is not ("." or "..") && Segment().IsMatch(name);

    [GeneratedRegex(@"^[A-Za-z0-9._=-]+$")]
    private static partial Regex Segment();
}
