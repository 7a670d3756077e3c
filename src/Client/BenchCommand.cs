using System.CommandLine;
using System.Diagnostics;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Loo;
using Influence.Core.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Client;

/// <summary>`influence bench grads`: throughput of the per-example gradient paths against one plain batched forward+backward.</summary>
public static class BenchCommand
{
    private static readonly Option<int> Batch = new("--batch-size") { Description = "Batch size", DefaultValueFactory = _ => 512 };
    private static readonly Option<double> Seconds = new("--seconds") { Description = "Minimum time per measurement", DefaultValueFactory = _ => 3.0 };
    private static readonly Option<int> Retrains = new("--retrains") { Description = "Batched warm retrains to time (removals 0..n−1)", DefaultValueFactory = _ => 400 };
    private static readonly Option<int> Threads = new("--threads") { Description = "libtorch threads (0 = default)", DefaultValueFactory = _ => 0 };

    private static readonly Option<string> MethodsHidden = new("--hidden") { Description = "MLP hidden widths", DefaultValueFactory = _ => "8" };
    private static readonly Option<double> MethodsDamping = new("--damping") { Description = "δ used by every method", DefaultValueFactory = _ => 1e-3 };

    public static Command Create()
    {
        var grads = new Command("grads", "Per-example gradients: loop, batched, dot products with 10 and 100 queries (exact and rank 32), and the plain forward+backward floor (MLP 784-256-10, float32)");
        grads.Options.Add(Batch);
        grads.Options.Add(Seconds);
        grads.Options.Add(Threads);
        grads.SetAction(parse => Run(parse.GetValue(Batch), parse.GetValue(Seconds), parse.GetValue(Threads)));
        var loo = new Command("loo", "Warm leave-one-out retrains of Fashion-MNIST logistic regression (2000 × 7850, λ = 1e-3): batched against the general trainer");
        loo.Options.Add(Retrains);
        loo.Options.Add(Threads);
        loo.SetAction(parse => RunLoo(parse.GetValue(Retrains), parse.GetValue(Threads)));
        var methods = new Command("methods", "Every influence estimator on the bundled Iris data (tanh MLP, weight decay on all parameters) against the exact influence with the same damping");
        methods.Options.Add(MethodsHidden);
        methods.Options.Add(MethodsDamping);
        methods.SetAction(parse => RunMethods(parse.GetValue(MethodsHidden)!, parse.GetValue(MethodsDamping)));
        var bench = new Command("bench", "Benchmarks that print their figures");
        bench.Subcommands.Add(grads);
        bench.Subcommands.Add(loo);
        bench.Subcommands.Add(methods);
        return bench;
    }

    private static int RunMethods(string hidden, double damping)
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "data");
        var settings = Influence.Core.Diagnostics.MethodComparison.IrisSettings(Path.Combine(dir, "iris_train.csv"), Path.Combine(dir, "iris_test.csv"),
            hidden.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray(), damping);
        Console.WriteLine($"Iris, tanh MLP {hidden}, λ = {settings.L2} on all parameters, δ = {damping}, test points 0–4, one process");
        var rows = Influence.Core.Diagnostics.MethodComparison.Run(settings, Influence.Core.Diagnostics.MethodComparison.IrisTracInTraining, new Progress<string>(m => Console.WriteLine($"  {m}")));
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 200;
        var table = new Table().Title("Against the exact influence (per test point, then mean)").AddColumns("method", "settings", "mean Spearman", "min Spearman", "mean Pearson", "seconds", "curvature products", "note");
        foreach (var r in rows)
            table.AddRow(r.Method, Markup.Escape(r.Settings), F(r.MeanSpearman), F(r.MinSpearman), F(r.MeanPearson), r.Seconds.ToString("F2", System.Globalization.CultureInfo.InvariantCulture),
                r.CurvatureProducts.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(r.Note));
        AnsiConsole.Write(table);
        return 0;

        static string F(double v) => v.ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture);
    }

    private static int Run(int batchSize, double seconds, int threads)
    {
        Influence.Core.Compute.Devices.ConfigureThreads(threads);
        var device = Influence.Core.Compute.Devices.Default;
        var data = CsvDatasetReader.Read(Path.Combine(AppContext.BaseDirectory, "data", "fmnist_train2000.csv"), 255);
        var spec = ModelSpec.Mlp(784, 10, [256], Activation.Relu, 1e-3, DecayOn.All, Precision.Float32, seed: 0);
        using var all = DataTensors.From(data, spec, device);
        using var batch = all.Rows(0, batchSize);
        using var theta = Network.Initialize(spec, device);
        var buffer = empty(batchSize, spec.ParameterCount, dtype: spec.ScalarType, device: device);
        using var queryVectors = randn(10, spec.ParameterCount, dtype: spec.ScalarType, generator: new Generator(1)).to(device);
        using var queries = new PerExampleGradients.Queries(spec, queryVectors);
        var objective = new Objective(spec, batch, batchSize, device);
        Console.WriteLine($"MLP 784-256-10 (relu), {spec.ParameterCount} parameters, float32, batch {batchSize}, device {device.type}, {get_num_threads()} threads");

        double floor = Measure(seconds, batchSize, () =>
        {
            using var enabled = enable_grad();
            var t = theta.detach().requires_grad_(true);
            var g = autograd.grad([objective.Value(t)], [t])[0];
            g.Dispose();
        });
        double loop = Measure(seconds, 64, () =>
        {
            using var few = batch.Rows(0, 64);
            PerExampleGradients.ByLoop(spec, theta, few).Dispose();
        });
        double batched = Measure(seconds, batchSize, () => PerExampleGradients.Materialize(spec, theta, batch, buffer));
        double dots = Measure(seconds, batchSize, () => PerExampleGradients.DotWithQueries(spec, theta, batch, queries).Dispose());
        buffer.Dispose();

        // Many queries: exact per-layer blocks against rank-32 factors (--query-rank), whose one-off construction is timed too.
        using var manyVectors = randn(100, spec.ParameterCount, dtype: spec.ScalarType, generator: new Generator(2)).to(device);
        using var many = new PerExampleGradients.Queries(spec, manyVectors);
        var built = Stopwatch.StartNew();
        using var lowRank = new PerExampleGradients.Queries(spec, manyVectors, rank: 32);
        double construction = built.Elapsed.TotalSeconds;
        double manyDots = Measure(seconds, batchSize, () => PerExampleGradients.DotWithQueries(spec, theta, batch, many).Dispose());
        double lowRankDots = Measure(seconds, batchSize, () => PerExampleGradients.DotWithQueries(spec, theta, batch, lowRank).Dispose());

        var table = new Table().AddColumns("path", "examples/s", "ratio to floor");
        void Row(string name, double v) => table.AddRow(name, v.ToString("N0"), (v / floor).ToString("F3"));
        Row("per-example loop (autograd per example)", loop);
        Row("batched per-example gradients (B×P buffer)", batched);
        Row("dot products with 10 queries (no B×P)", dots);
        Row("dot products with 100 queries", manyDots);
        Row($"dot products with 100 queries at rank 32 (factors built once in {construction:F2} s)", lowRankDots);
        Row("plain batched forward+backward (floor)", floor);
        AnsiConsole.Write(table);
        return 0;
    }

    /// <summary>
    /// Times the batched warm retrainer on the acceptance problem and, as the reference, the
    /// general trainer (L-BFGS then Newton, warm from θ̂) on two of the same removals; prints
    /// retrains/s, the ratio, and the largest difference of the test-loss deltas between the two.
    /// </summary>
    private static int RunLoo(int retrains, int threads)
    {
        Influence.Core.Compute.Devices.ConfigureThreads(threads);
        var device = Influence.Core.Compute.Devices.Default;
        var dir = Path.Combine(AppContext.BaseDirectory, "data");
        var data = TrainTestData.Load(new DatasetSpec(Path.Combine(dir, "fmnist_train2000.csv"), null, 255), new DatasetSpec(Path.Combine(dir, "fmnist_test1000.csv"), null, 255));
        var spec = ModelSpec.LogisticRegression(784, 10, 1e-3);
        using var train = DataTensors.From(data.Train, spec, device);
        using var test = DataTensors.From(data.Test, 0, 10, spec, device);
        var sw = Stopwatch.StartNew();
        using var init = Network.Initialize(spec, device);
        var trained = FullBatchTrainer.Train(new Objective(spec, train, data.Train.Count, device), init, new TrainingOptions { GradientTolerance = Influence.Core.Loo.LooContext.FastPathTolerance });
        using var thetaHat = trained.Theta;
        Console.WriteLine($"θ̂: ‖∇F‖ = {trained.GradientNorm:E2} in {sw.Elapsed.TotalSeconds:F1} s; device {device.type}, {get_num_threads()} threads");

        sw.Restart();
        using var retrainer = new LogisticRetrainer(spec, train, thetaHat);
        double setup = sw.Elapsed.TotalSeconds;
        sw.Restart();
        var removed = Enumerable.Range(0, Math.Min(retrains, data.Train.Count)).ToArray();
        var thetas = new List<Tensor>();
        int converged = 0;
        foreach (var chunk in removed.Chunk(200))
        {
            var (batch, outcomes) = retrainer.Retrain(chunk);
            converged += outcomes.Count(o => o.Converged);
            thetas.AddRange(Enumerable.Range(0, chunk.Length).Select(b => batch[b].clone()));
            batch.Dispose();
        }
        double batchedRate = removed.Length / sw.Elapsed.TotalSeconds;

        double worst = 0;
        sw.Restart();
        int[] reference = [0, 1];
        foreach (var j in reference)
        {
            var r = LeaveOneOut.Retrain(spec, data.Train, j, thetaHat, new TrainingOptions { GradientTolerance = Influence.Core.Loo.LooContext.FastPathTolerance });
            using var a = Objective.PerExampleLoss(spec, r.Theta, test);
            using var b = Objective.PerExampleLoss(spec, thetas[j], test);
            worst = Math.Max(worst, a.sub(b).abs().max().ToDouble());
            r.Theta.Dispose();
        }
        double referenceRate = reference.Length / sw.Elapsed.TotalSeconds;
        foreach (var t in thetas) t.Dispose();

        var table = new Table().AddColumns("path", "retrains/s", "ratio to reference");
        table.AddRow($"batched warm retrainer ({removed.Length} retrains, {converged} converged; setup {setup:F1} s not included)", batchedRate.ToString("N1"), (batchedRate / referenceRate).ToString("N0"));
        table.AddRow("general trainer, warm (reference, 2 retrains)", referenceRate.ToString("N3"), "1");
        AnsiConsole.Write(table);
        Console.WriteLine($"Largest |Δ test loss| difference between the two on the reference removals (10 test points): {worst:E2}");
        Console.WriteLine($"All {data.Train.Count} retrains at this rate: {setup + data.Train.Count / batchedRate:F1} s including setup.");
        return 0;
    }

    /// <summary>Examples per second of <paramref name="work"/> (which handles <paramref name="examples"/> each call), after one warm-up call.</summary>
    private static double Measure(double seconds, int examples, Action work)
    {
        work();
        var sw = Stopwatch.StartNew();
        long done = 0;
        while (sw.Elapsed.TotalSeconds < seconds)
        {
            using var scope = NewDisposeScope();
            work();
            done += examples;
        }
        return done / sw.Elapsed.TotalSeconds;
    }
}
