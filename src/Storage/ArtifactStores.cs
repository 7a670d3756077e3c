using Azure;
using Azure.Storage.Blobs;
using Influence.Core.Storage;

namespace Influence.Storage;

/// <summary>A store that cannot be used as configured: unreachable, credentials refused, container missing.</summary>
public sealed class ArtifactStoreException(string message, Exception? inner = null) : Exception(Influence.Core.Safety.Secrets.Redact(message), inner);

public static class ArtifactStores
{
    /// <summary>
    /// Opens the configured store. A blob store is checked at once (the container is asked for
    /// its properties within <paramref name="checkTimeout"/>), so that bad settings fail at start
    /// with a message naming the problem, not in the middle of a job.
    /// </summary>
    public static IArtifactStore Open(ArtifactStoreOptions options, TimeSpan? checkTimeout = null)
    {
        if (ContainerFor(options) is not { } container) return new LocalArtifactStore(options.Root);
        Check(container, checkTimeout ?? TimeSpan.FromSeconds(15));
        return new BlobArtifactStore(container);
    }

    /// <summary>Creates the configured blob container if it does not exist (a local store needs nothing); returns whether it was created.</summary>
    public static bool CreateContainer(ArtifactStoreOptions options)
    {
        if (ContainerFor(options) is not { } container) return false;
        try { return container.CreateIfNotExists() is not null; }
        catch (RequestFailedException e) { throw new ArtifactStoreException($"cannot create blob container '{container.Name}' at {BlobArtifactStore.Location(container)}: {e.Status} {e.ErrorCode}", e); }
    }

    /// <summary>The blob container the settings name (after checking them), or null for a local store.</summary>
    private static BlobContainerClient? ContainerFor(ArtifactStoreOptions options)
    {
        var problems = options.Problems();
        if (problems.Count > 0) throw new ArtifactStoreException(string.Join("; ", problems));
        if (!options.IsBlob) return null;
        try
        {
            return options.ContainerUrl is { Length: > 0 } url
                ? new BlobContainerClient(new Uri(url), BlobArtifactStore.ClientOptions())
                : new BlobContainerClient(options.ConnectionString, options.Container, BlobArtifactStore.ClientOptions());
        }
        catch (FormatException e) { throw new ArtifactStoreException($"the blob connection string is malformed: {e.Message}", e); }
        catch (ArgumentException e) { throw new ArtifactStoreException($"the blob settings are not usable: {e.Message}", e); }
    }

    private static void Check(BlobContainerClient container, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            container.GetProperties(cancellationToken: cts.Token);
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            throw new ArtifactStoreException($"blob container '{container.Name}' does not exist at {BlobArtifactStore.Location(container)} (create it first, e.g. az storage container create -n {container.Name})", e);
        }
        catch (RequestFailedException e) when (e.Status is 401 or 403)
        {
            throw new ArtifactStoreException($"blob storage at {BlobArtifactStore.Location(container)} refused the credentials ({e.Status} {e.ErrorCode}): check the account key or SAS token", e);
        }
        catch (RequestFailedException e)
        {
            throw new ArtifactStoreException($"blob storage at {BlobArtifactStore.Location(container)} answered {e.Status} {e.ErrorCode}: {FirstLine(e.Message)}", e);
        }
        catch (Exception e) when (e is OperationCanceledException or AggregateException or System.Net.Http.HttpRequestException)
        {
            throw new ArtifactStoreException($"cannot reach blob storage at {BlobArtifactStore.Location(container)} within {timeout.TotalSeconds:F0} s: {FirstLine(e.Message)}", e);
        }
    }

    private static string FirstLine(string s) => s.Split('\n', 2)[0].Trim();
}
