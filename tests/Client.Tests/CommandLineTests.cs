using System.Diagnostics;
using System.Globalization;

namespace Influence.Client.Tests;

/// <summary>The `influence` binary run as a user runs it: exit codes, files and messages.</summary>
public class CommandLineTests
{
    private static readonly string Binary = Path.Combine(AppContext.BaseDirectory, "influence.dll");
    internal static readonly string Data = Path.Combine(AppContext.BaseDirectory, "data");

    internal static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Binary);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["INFLUENCE_STORE"] = Directory.CreateTempSubdirectory("influence-cli-store").FullName;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); throw new TimeoutException(string.Join(' ', args)); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static string TempDir() => Directory.CreateTempSubdirectory("influence-cli").FullName;

    [Fact]
    public async Task SIGTERM_while_watching_an_embedded_job_stops_it_cleanly_and_says_how_to_resume()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Binary, "loo", "--train", Path.Combine(Data, "digits_train.csv"), "--test", Path.Combine(Data, "digits_test.csv"),
                     "--l2", "1e-2", "--test-indices", "0-1", "--remove", "random:400,1", "--retrain", "cold", "--out", TempDir() })
            psi.ArgumentList.Add(a);
        psi.Environment["INFLUENCE_STORE"] = Directory.CreateTempSubdirectory("influence-cli-store").FullName;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        // Wait until retraining runs, so that compute is busy when the signal comes.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (!Directory.EnumerateFiles(psi.Environment["INFLUENCE_STORE"]!, "unit-*.csv", SearchOption.AllDirectories).Any())
        {
            Assert.True(DateTime.UtcNow < deadline && !p.HasExited, "no retrain unit finished");
            await Task.Delay(200);
        }
        var sw = Stopwatch.StartNew();
        Process.Start("kill", ["-TERM", p.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(40)), "still running 40 s after SIGTERM");
        Assert.True(p.ExitCode == 130, $"exit {p.ExitCode} after {sw.Elapsed.TotalSeconds:F1} s\n{await stderr}");
        // The message names the job to resume, not a placeholder.
        var jobId = System.Text.RegularExpressions.Regex.Match(await stdout, @"Job (loo-\S+) on the").Groups[1].Value;
        Assert.StartsWith("loo-", jobId, StringComparison.Ordinal);
        Assert.Contains($"an embedded LOO job or study resumes with --resume {jobId}", await stderr);
    }

    [Fact]
    public void Methods_lists_every_registered_method_with_what_it_gives()
    {
        var (exit, stdout, _) = Run("methods");
        Assert.Equal(0, exit);
        var lines = stdout.Split('\n');
        foreach (var m in Influence.Core.Jobs.Methods.All)
            Assert.Contains(lines, l => l.StartsWith(m.Name + " ", StringComparison.Ordinal) && l.Contains(m.Summary, StringComparison.Ordinal));
        Assert.Contains("self-influence: none (the cosine of a gradient with itself is 1)", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Demo_runs_with_no_arguments_and_writes_every_file()
    {
        var outDir = Path.Combine(TempDir(), "demo");
        var (exit, stdout, stderr) = Run("demo", "--out", outDir);
        Assert.True(exit == 0, stdout + stderr);
        foreach (var f in new[] { "influence.csv", "self_influence.csv", "topk.csv", "summary.json", "checkpoint.json" })
            Assert.True(File.Exists(Path.Combine(outDir, f)), f);
        Assert.Contains("Most influential training examples", stdout);
        var lines = File.ReadAllLines(Path.Combine(outDir, "influence.csv"));
        Assert.Equal("test_index,train_index,influence", lines[0]);
        Assert.Equal(1 + 5 * 1257, lines.Length);
        var self = File.ReadAllLines(Path.Combine(outDir, "self_influence.csv")).Skip(1).Select(l => double.Parse(l.Split(',')[1], CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(1257, self.Length);
        Assert.All(self, s => Assert.True(s >= 0));
    }

    [Fact]
    public void Score_writes_influence_for_a_binary_problem()
    {
        // A two-class CSV (sigmoid head): the iris rows of classes 0 and 1.
        var dir = TempDir();
        foreach (var name in new[] { "iris_train.csv", "iris_test.csv" })
            File.WriteAllLines(Path.Combine(dir, name), File.ReadLines(Path.Combine(Data, name)).Where((l, i) => i == 0 || !l.StartsWith('2')));
        var outDir = Path.Combine(dir, "out");
        var (exit, stdout, stderr) = Run("score", "--train", Path.Combine(dir, "iris_train.csv"), "--test", Path.Combine(dir, "iris_test.csv"),
            "--l2", "0.1", "--test-indices", "0-2,5", "--shards", "3", "--top-k", "4", "--damping", "0.01", "--dense", "float32", "--out", outDir);
        Assert.True(exit == 0, stdout + stderr);
        Assert.Contains("\"damping\": 0.01", File.ReadAllText(Path.Combine(outDir, "summary.json")));
        var topk = File.ReadAllLines(Path.Combine(outDir, "topk.csv"));
        Assert.Equal(1 + 4 * 2 * 4, topk.Length);

        // influence.npy, read by numpy, is influence.csv in float32: row k is the k-th of --test-indices.
        var csv = File.ReadLines(Path.Combine(outDir, "influence.csv")).Skip(1).Select(l => l.Split(',')).ToList();
        int n = csv.Count / 4;
        var npy = Path.Combine(outDir, "influence.npy");
        Assert.Equal($"(4, {n}) float32", Influence.Core.Tests.NpyTests.NumpyRead(npy, "a.shape, a.dtype"));
        var values = Influence.Core.Tests.NpyTests.NumpyRead(npy, "' '.join(repr(float(v)) for v in a.ravel())").Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(csv.Select(r => (double)(float)double.Parse(r[2], CultureInfo.InvariantCulture)), values);
        Assert.Equal(["0", "1", "2", "5"], csv.Where((_, i) => i % n == 0).Select(r => r[0]));

        // train_summary.csv and train_topk.csv against the dense matrix of influence.csv.
        double V(string v) => double.Parse(v, CultureInfo.InvariantCulture);
        var columns = csv.GroupBy(r => int.Parse(r[1], CultureInfo.InvariantCulture)).ToDictionary(g => g.Key, g => g.Select(r => (Test: r[0], Influence: V(r[2]))).ToList());
        var topkRows = topk.Skip(1).Select(l => l.Split(',')).ToList();
        var summaryRows = File.ReadAllLines(Path.Combine(outDir, "train_summary.csv"));
        Assert.Equal("train_index,self_influence,mean_influence,total_influence,proponent_count,opponent_count", summaryRows[0]);
        Assert.Equal(n, summaryRows.Length - 1);
        foreach (var row in summaryRows.Skip(1).Select(l => l.Split(',')))
        {
            var column = columns[int.Parse(row[0], CultureInfo.InvariantCulture)];
            Assert.Equal(column.Sum(c => c.Influence), V(row[3]), 1e-12 * column.Sum(c => Math.Abs(c.Influence)));
            Assert.Equal(column.Average(c => c.Influence), V(row[2]), 1e-12 * column.Sum(c => Math.Abs(c.Influence)));
            Assert.Equal(topkRows.Count(t => t[1] == "proponent" && t[3] == row[0]).ToString(CultureInfo.InvariantCulture), row[4]);
            Assert.Equal(topkRows.Count(t => t[1] == "opponent" && t[3] == row[0]).ToString(CultureInfo.InvariantCulture), row[5]);
        }
        var trainTopk = File.ReadAllLines(Path.Combine(outDir, "train_topk.csv"));
        Assert.Equal("train_index,kind,rank,test_index,influence", trainTopk[0]);
        foreach (var group in trainTopk.Skip(1).Select(l => l.Split(',')).GroupBy(r => (r[0], r[1])))
        {
            var column = columns[int.Parse(group.Key.Item1, CultureInfo.InvariantCulture)];
            var expected = (group.Key.Item2 == "helps" ? column.OrderBy(c => c.Influence) : column.OrderByDescending(c => c.Influence)).Take(4).ToList();
            Assert.Equal(expected.Select(c => c.Test), group.Select(r => r[3]));
            Assert.Equal(expected.Select(c => c.Influence), group.Select(r => V(r[4])));
        }
        Assert.Equal(1 + n * 2 * 4, trainTopk.Length);
    }

    [Fact]
    public void Without_influence_csv_the_training_side_outputs_come_from_every_pair_and_the_command_says_so()
    {
        var outDir = Path.Combine(TempDir(), "out");
        var (exit, stdout, stderr) = Run("score", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--l2", "0.1", "--test-indices", "0-5", "--shards", "2", "--top-k", "3", "--influence-csv", "off", "--dense", "float64", "--out", outDir);
        Assert.True(exit == 0, stdout + stderr);
        Assert.False(File.Exists(Path.Combine(outDir, "influence.csv")));
        Assert.Contains("influence.csv not written (--influence-csv off): per test point topk.csv, per training example train_summary.csv and train_topk.csv, every pair in influence.npy", stdout);
        Assert.Contains("\"influence_csv\": \"not written (influence_csv off)\"", File.ReadAllText(Path.Combine(outDir, "summary.json")));
        // The per-training-example totals are the dense matrix's column sums (read by numpy).
        var npy = Path.Combine(outDir, "influence.npy");
        var totals = Influence.Core.Tests.NpyTests.NumpyRead(npy, "' '.join(repr(float(v)) for v in a.sum(axis=0))").Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        var rows = File.ReadAllLines(Path.Combine(outDir, "train_summary.csv")).Skip(1).Select(l => l.Split(',')).ToArray();
        Assert.Equal(totals.Length, rows.Length);
        for (int j = 0; j < rows.Length; j++)
            Assert.Equal(totals[j], double.Parse(rows[j][3], CultureInfo.InvariantCulture), 1e-12 * Math.Max(1, Math.Abs(totals[j])));
    }

    [Fact]
    public void Compare_methods_scores_a_loo_runs_model_against_its_retrains_and_the_exact_influence()
    {
        var dir = TempDir();
        var looDir = Path.Combine(dir, "loo");
        var (exit, stdout, stderr) = Run("loo", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--model", "logreg", "--l2", "0.01", "--remove", "random:40,1", "--retrain", "warm", "--test-indices", "0,7,19", "--out", looDir);
        Assert.True(exit == 0, stdout + stderr);
        var cmpDir = Path.Combine(dir, "cmp");
        (exit, stdout, stderr) = Run("compare-methods", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--model", "logreg", "--l2", "0.01", "--loo", looDir, "--methods", "cg,grad-dot", "--cg-tolerance", "1e-10", "--out", cmpDir);
        Assert.True(exit == 0, stdout + stderr);
        // Quoted fields (settings, note) may hold commas.
        var rows = File.ReadAllLines(Path.Combine(cmpDir, "compare.csv")).Skip(1)
            .Select(l => System.Text.RegularExpressions.Regex.Matches(l, "(\"[^\"]*\"|[^,]*)(,|$)").Select(m => m.Groups[1].Value).ToArray()).ToDictionary(r => r[0]);
        Assert.Equal(["exact", "cg", "grad-dot"], rows.Keys);
        double Get(string method, int column) => double.Parse(rows[method][column], CultureInfo.InvariantCulture);
        // exact Spearman in column 2, LOO Spearman in column 5.
        Assert.True(Get("cg", 2) > 0.9999, $"cg vs exact {Get("cg", 2)}");
        Assert.True(Get("exact", 5) > 0.95, $"exact vs warm LOO {Get("exact", 5)}"); // convex model: the influence function predicts LOO well
        Assert.True(Get("grad-dot", 2) < Get("cg", 2));
        // The model is the LOO run's: the same θ̂ byte for byte.
        Assert.Equal(File.ReadAllText(Path.Combine(looDir, "checkpoint.json")), File.ReadAllText(Path.Combine(cmpDir, "cg", "checkpoint.json")));
    }

    [Fact]
    public void Compare_methods_checks_the_size_of_the_methods_it_runs_not_the_default_method()
    {
        // An MLP of 12,730 parameters: beyond the exact Hessian, fine for ekfac (the --loo folder is
        // missing, so the command stops, exit 2, just after the settings passed).
        var dir = TempDir();
        string[] mlp = ["--train", Path.Combine(Data, "fmnist_train2000.csv"), "--test", Path.Combine(Data, "fmnist_test1000.csv"), "--pixel-scale", "255",
            "--model", "mlp", "--hidden", "16", "--loo", Path.Combine(dir, "none")];
        var (exit, stdout, stderr) = Run(["compare-methods", .. mlp, "--methods", "ekfac", "--exact", "never", "--out", Path.Combine(dir, "a")]);
        Assert.Equal(2, exit);
        Assert.Contains("needs loo.csv and checkpoint.json", stderr + stdout);
        (exit, stdout, stderr) = Run(["compare-methods", .. mlp, "--methods", "ekfac", "--exact", "always", "--out", Path.Combine(dir, "b")]);
        Assert.Equal(2, exit);
        Assert.Contains("--method exact holds a P×P Hessian", stderr + stdout);
    }

    [Fact]
    public void Bad_csv_exits_non_zero_naming_file_row_and_column()
    {
        var dir = TempDir();
        var bad = Path.Combine(dir, "train.csv");
        File.WriteAllText(bad, "label,a,b\n0,1,2\n1,2,3\n0,NaN,1\n");
        var (exit, _, stderr) = Run("score", "--train", bad, "--test", bad, "--test-indices", "0", "--out", Path.Combine(dir, "out"));
        Assert.Equal(2, exit);
        Assert.Contains(bad, stderr);
        Assert.Contains("line 4 (row 2), column 2 ('a')", stderr);
        Assert.Contains("not finite", stderr);
    }

    [Theory]
    [InlineData("--test-indices", "3-1", "runs backwards")]
    [InlineData("--test-indices", "a", "not a non-negative integer")]
    [InlineData("--hidden", "8,x", "not a positive width")]
    [InlineData("--pixel-scale", "0", "--pixel-scale must be positive")]
    [InlineData("--conv", "6:x", "--conv: '6:x' is not CHANNELS:KERNEL[:POOL]")]
    [InlineData("--image", "28x28", "--image must be CHANNELSxHEIGHTxWIDTH")]
    public void Bad_options_exit_2_with_the_option_named(string option, string value, string message)
    {
        var (exit, _, stderr) = Run("score", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"), option, value, "--out", TempDir());
        Assert.Equal(2, exit);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void Missing_file_and_unknown_method_are_reported()
    {
        var (exit, _, stderr) = Run("score", "--train", "/no/such.csv", "--test", "/no/such.csv", "--out", TempDir());
        Assert.Equal(2, exit);
        Assert.Contains("/no/such.csv: file not found", stderr);

        (exit, _, stderr) = Run("score", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"), "--method", "magic", "--out", TempDir());
        Assert.Equal(2, exit);
        Assert.Contains($"--method must be one of {string.Join(", ", Influence.Core.Jobs.Methods.Names)}, not 'magic'", stderr);

        (exit, _, stderr) = Run("score", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"), "--method", "tracin", "--out", TempDir());
        Assert.Equal(2, exit);
        Assert.Contains("--method tracin sums over training checkpoints: train with --optimizer sgd or adam", stderr);

        (exit, _, stderr) = Run("score", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"), "--damping", "lots", "--out", TempDir());
        Assert.Equal(2, exit);
        Assert.Contains("--damping must be a number ≥ 0 or auto, not 'lots'", stderr);
    }

    [Fact]
    public void Loo_writes_the_pairs_the_report_and_its_plots()
    {
        var outDir = Path.Combine(TempDir(), "loo");
        var (exit, stdout, stderr) = Run("loo", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--model", "logreg", "--l2", "0.01", "--remove", "top:3+bottom:3", "--retrain", "both", "--test-indices", "0,7", "--out", outDir);
        Assert.True(exit == 0, stdout + stderr);
        var lines = File.ReadAllLines(Path.Combine(outDir, "loo.csv"));
        Assert.Equal("test_index,train_index,predicted_delta,loo_delta,mode", lines[0]);
        int removed = lines.Skip(1).Select(l => l.Split(',')[1]).Distinct().Count();
        Assert.InRange(removed, 6, 12); // top and bottom 3 of two test points, overlaps merged
        Assert.Equal(1 + 2 * 2 * removed, lines.Length);
        var report = File.ReadAllText(Path.Combine(outDir, "report.md"));
        Assert.Contains("| warm |", report);
        Assert.Contains("| cold |", report);
        Assert.Contains("![", report);
        Assert.True(new FileInfo(Path.Combine(outDir, "loo_cold_pooled.png")).Length > 1000);
        Assert.Contains("Predicted against actual LOO change", stdout);
    }

    [Theory]
    [InlineData("--remove", "some", "--remove 'some' is not a removal set")]
    [InlineData("--retrain", "hot", "--retrain: 'hot' is not a mode")]
    [InlineData("--noise-seeds", "3", "--noise-seeds needs cold retrains")]
    public void Loo_rejects_bad_options_with_exit_code_2(string option, string value, string message)
    {
        var (exit, _, stderr) = Run("loo", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            option, value, "--out", TempDir());
        Assert.Equal(2, exit);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void Mislabel_finds_flipped_labels_far_above_random()
    {
        var dir = TempDir();
        var labels = File.ReadLines(Path.Combine(Data, "iris_train.csv")).Skip(1).Select(l => int.Parse(l.Split(',')[0], CultureInfo.InvariantCulture)).ToArray();
        var lines = new List<string> { "index,label_clean,label_noisy" };
        for (int i = 0; i < labels.Length; i++) lines.Add($"{i},{labels[i]},{(i % 10 == 3 ? (labels[i] + 1) % 3 : labels[i])}");
        File.WriteAllLines(Path.Combine(dir, "noisy.csv"), lines);
        var outDir = Path.Combine(dir, "out");
        var (exit, stdout, stderr) = Run("mislabel", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--labels", Path.Combine(dir, "noisy.csv"), "--model", "logreg", "--l2", "0.01", "--test-indices", "0", "--out", outDir);
        Assert.True(exit == 0, stdout + stderr);
        var row = File.ReadLines(Path.Combine(outDir, "mislabel.md")).Single(l => l.StartsWith("| self-influence", StringComparison.Ordinal)).Split('|', StringSplitOptions.TrimEntries);
        double recall20 = double.Parse(row[3], CultureInfo.InvariantCulture);
        Assert.True(recall20 >= 0.5, $"self-influence finds only {recall20:P0} of the flipped labels in its top 20%");
        Assert.Equal(1 + labels.Length, File.ReadAllLines(Path.Combine(outDir, "mislabel.csv")).Length);

        // cg has no matrix to read self-influence from: mislabel has it solve once per training example, to the same ranking.
        var cgDir = Path.Combine(dir, "cg");
        var (cgExit, cgOut, cgErr) = Run("mislabel", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--labels", Path.Combine(dir, "noisy.csv"), "--model", "logreg", "--l2", "0.01", "--test-indices", "0", "--method", "cg", "--cg-tolerance", "1e-10", "--out", cgDir);
        Assert.True(cgExit == 0, cgOut + cgErr);
        Assert.Equal(File.ReadAllLines(Path.Combine(outDir, "mislabel.md")).Single(l => l.StartsWith("| self-influence", StringComparison.Ordinal)),
            File.ReadAllLines(Path.Combine(cgDir, "mislabel.md")).Single(l => l.StartsWith("| self-influence", StringComparison.Ordinal)));

        var (cosExit, _, cosErr) = Run("mislabel", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--labels", Path.Combine(dir, "noisy.csv"), "--method", "grad-cos", "--out", Path.Combine(dir, "cos"));
        Assert.Equal(2, cosExit);
        Assert.Contains("grad-cos gives no self-influence (the cosine of a gradient with itself is 1)", cosErr);

        File.WriteAllText(Path.Combine(dir, "bad.csv"), "index,clean,noisy\n0,1,1\n");
        var (badExit, _, badErr) = Run("mislabel", "--train", Path.Combine(Data, "iris_train.csv"), "--test", Path.Combine(Data, "iris_test.csv"),
            "--labels", Path.Combine(dir, "bad.csv"), "--out", Path.Combine(dir, "bad"));
        Assert.Equal(2, badExit);
        Assert.Contains("bad.csv, line 1: the header must be 'index,label_clean,label_noisy'", badErr);
    }

    [Fact]
    public void Study_runs_a_grid_spec_to_its_table()
    {
        var outDir = Path.Combine(TempDir(), "study");
        var spec = Path.Combine(AppContext.BaseDirectory, "studies", "smoke-iris.yaml");
        var (exit, stdout, stderr) = Run("study", spec, "--out", outDir);
        Assert.True(exit == 0, stdout + stderr);
        var rows = File.ReadAllLines(Path.Combine(outDir, "study.csv"));
        Assert.StartsWith("config,depth,width,weight_decay,damping_given,seed,parameters,lambda_min,damping,", rows[0]);
        Assert.EndsWith(",warm_lds,cold_lds", rows[0]);
        Assert.All(rows.Skip(1), r => Assert.EndsWith(",,", r)); // single removals: no LDS
        Assert.Equal(4, rows.Length);
        var used = new Dictionary<string, double>();
        var warmByDamping = new Dictionary<string, double>();
        foreach (var row in rows.Skip(1))
        {
            var f = row.Split(',');
            Assert.Equal("35", f[6]); // 4-4-3 MLP
            double warm = double.Parse(f[10], CultureInfo.InvariantCulture), cold = double.Parse(f[12], CultureInfo.InvariantCulture);
            Assert.InRange(warm, 0.5, 1.0);
            Assert.InRange(cold, -1.0, 1.0);
            Assert.True(double.Parse(f[7], CultureInfo.InvariantCulture) > 0, "λ_min of a trained, regularised MLP");
            used[f[4]] = double.Parse(f[8], CultureInfo.InvariantCulture);
            warmByDamping[f[4]] = double.Parse(f[11], CultureInfo.InvariantCulture); // warm Pearson: Spearman is 1 at every δ here
        }
        // The axis: each configuration's δ is the one it asked for; auto gives 0 on this positive definite Hessian.
        Assert.Equal(new Dictionary<string, double> { ["0"] = 0, ["auto"] = 0, ["1.0e-3"] = 1e-3 }, used);
        Assert.Equal(warmByDamping["0"], warmByDamping["auto"], 12);
        Assert.NotEqual(warmByDamping["0"], warmByDamping["1.0e-3"], 9);
        Assert.Contains("| depth=1 width=4 l2=0.01 damping=auto seed=0 |", File.ReadAllText(Path.Combine(outDir, "study.md")));

        var bad = Path.Combine(TempDir(), "bad.yaml");
        File.WriteAllText(bad, "name: x\ntrain: nowhere.csv\ntest: nowhere.csv\nmodel: cnn\n");
        var (badExit, _, badErr) = Run("study", bad, "--out", TempDir());
        Assert.Equal(2, badExit);
        Assert.Contains("model must be logreg or mlp, not 'cnn'", badErr);

        File.WriteAllText(bad, "name: x\ntrain: nowhere.csv\ntest: nowhere.csv\ndampings: [0, big]\n");
        (badExit, _, badErr) = Run("study", bad, "--out", TempDir());
        Assert.Equal(2, badExit);
        Assert.Contains("dampings must be a number ≥ 0 or auto, not 'big'", badErr);
        File.WriteAllText(bad, "name: x\ntrain: nowhere.csv\ntest: nowhere.csv\ndamping: 0.001\n");
        (badExit, _, badErr) = Run("study", bad, "--out", TempDir());
        Assert.Equal(2, badExit);
        Assert.Contains("'damping' is now the grid's axis 'dampings'", badErr);
    }
}
