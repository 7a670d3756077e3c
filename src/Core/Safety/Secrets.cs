using System.Text.RegularExpressions;

namespace Influence.Core.Safety;

/// <summary>
/// Removes secrets from anything shown or logged: connection strings (Redis, Azure Storage), URLs
/// with a password or a SAS token, NAME_PASSWORD=... variables. Every message that quotes a
/// connection string, a store URL or a Redis configuration passes through <see cref="Redact"/>;
/// the rest of the text is kept so that the message still says which host or account is meant.
/// A value is masked generously (up to the separator its format uses), never short.
/// </summary>
public static partial class Secrets
{
    public const string Mask = "***";

    /// <summary><paramref name="text"/> with every secret it carries replaced by <see cref="Mask"/>.</summary>
    public static string Redact(string? text)
    {
        if (string.IsNullOrEmpty(text)) return text ?? "";
        // scheme://user:password@host first: the password may hold characters the key=value rules stop at.
        var redacted = UrlPassword().Replace(text, m => $"{m.Groups[1].Value}{m.Groups[2].Value}:{Mask}@");
        redacted = AzureSecret().Replace(redacted, m => $"{m.Groups[1].Value}={Mask}");
        redacted = RedisPassword().Replace(redacted, m => $"{m.Groups[1].Value}={Mask}");
        redacted = UrlSecret().Replace(redacted, m => $"{m.Groups[1].Value}={Mask}");
        return redacted;
    }

    // Azure: AccountKey=...; SharedAccessSignature=sv=..&sig=..; (values run to the next ';').
    [GeneratedRegex(@"(?i)(?<![A-Za-z0-9])(accountkey|sharedaccesssignature)\s*=\s*[^;\s]*")]
    private static partial Regex AzureSecret();

    // Redis (StackExchange splits options only at ','): password=..., and REDIS_PASSWORD=... style variables.
    [GeneratedRegex(@"(?i)(?<![A-Za-z0-9])(password|pwd|passwd)\s*=\s*[^,\s]*")]
    private static partial Regex RedisPassword();

    // Query parameters and tokens: sig=... (a SAS signature), token=..., secret=...
    [GeneratedRegex(@"(?i)(?<![A-Za-z0-9])(sig|token|access_token|secret|client_secret)\s*=\s*[^&;,\s]*")]
    private static partial Regex UrlSecret();

    // scheme://user:password@host (the password up to the last '@' of the address).
    [GeneratedRegex(@"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s:]*):\S*@")]
    private static partial Regex UrlPassword();
}
