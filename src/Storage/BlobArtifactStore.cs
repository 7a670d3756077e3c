using System.Text.RegularExpressions;
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using Influence.Core.Storage;

namespace Influence.Storage;

/// <summary>
/// Artifacts as block blobs in one container, the blob name being the artifact key.
/// <para>
/// Atomic writes come from the service: a block blob's content is replaced only when its block
/// list is committed, so a reader sees the old artifact, nothing, or the whole new one. A write is
/// spooled to a local temporary file first (the writer callback may be slow and large), then
/// uploaded in staged blocks; the same key written twice holds the last upload (idempotent for
/// the deterministic outputs of a unit of work). Reads stream in chunks.
/// </para>
/// </summary>
public sealed partial class BlobArtifactStore : IArtifactStore
{
    private readonly BlobContainerClient container;

    public BlobArtifactStore(BlobContainerClient container) => this.container = container;

    public static BlobClientOptions ClientOptions()
    {
        var o = new BlobClientOptions();
        o.Retry.MaxRetries = 4;
        o.Retry.Delay = TimeSpan.FromMilliseconds(500);
        o.Retry.MaxDelay = TimeSpan.FromSeconds(8);
        o.Retry.NetworkTimeout = TimeSpan.FromSeconds(60);
        return o;
    }

    /// <summary>The container's URL for messages: without its query, which holds a SAS token's signature.</summary>
    public static string Location(BlobContainerClient container) => container.Uri.GetLeftPart(UriPartial.Path);

    public bool Exists(string key) => Blob(key).Exists().Value;

    public Stream OpenRead(string key)
    {
        try { return Blob(key).OpenRead(new BlobOpenReadOptions(allowModifications: false) { BufferSize = 4 << 20 }); }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            throw new FileNotFoundException($"artifact '{Influence.Core.Safety.Echo.Cap(key)}' not found in {Location(container)}", Describe(key), e);
        }
    }

    public void Write(string key, Action<Stream> write)
    {
        var blob = Blob(key);
        var temp = Path.Combine(Path.GetTempPath(), $"influence-upload-{Guid.NewGuid():N}");
        try
        {
            using (var spool = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                write(spool);
            using var source = new FileStream(temp, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            blob.Upload(source, new BlobUploadOptions
            {
                TransferOptions = new Azure.Storage.StorageTransferOptions { InitialTransferSize = 8 << 20, MaximumTransferSize = 8 << 20, MaximumConcurrency = 2 },
            });
        }
        finally
        {
            File.Delete(temp);
        }
    }

    public void DeletePrefix(string prefix)
    {
        Blob(prefix).DeleteIfExists();
        var folder = prefix.EndsWith('/') ? prefix : prefix + "/";
        foreach (var item in container.GetBlobs(BlobTraits.None, BlobStates.None, folder, CancellationToken.None))
            container.GetBlobClient(item.Name).DeleteIfExists();
    }

    public string Describe(string key) => $"{Location(container)}/{Influence.Core.Safety.Echo.Cap(key, 200)}";

    private BlobClient Blob(string key)
    {
        return container.GetBlobClient(Influence.Core.Safety.StoreKeys.Check(key).TrimEnd('/'));
    }

    public static bool IsValidContainerName(string name) => ContainerName().IsMatch(name) && !name.Contains("--", StringComparison.Ordinal);

    [GeneratedRegex("^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$")]
    private static partial Regex ContainerName();
}
