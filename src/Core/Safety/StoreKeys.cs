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

    /// <summary>
    /// A job id as this program makes them (score-20261126-...): one plain segment not starting with
    /// '.', at most 128 characters. Job ids name folders in the store (jobs/ID/...), and any client
    /// that reaches a gateway can send one.
    /// </summary>
    public static bool IsJobId(string? id) => IsPlainFileName(id) && id!.Length <= 128 && id[0] != '.';

    /// <summary>Throws ArgumentException naming <paramref name="option"/> unless <paramref name="id"/> is a job id.</summary>
    public static string CheckJobId(string? id, string option) => IsJobId(id) ? id!
        : throw new ArgumentException($"{option} '{Echo.Cap(id)}' is not a job id (letters, digits, '.', '_' and '-', as printed by the run that started it)");

    /// <summary>A plain file name: one segment, so that a folder joined with it stays that folder.</summary>
    public static bool IsPlainFileName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= 255 && name is not ("." or "..") && Segment().IsMatch(name);

    [GeneratedRegex(@"^[A-Za-z0-9._=-]+$")]
    private static partial Regex Segment();
}
