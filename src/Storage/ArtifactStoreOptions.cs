using Influence.Core.Storage;

namespace Influence.Storage;

/// <summary>
/// Where artifacts live: a folder (the embedded mode, or silos sharing one filesystem), or an
/// Azure Blob Storage container (a cluster). Bound from the "Store" configuration section of a
/// silo, or parsed from the client's --store.
/// </summary>
public sealed class ArtifactStoreOptions
{
    public const string BlobScheme = "azblob:";
    /// <summary>The environment variable the client reads a blob connection string from (never a flag: it is a secret).</summary>
    public const string ConnectionStringVariable = "INFLUENCE_BLOB_CONNECTION_STRING";

    /// <summary>"local" or "blob".</summary>
    public string Kind { get; set; } = "local";
    /// <summary>Local: the folder.</summary>
    public string Root { get; set; } = LocalArtifactStore.DefaultRoot();
    /// <summary>Blob: an account connection string (Azurite's works too) ...</summary>
    public string? ConnectionString { get; set; }
    /// <summary>... or the container's URL with a SAS token.</summary>
    public string? ContainerUrl { get; set; }
    /// <summary>Blob: the container (with a connection string).</summary>
    public string Container { get; set; } = "influence";

    /// <summary>Problems with these settings, each naming the setting; empty when they are usable.</summary>
    public IReadOnlyList<string> Problems(string section = "Store")
    {
        var problems = new List<string>();
        switch (Kind.ToLowerInvariant())
        {
            case "local":
                if (string.IsNullOrWhiteSpace(Root)) problems.Add($"{section}:Root must name a folder");
                break;
            case "blob":
                bool hasConnection = !string.IsNullOrWhiteSpace(ConnectionString), hasUrl = !string.IsNullOrWhiteSpace(ContainerUrl);
                if (hasConnection == hasUrl)
                    problems.Add($"{section}:Kind is blob: give exactly one of {section}:ConnectionString (or ${ConnectionStringVariable}) and {section}:ContainerUrl");
                if (hasUrl && !Uri.TryCreate(ContainerUrl, UriKind.Absolute, out _))
                    problems.Add($"{section}:ContainerUrl '{Influence.Core.Safety.Secrets.Redact(ContainerUrl)}' is not an absolute URL");
                if (hasConnection && !BlobArtifactStore.IsValidContainerName(Container))
                    problems.Add($"{section}:Container '{Container}' is not a valid container name (3-63 lowercase letters, digits and single hyphens)");
                break;
            default:
                problems.Add($"{section}:Kind must be local or blob, not '{Kind}'");
                break;
        }
        return problems;
    }

    /// <summary>
    /// The client's --store: a folder, "azblob:CONTAINER" (connection string from
    /// $INFLUENCE_BLOB_CONNECTION_STRING), or an https container URL with a SAS token.
    /// </summary>
    public static ArtifactStoreOptions Parse(string spec)
    {
        if (spec.StartsWith(BlobScheme, StringComparison.OrdinalIgnoreCase))
            return new ArtifactStoreOptions
            {
                Kind = "blob",
                Container = spec[BlobScheme.Length..],
                ConnectionString = Environment.GetEnvironmentVariable(ConnectionStringVariable),
            };
        if (spec.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || spec.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
            return new ArtifactStoreOptions { Kind = "blob", ContainerUrl = spec };
        return new ArtifactStoreOptions { Kind = "local", Root = spec };
    }

    public bool IsBlob => Kind.Equals("blob", StringComparison.OrdinalIgnoreCase);
}
