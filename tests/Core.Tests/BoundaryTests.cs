using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Safety;
using Influence.Core.Storage;

namespace Influence.Core.Tests;

/// <summary>
/// The trust boundaries of Core: store keys and input paths from requests, secrets in messages,
/// values quoted in errors, IDX headers, labels and model sizes. Each test is for a class of
/// problem, and failed on the code before its fix.
/// </summary>
public class BoundaryTests
{
    private static string TempFile(string name, byte[] content)
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("influence-boundary").FullName, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    [Theory]
    [InlineData("")]
    [InlineData("/etc/passwd")]
    [InlineData("../outside.csv")]
    [InlineData("datasets/../../etc/passwd")]
    [InlineData("datasets//x.csv")]
    [InlineData("datasets/./x.csv")]
    [InlineData("datasets/a b/x.csv")]
    [InlineData("datasets\\x.csv")]
    public void Malformed_store_keys_are_refused_before_any_filesystem_access(string key)
    {
        Assert.NotNull(StoreKeys.Problem(key));
        var store = new LocalArtifactStore(Directory.CreateTempSubdirectory("influence-store").FullName);
        Assert.Throws<ArgumentException>(() => StoredFiles.LocalPath(store, StoredFiles.Scheme + key, allowLocalFiles: true));
    }

    [Fact]
    public void A_silo_reads_no_local_file_and_no_file_outside_the_store_whatever_the_request_names()
    {
        var store = new LocalArtifactStore(Directory.CreateTempSubdirectory("influence-store").FullName);
        var secret = TempFile("secret.csv", "label,x\n0,1\n"u8.ToArray());
        // A local path: refused where local files are not allowed (a cluster's silo) ...
        var local = Assert.Throws<ArgumentException>(() => StoredFiles.LocalPath(store, secret, allowLocalFiles: false));
        Assert.Contains("is a local path", local.Message, StringComparison.Ordinal);
        // ... and through a store: reference that escapes (before the fix, "store:/abs" returned /abs itself).
        Assert.Throws<ArgumentException>(() => StoredFiles.LocalPath(store, "store:" + secret, allowLocalFiles: false));
        Assert.Throws<ArgumentException>(() => new DatasetSpec(secret).Resolve(store, allowLocalFiles: false));
        // A key in the store is read through a local copy; the embedded mode still opens local paths.
        store.Write("datasets/abc/ok.csv", s => s.Write("label,x\n0,1\n1,2\n"u8));
        Assert.Equal(2, new DatasetSpec("store:datasets/abc/ok.csv").Resolve(store, allowLocalFiles: false).Load().Count);
        Assert.Equal(secret, StoredFiles.LocalPath(store, secret, allowLocalFiles: true));
    }

    [Fact]
    public void Secrets_are_redacted_from_connection_strings_and_urls()
    {
        string[] shown =
        [
            Secrets.Redact("redis.example:6379,password=hunter2-redis,ssl=true"),
            Secrets.Redact("cannot reach Redis at 'h:1,Password=hunter2-redis': timeout"),
            Secrets.Redact("redis://default:hunter2-redis@redis.example:6379"),
            Secrets.Redact("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=hunter2-key==;EndpointSuffix=core.windows.net"),
            Secrets.Redact("https://acct.blob.core.windows.net/c?sv=2024-01-01&se=2030&sp=rw&sig=hunter2-sas%3D"),
            Secrets.Redact("BlobEndpoint=https://a.blob/;SharedAccessSignature=sv=2024&sig=hunter2-sas;"),
            Secrets.Redact("redis.example:6379,password=hunter2;with&odd'chars,ssl=true"),
            Secrets.Redact("REDIS_PASSWORD=hunter2-env"),
            Secrets.Redact("Password = hunter2-spaced"),
            Secrets.Redact("rediss://user:hunter2@with/odd@redis.example:6380"),
            Secrets.Redact("https://acct.blob.core.windows.net/c?sig=hunter2-first&sv=2024&sp=r"),
        ];
        foreach (var s in shown)
        {
            Assert.DoesNotContain("hunter2", s, StringComparison.Ordinal);
            Assert.Contains(Secrets.Mask, s, StringComparison.Ordinal);
        }
        // What is not a secret stays, so that the message still says where.
        Assert.Contains("redis.example:6379", shown[0], StringComparison.Ordinal);
        Assert.Contains("AccountName=acct", shown[3], StringComparison.Ordinal);
        Assert.Contains("sp=rw", shown[4], StringComparison.Ordinal);
    }

    [Fact]
    public void A_huge_cell_gives_a_short_error()
    {
        var cell = new string('9', 2_000_000) + "x";
        var path = TempFile("huge.csv", System.Text.Encoding.UTF8.GetBytes($"label,a\n0,{cell}\n"));
        var e = Assert.Throws<DataFormatException>(() => CsvDatasetReader.Read(path));
        Assert.True(e.Message.Length < 400, $"{e.Message.Length} characters");
        Assert.Contains("(2000001 characters)", e.Message, StringComparison.Ordinal);
        Assert.Contains("line 2 (row 0), column 2", e.Message, StringComparison.Ordinal);
        // Whatever a thrower quotes, the exception itself is capped too.
        Assert.True(new DataFormatException(cell, cell, cell).Message.Length < 1000);
        Assert.Equal("ab\\ncd", Echo.Cap("ab\ncd"));
    }

    private static byte[] IdxHeader(params int[] dims)
    {
        var header = new byte[4 + 4 * dims.Length];
        header[2] = 0x08;
        header[3] = (byte)dims.Length;
        for (int d = 0; d < dims.Length; d++) BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + 4 * d), dims[d]);
        return header;
    }

    [Fact]
    public void A_gzip_bomb_stops_at_the_size_its_header_promises_and_names_the_file()
    {
        // 10 images of 28×28 promised; 400 MB of zeros follow, compressed to well under a megabyte.
        var compressed = new MemoryStream();
        using (var gz = new GZipStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            gz.Write(IdxHeader(10, 28, 28));
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 400; i++) gz.Write(zeros);
        }
        Assert.True(compressed.Length < 1 << 20, $"{compressed.Length} bytes");
        var images = TempFile("bomb-images-idx3-ubyte.gz", compressed.ToArray());
        var labels = TempFile("labels-idx1-ubyte", [.. IdxHeader(10), .. new byte[10]]);
        // Allocations of this thread only: other tests run beside this one.
        var memoryBefore = GC.GetAllocatedBytesForCurrentThread();
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<DataFormatException>(() => IdxDatasetReader.Read(images, labels));
        Assert.Contains(images, e.Message, StringComparison.Ordinal);
        Assert.Contains("more than the 7,840 values its header promises", e.Message, StringComparison.Ordinal);
        // It stopped reading: nowhere near the 400 MB inflated (before the fix: the whole file in memory).
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - memoryBefore < 50 << 20, "read far more than the header promised");
        // A header that promises more than the file holds allocates as the data arrives, not the promise.
        var truncated = TempFile("short-images-idx3-ubyte", [.. IdxHeader(50_000, 100, 100), .. new byte[1000]]);
        memoryBefore = GC.GetAllocatedBytesForCurrentThread();
        Assert.Contains("the header promises 500,000,000 values but the file holds 1,000", Assert.Throws<DataFormatException>(() => IdxDatasetReader.Read(truncated, labels)).Message, StringComparison.Ordinal);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - memoryBefore < 50 << 20, "allocated the header's promise before reading");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20));
    }

    [Fact]
    public void Idx_headers_that_promise_absurd_sizes_are_refused_without_overflow()
    {
        var huge = TempFile("huge-images-idx3-ubyte", IdxHeader(int.MaxValue, int.MaxValue, 8));
        var labels = TempFile("labels-idx1-ubyte", IdxHeader(1));
        var e = Assert.Throws<DataFormatException>(() => IdxDatasetReader.Read(huge, labels));
        Assert.Contains("promise more than 1,000,000,000 values", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("-", e.Message.Split("promise")[1], StringComparison.Ordinal); // no wrapped negative count
        // No image, but rows that alone overflow: refused too (the zero count must not hide them).
        var emptyHuge = TempFile("zero-images-idx3-ubyte", IdxHeader(0, int.MaxValue, int.MaxValue));
        Assert.Contains("promise more than", Assert.Throws<DataFormatException>(() => IdxDatasetReader.Read(emptyHuge, labels)).Message, StringComparison.Ordinal);
        var negative = TempFile("neg-images-idx3-ubyte", IdxHeader(2, -1, 4));
        Assert.Contains("negative", Assert.Throws<DataFormatException>(() => IdxDatasetReader.Read(negative, labels)).Message, StringComparison.Ordinal);
        var folder = Directory.CreateTempSubdirectory("influence-folder").FullName;
        Assert.Contains("is a folder", Assert.Throws<DataFormatException>(() => CsvDatasetReader.Read(folder)).Message, StringComparison.Ordinal);
    }

    private static Dataset Labels(params int[] labels) => new("train.csv", labels.Select(l => (double)l).ToArray(), labels, 1);

    [Fact]
    public void Labels_that_are_not_class_indices_are_refused_or_warned_about()
    {
        // Every label the same: no classifier to train.
        Assert.Contains("single class", Assert.Throws<DataFormatException>(() => TrainTestData.Combine(Labels(2, 2, 2), Labels(2))).Message, StringComparison.Ordinal);
        // A stray id makes a million classes: refused, naming the row.
        var stray = Assert.Throws<DataFormatException>(() => TrainTestData.Combine(Labels(0, 1, 2, 999_999, 1), Labels(0)));
        Assert.Contains("row 3", stray.Message, StringComparison.Ordinal);
        Assert.Contains("1,000,000 classes", stray.Message, StringComparison.Ordinal);
        // A typo (7 among 0-2): trains, with a warning naming the empty classes and the row.
        var typo = TrainTestData.Combine(Labels(0, 1, 2, 7, 0, 1), Labels(0));
        Assert.Equal(8, typo.ClassCount);
        var warning = Assert.Single(typo.Warnings);
        Assert.Contains("4 of 8 classes have no training example (3, 4, 5, 6)", warning, StringComparison.Ordinal);
        Assert.Contains("row 3", warning, StringComparison.Ordinal);
        Assert.Empty(TrainTestData.Combine(Labels(0, 1, 2), Labels(0)).Warnings);
    }

    private static ScoreSettings Settings(string method, string model, int[] hidden) => new()
    {
        Train = new DatasetSpec("train.csv"), Test = new DatasetSpec("test.csv"), TestIndices = [0],
        Method = method, Model = SettingsJson.Parse<Influence.Core.Models.ModelKind>(model, "model"), Hidden = hidden,
    };

    [Fact]
    public void Models_too_large_for_the_method_or_the_machine_are_refused_before_training()
    {
        var exact = Settings(Methods.Exact, "mlp", [1000]);
        var e = Assert.Throws<ArgumentException>(() => exact.CheckSize(exact.BuildSpec(50, 3)));
        Assert.Contains("--method exact", e.Message, StringComparison.Ordinal);
        Assert.Contains("54,003 parameters", e.Message, StringComparison.Ordinal);
        var cg = Settings(Methods.Cg, "mlp", [1000]);
        cg.CheckSize(cg.BuildSpec(50, 2)); // fine for an iterative method
        var huge = Settings(Methods.Cg, "mlp", [100_000_000]);
        var memory = Assert.Throws<ArgumentException>(() => huge.CheckSize(huge.BuildSpec(64, 2)));
        Assert.Contains("GiB of parameter vectors", memory.Message, StringComparison.Ordinal);
    }
}
