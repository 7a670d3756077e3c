using System.Text.RegularExpressions;

namespace Influence.Core.Safety;

/// <summary>
/// Removes secrets from anything shown or logged: connection strings (Redis, Azure Storage), URLs
/// with a password or a SAS token. Every message that quotes a connection string, a store URL or a
/// Redis configuration passes through <see cref="Redact"/>; the rest of the text is kept so that
/// the message still says which host or account is meant.
/// </summary>
public static partial class Secrets
{
    public const string Mask = "***";

    /// <summary><paramref name="text"/> with every secret it carries replaced by <see cref="Mask"/>.</summary>
    public static string Redact(string? text)
    {
        if (string.IsNullOrEmpty(text)) return text ?? "";
        // An Azure SAS (SharedAccessSignature=sv=…&sig=…;) runs to the next ';': mask it whole.
        var redacted = SharedAccessSignature().Replace(text, m => $"{m.Groups[1].Value}={Mask}");
        redacted = KeyValueSecret().Replace(redacted, m => $"{m.Groups[1].Value}={Mask}");
        redacted = UrlPassword().Replace(redacted, m => $"{m.Groups[1].Value}{m.Groups[2].Value}:{Mask}@");
        return redacted;
    }

    [GeneratedRegex(@"(?i)\b(SharedAccessSignature)=[^;\s""']*")]
    private static partial Regex SharedAccessSignature();

    // Redis (password=, pwd=), Azure (AccountKey=), SAS query parameters (sig=), tokens in URLs.
    [GeneratedRegex(@"(?i)\b(password|pwd|accountkey|sig|token|access_token|secret|client_secret)=[^,;&\s""']*")]
    private static partial Regex KeyValueSecret();

    // scheme://user:password@host
    [GeneratedRegex(@"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s:]*):[^/@\s]*@")]
    private static partial Regex UrlPassword();
}
