using Influence.Core.Storage;
using Xunit;

namespace Influence.Core.Tests;

/// <summary>The embedded store's writes: by O_DIRECT where the file system allows (an aligned buffer, the last block padded then cut back).</summary>
public class LocalArtifactStoreTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4096)]
    [InlineData(4097)]
    [InlineData((8 << 20) + 3)] // past the writer's 8 MB buffer
    public void Artifacts_of_any_length_read_back_byte_for_byte(int length)
    {
        var store = new LocalArtifactStore(Directory.CreateTempSubdirectory("store-").FullName);
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        // Written in uneven pieces, as a serializer would.
        store.Write("jobs/a/blob.bin", s => { for (int i = 0; i < length; i += 1000) s.Write(bytes, i, Math.Min(1000, length - i)); });
        using var read = store.OpenRead("jobs/a/blob.bin");
        using var copy = new MemoryStream();
        read.CopyTo(copy);
        Assert.Equal(bytes, copy.ToArray());
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(store.PathOf("jobs/a/blob.bin"))!, "*.partial-*"));
    }

    [Fact]
    public void Direct_writes_are_used_on_this_disk_and_never_overwrite()
    {
        var disk = Path.Combine(Directory.CreateTempSubdirectory("direct-").FullName, "f");
        using (var w = DirectFileWriter.TryCreate(disk))
        {
            Assert.NotNull(w); // Linux x64 on a block device: the path CI and the benchmarks take
            w!.Write([1, 2, 3]);
            w.Complete();
        }
        Assert.Equal([1, 2, 3], File.ReadAllBytes(disk));
        Assert.Throws<IOException>(() => DirectFileWriter.TryCreate(disk)); // exists: never overwritten
        Assert.Equal([1, 2, 3], File.ReadAllBytes(disk));
    }
}
