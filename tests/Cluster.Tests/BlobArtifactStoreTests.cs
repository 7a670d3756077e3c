using System.Security.Cryptography;
using Influence.Core.Storage;
using Influence.Storage;

namespace Influence.Cluster.Tests;

/// <summary>The Azure Blob artifact store against a real Azurite server.</summary>
public sealed class BlobArtifactStoreTests : IAsyncLifetime
{
    private AzuriteServer azurite = null!;

    public async Task InitializeAsync() => azurite = await AzuriteServer.StartAsync();
    public async Task DisposeAsync() => await azurite.DisposeAsync();

    private IArtifactStore OpenStore(out string container)
    {
        container = azurite.CreateContainer();
        return ArtifactStores.Open(new ArtifactStoreOptions { Kind = "blob", ConnectionString = azurite.ConnectionString(), Container = container });
    }

    private static byte[] Read(IArtifactStore store, string key)
    {
        using var s = store.OpenRead(key);
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    [Fact]
    public void Large_artifacts_stream_through_staged_blocks_and_read_back_byte_for_byte()
    {
        var store = OpenStore(out _);
        var payload = RandomNumberGenerator.GetBytes(20 << 20); // 20 MiB: three 8 MiB blocks
        store.Write("jobs/j1/work/block-0.bin", s => { for (int o = 0; o < payload.Length; o += 1 << 20) s.Write(payload, o, 1 << 20); });
        Assert.True(store.Exists("jobs/j1/work/block-0.bin"));
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(Read(store, "jobs/j1/work/block-0.bin")));
        Assert.Contains("jobs/j1/work/block-0.bin", store.Describe("jobs/j1/work/block-0.bin"), StringComparison.Ordinal);
    }

    [Fact]
    public void Writing_a_key_again_replaces_it_and_a_failed_write_leaves_the_previous_artifact()
    {
        var store = OpenStore(out _);
        store.Write("a/unit-1.csv", s => s.Write("first"u8));
        store.Write("a/unit-1.csv", s => s.Write("second"u8));
        Assert.Equal("second"u8.ToArray(), Read(store, "a/unit-1.csv"));

        var e = Assert.Throws<IOException>(() => store.Write("a/unit-1.csv", s => { s.Write(new byte[3 << 20]); throw new IOException("writer died"); }));
        Assert.Equal("writer died", e.Message);
        Assert.Equal("second"u8.ToArray(), Read(store, "a/unit-1.csv"));
        Assert.Throws<IOException>(() => store.Write("a/unit-2.csv", _ => throw new IOException("writer died")));
        Assert.False(store.Exists("a/unit-2.csv"));
    }

    [Fact]
    public async Task A_reader_never_sees_an_artifact_that_is_still_being_written()
    {
        var store = OpenStore(out _);
        var chunk = RandomNumberGenerator.GetBytes(1 << 20);
        using var writing = new ManualResetEventSlim();
        var writer = Task.Run(() => store.Write("scores/block.bin", s =>
        {
            for (int i = 0; i < 12; i++)
            {
                s.Write(chunk);
                if (i == 2) writing.Set();
                Thread.Sleep(50);
            }
        }));
        writing.Wait();
        while (!writer.IsCompleted)
        {
            if (store.Exists("scores/block.bin"))
            {
                // Visible only once the whole upload committed.
                Assert.Equal(12 << 20, Read(store, "scores/block.bin").Length);
            }
            await Task.Delay(20);
        }
        await writer;
        Assert.Equal(12 << 20, Read(store, "scores/block.bin").Length);
    }

    [Fact]
    public void DeletePrefix_removes_a_folder_and_nothing_that_only_shares_its_name()
    {
        var store = OpenStore(out _);
        foreach (var key in new[] { "jobs/j1/work/a", "jobs/j1/work/b/c", "jobs/j1/workers", "jobs/j1/summary.json" })
            store.Write(key, s => s.Write("x"u8));
        store.DeletePrefix("jobs/j1/work");
        Assert.False(store.Exists("jobs/j1/work/a"));
        Assert.False(store.Exists("jobs/j1/work/b/c"));
        Assert.True(store.Exists("jobs/j1/workers"));
        Assert.True(store.Exists("jobs/j1/summary.json"));
    }

    [Fact]
    public void A_missing_artifact_is_a_FileNotFoundException_naming_the_key()
    {
        var store = OpenStore(out var container);
        var e = Assert.Throws<FileNotFoundException>(() => store.OpenRead("datasets/none.csv"));
        Assert.Contains("datasets/none.csv", e.Message, StringComparison.Ordinal);
        Assert.Contains(container, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_dataset_in_the_store_is_read_through_a_local_copy()
    {
        var store = OpenStore(out _);
        var csv = "label,x1,x2\n0,1.5,2\n1,3,4\n"u8.ToArray();
        store.Write("datasets/abc/tiny.csv", s => s.Write(csv));
        var local = StoredFiles.LocalPath(store, StoredFiles.Reference("datasets/abc/tiny.csv"), allowLocalFiles: false);
        Assert.Equal(csv, File.ReadAllBytes(local));
        var data = new Influence.Core.Data.DatasetSpec(StoredFiles.Reference("datasets/abc/tiny.csv")).Resolve(store, allowLocalFiles: false).Load();
        Assert.Equal(2, data.Count);
        var e = Assert.Throws<FileNotFoundException>(() => StoredFiles.LocalPath(store, "store:datasets/missing.csv", allowLocalFiles: false));
        Assert.Contains("'datasets/missing.csv' is not in the artifact store", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_settings_fail_at_open_with_the_reason()
    {
        var missing = Assert.Throws<ArtifactStoreException>(() => ArtifactStores.Open(
            new ArtifactStoreOptions { Kind = "blob", ConnectionString = azurite.ConnectionString(), Container = "no-such-container" }));
        Assert.Contains("blob container 'no-such-container' does not exist", missing.Message, StringComparison.Ordinal);

        var wrongKey = Convert.ToBase64String(new byte[64]);
        var refused = Assert.Throws<ArtifactStoreException>(() => ArtifactStores.Open(
            new ArtifactStoreOptions { Kind = "blob", ConnectionString = azurite.ConnectionString(wrongKey), Container = azurite.CreateContainer() }));
        Assert.Contains("refused the credentials", refused.Message, StringComparison.Ordinal);

        var unreachable = Assert.Throws<ArtifactStoreException>(() => ArtifactStores.Open(
            new ArtifactStoreOptions { Kind = "blob", ConnectionString = azurite.ConnectionString().Replace($":{azurite.Port}/", $":{Tools.FreePort()}/", StringComparison.Ordinal), Container = "influence" },
            TimeSpan.FromSeconds(3)));
        Assert.Contains("cannot reach blob storage", unreachable.Message, StringComparison.Ordinal);

        var malformed = Assert.Throws<ArtifactStoreException>(() => ArtifactStores.Open(new ArtifactStoreOptions { Kind = "blob", ConnectionString = "not a connection string" }));
        Assert.Contains("connection string", malformed.Message, StringComparison.Ordinal);

        var neither = Assert.Throws<ArtifactStoreException>(() => ArtifactStores.Open(new ArtifactStoreOptions { Kind = "blob" }));
        Assert.Contains("Store:ConnectionString", neither.Message, StringComparison.Ordinal);
    }
}
