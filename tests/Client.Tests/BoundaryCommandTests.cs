using System.Diagnostics;
using System.Security.Cryptography;
using Influence.Core.Storage;

namespace Influence.Client.Tests;

/// <summary>
/// The client's boundaries, as a user (or someone who can write to the store) meets them: what
/// lands in --out, which inputs are refused before any work, exit codes, brief errors.
/// </summary>
public class BoundaryCommandTests
{
    private static readonly string Binary = Path.Combine(AppContext.BaseDirectory, "influence.dll");
    private static readonly string Data = Path.Combine(AppContext.BaseDirectory, "data");
    private static readonly string Iris = Path.Combine(Data, "iris_train.csv");
    private static readonly string IrisTest = Path.Combine(Data, "iris_test.csv");

    private static (int Exit, string Out, string Err, TimeSpan Took) Run(string? store, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Binary);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["INFLUENCE_STORE"] = store ?? Directory.CreateTempSubdirectory("influence-cli-store").FullName;
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); throw new TimeoutException(string.Join(' ', args)); }
        return (p.ExitCode, stdout.Result, stderr.Result, clock.Elapsed);
    }

    private static string TempDir() => Directory.CreateTempSubdirectory("influence-cli").FullName;

    [Theory]
    [InlineData("../escaped.txt")]
    [InlineData("/tmp/influence-absolute-escape.txt")]
    [InlineData("sub/dir.txt")]
    [InlineData(".influence-outputs.json")]
    public void Export_writes_only_plain_names_and_refuses_a_manifest_that_names_anything_else(string name)
    {
        var store = new LocalArtifactStore(TempDir());
        var parent = TempDir();
        var outDir = Path.Combine(parent, "out");
        store.Write("jobs/job-1/summary.json", s => s.Write("{}"u8));
        store.Write("jobs/job-1/influence.csv", s => s.Write("x"u8));
        store.Write($"jobs/job-1/outputs.json", s => System.Text.Json.JsonSerializer.Serialize(s, new[] { "influence.csv", name }));
        var output = OutputFolder.Prepare(outDir, overwrite: false, "score");
        var e = Assert.Throws<JobOutputException>(() => output.Export(store, "job-1", ["summary.json"], "summary.json"));
        Assert.Contains("job job-1", e.Message, StringComparison.Ordinal);
        Assert.Contains("not a plain file name", e.Message, StringComparison.Ordinal);
        // Nothing written: not the escape, not even the good name before it.
        Assert.False(File.Exists(Path.Combine(parent, "escaped.txt")));
        Assert.False(File.Exists("/tmp/influence-absolute-escape.txt"));
        Assert.Equal([OutputFolder.ManifestName], Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName));
    }

    [Fact]
    public void A_dataset_already_in_the_store_is_named_by_its_store_key()
    {
        var store = TempDir();
        var hash = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Iris)))[..16];
        new LocalArtifactStore(store).Write($"datasets/{hash}/iris_train.csv", s => { using var f = File.OpenRead(Iris); f.CopyTo(s); });
        var outDir = Path.Combine(TempDir(), "out");
        var (exit, stdout, stderr, _) = Run(store, "score", "--train", $"store:datasets/{hash}/iris_train.csv", "--test", IrisTest, "--test-indices", "0", "--out", outDir);
        Assert.True(exit == 0, stdout + stderr);
        Assert.Contains($"store:datasets/{hash}/iris_train.csv", File.ReadAllText(Path.Combine(outDir, "summary.json")), StringComparison.Ordinal);
        // A key that is not there, and one that is not a key, each say so.
        (exit, _, stderr, _) = Run(store, "score", "--train", "store:datasets/0000/none.csv", "--test", IrisTest, "--out", Path.Combine(TempDir(), "o"));
        Assert.Equal(2, exit);
        Assert.Contains("'datasets/0000/none.csv' is not in the artifact store", stderr, StringComparison.Ordinal);
        (exit, _, stderr, _) = Run(store, "score", "--train", "store:../../etc/passwd", "--test", IrisTest, "--out", Path.Combine(TempDir(), "o"));
        Assert.Equal(2, exit);
        Assert.Contains("'..' segment", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unusable_out_folder_exits_2_before_any_work()
    {
        var file = Path.Combine(TempDir(), "a-file");
        File.WriteAllText(file, "x");
        foreach (var bad in new[] { file, "/dev/null", "/proc/influence-cannot-write-here" })
        {
            var (exit, _, stderr, took) = Run(null, "score", "--train", Iris, "--test", IrisTest, "--out", bad);
            Assert.True(exit == 2, $"--out {bad}: exit {exit}\n{stderr}");
            Assert.Contains("--out", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
            Assert.True(took < TimeSpan.FromSeconds(30), $"--out {bad} took {took.TotalSeconds:F0} s");
        }
    }

    [Fact]
    public void An_out_folder_with_results_is_refused_without_overwrite_and_replaced_whole_with_it()
    {
        var outDir = Path.Combine(TempDir(), "out");
        var (exit, _, stderr, _) = Run(null, "loo", "--train", Iris, "--test", IrisTest, "--test-indices", "0", "--remove", "random:3", "--retrain", "warm", "--out", outDir);
        Assert.True(exit == 0, stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "loo.csv")));
        (exit, _, stderr, _) = Run(null, "score", "--train", Iris, "--test", IrisTest, "--test-indices", "0", "--out", outDir);
        Assert.Equal(2, exit);
        Assert.Contains("holds the results of an earlier run (influence loo", stderr, StringComparison.Ordinal);
        Assert.Contains("--overwrite", stderr, StringComparison.Ordinal);
        (exit, _, stderr, _) = Run(null, "score", "--train", Iris, "--test", IrisTest, "--test-indices", "0", "--out", outDir, "--overwrite");
        Assert.True(exit == 0, stderr);
        // No stale file of the other kind of job, no temporary file left.
        Assert.False(File.Exists(Path.Combine(outDir, "loo.csv")));
        Assert.True(File.Exists(Path.Combine(outDir, "influence.csv")));
        Assert.DoesNotContain(Directory.GetFiles(outDir), f => f.Contains("partial", StringComparison.Ordinal));
        // A folder of other files is not ours to fill.
        var foreign = TempDir();
        File.WriteAllText(Path.Combine(foreign, "notes.txt"), "mine");
        (exit, _, stderr, _) = Run(null, "score", "--train", Iris, "--test", IrisTest, "--out", foreign);
        Assert.Equal(2, exit);
        Assert.Contains("is not empty", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--shards", "1e9", "Cannot parse argument '1e9' for option '--shards'")]
    [InlineData("--no-such-option", "1", "Unrecognized command or argument '--no-such-option'")]
    [InlineData("--l2", "Infinity", "--l2 must be a finite number ≥ 0")]
    [InlineData("--pixel-scale", "Infinity", "--pixel-scale must be a finite positive number")]
    [InlineData("--test-indices", "0-2147483647", "selects more than 1,000,000 indices")]
    [InlineData("--test-indices", "99999999999", "not a non-negative integer")]
    public void Bad_options_exit_2_at_once(string option, string value, string message)
    {
        var (exit, _, stderr, took) = Run(null, "score", "--train", Iris, "--test", IrisTest, option, value, "--out", Path.Combine(TempDir(), "o"));
        Assert.True(exit == 2, $"exit {exit}: {stderr}");
        Assert.Contains(message, stderr, StringComparison.Ordinal);
        Assert.True(took < TimeSpan.FromSeconds(30), $"took {took.TotalSeconds:F0} s");
    }

    [Fact]
    public void Models_too_large_are_refused_before_any_data_is_loaded_or_trained()
    {
        var digits = Path.Combine(Data, "digits_train.csv");
        var (exit, _, stderr, took) = Run(null, "score", "--train", digits, "--test", Path.Combine(Data, "digits_test.csv"), "--model", "mlp", "--hidden", "800", "--out", Path.Combine(TempDir(), "o"));
        Assert.True(exit == 2, stderr);
        Assert.Contains("--method exact holds a P×P Hessian", stderr, StringComparison.Ordinal);
        Assert.True(took < TimeSpan.FromSeconds(30), $"took {took.TotalSeconds:F0} s");
        (exit, _, stderr, _) = Run(null, "score", "--train", digits, "--test", Path.Combine(Data, "digits_test.csv"), "--model", "mlp", "--hidden", "100000000", "--method", "cg", "--out", Path.Combine(TempDir(), "o"));
        Assert.True(exit == 2, stderr);
        Assert.Contains("GiB of parameter vectors", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_inputs_are_named_briefly_without_a_stack_trace()
    {
        var dir = TempDir();
        // A folder given as a data file.
        var (exit, _, stderr, _) = Run(null, "score", "--train", dir, "--test", IrisTest, "--out", Path.Combine(dir, "o1"));
        Assert.Equal(2, exit);
        Assert.Contains("is a folder, not a file", stderr, StringComparison.Ordinal);
        // A checkpoint that is not one.
        var empty = Path.Combine(dir, "checkpoint.json");
        File.WriteAllText(empty, "{}");
        (exit, _, stderr, _) = Run(null, "score", "--train", Iris, "--test", IrisTest, "--checkpoint", empty, "--out", Path.Combine(dir, "o2"));
        Assert.Equal(2, exit);
        Assert.Contains("it has no model spec", stderr, StringComparison.Ordinal);
        // A job id that is a path.
        (exit, _, stderr, _) = Run(null, "loo", "--train", Iris, "--test", IrisTest, "--resume", "../x", "--out", Path.Combine(dir, "o3"));
        Assert.Equal(2, exit);
        Assert.Contains("--resume '../x' is not a job id", stderr, StringComparison.Ordinal);
        // A study whose name would be a path.
        var spec = Path.Combine(dir, "study.yaml");
        File.WriteAllText(spec, $"name: ../escape\ntrain: {Iris}\ntest: {IrisTest}\nmodel: logreg\nweight_decays: [0.01]\nseeds: [0]\n");
        (exit, _, stderr, _) = Run(null, "study", spec, "--out", Path.Combine(dir, "o4"));
        Assert.Equal(2, exit);
        Assert.Contains("name '../escape' must be", stderr, StringComparison.Ordinal);
        // A huge bad cell: one short line, no stack trace.
        var huge = Path.Combine(dir, "huge.csv");
        File.WriteAllText(huge, "label,a,b\n0,1,2\n1,3," + new string('7', 3_000_000) + "x\n");
        (exit, _, stderr, _) = Run(null, "score", "--train", huge, "--test", huge, "--test-indices", "0", "--out", Path.Combine(dir, "o5"));
        Assert.Equal(2, exit);
        Assert.True(stderr.Length < 2000, $"{stderr.Length} characters of errors");
        Assert.Contains("(3000001 characters)", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_checkpoint_of_another_model_says_how_they_differ()
    {
        var dir = TempDir();
        var (exit, _, stderr, _) = Run(null, "score", "--train", Iris, "--test", IrisTest, "--test-indices", "0", "--l2", "0.01", "--out", Path.Combine(dir, "a"));
        Assert.True(exit == 0, stderr);
        (exit, _, stderr, _) = Run(null, "score", "--train", Iris, "--test", IrisTest, "--test-indices", "0", "--l2", "0.02", "--checkpoint", Path.Combine(dir, "a", "checkpoint.json"), "--out", Path.Combine(dir, "b"));
        Assert.Equal(2, exit);
        Assert.Contains("they differ in L2 0.01 against 0.02", stderr, StringComparison.Ordinal);
    }
}
