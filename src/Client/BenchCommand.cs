using System.CommandLine;
using System.Diagnostics;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Client;

/// <summary>`influence bench grads`: throughput of the per-example gradient paths against one plain batched forward+backward.</summary>
public static class BenchCommand
{
    private static readonly Option<int> Batch = new("--batch-size") { Description = "Batch size", DefaultValueFactory = _ => 512 };
    private static readonly Option<double> Seconds = new("--seconds") { Description = "Minimum time per measurement", DefaultValueFactory = _ => 3.0 };
    private static readonly Option<int> Threads = new("--threads") { Description = "libtorch threads (0 = default)", DefaultValueFactory = _ => 0 };

    public static Command Create()
    {
        var grads = new Command("grads", "Per-example gradients: loop, batched, dot products with 10 queries, and the plain forward+backward floor (MLP 784-256-10, float32)");
        grads.Options.Add(Batch);
        grads.Options.Add(Seconds);
        grads.Options.Add(Threads);
        grads.SetAction(parse => Run(parse.GetValue(Batch), parse.GetValue(Seconds), parse.GetValue(Threads)));
        var bench = new Command("bench", "Benchmarks that print their figures");
        bench.Subcommands.Add(grads);
        return bench;
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

        var table = new Table().AddColumns("path", "examples/s", "ratio to floor");
        void Row(string name, double v) => table.AddRow(name, v.ToString("N0"), (v / floor).ToString("F3"));
        Row("per-example loop (autograd per example)", loop);
        Row("batched per-example gradients (B×P buffer)", batched);
        Row("dot products with 10 queries (no B×P)", dots);
        Row("plain batched forward+backward (floor)", floor);
        AnsiConsole.Write(table);
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
