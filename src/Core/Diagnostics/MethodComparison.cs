using System.Diagnostics;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Metrics;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Training;
using static TorchSharp.torch;

namespace Influence.Core.Diagnostics;

/// <summary>One estimator's agreement with the exact influence, and its cost.</summary>
public sealed record MethodRow(string Method, string Settings, double MeanSpearman, double MinSpearman, double MeanPearson, double Seconds, long CurvatureProducts, string Note);

/// <summary>
/// Every influence estimator on one small model, on one process, against the exact influence
/// −∇L(z)ᵀ(H + δI)⁻¹∇L(z_test) with the same damping: the table a user picks a method from. (The
/// distributed versions run the same Core code per shard.)
/// </summary>
public static class MethodComparison
{
    public static IReadOnlyList<MethodRow> Run(TrainTestData data, ModelSpec spec, int[] testIndices, double damping, IProgress<string>? progress = null)
    {
        using var scope = NewDisposeScope();
        var device = CPU;
        var train = DataTensors.From(data.Train, spec, device);
        var test = DataTensors.From(data.Test.Select(testIndices), spec, device);
        var objective = new Objective(spec, train, data.Train.Count, device);
        var init = Network.Initialize(spec, device);
        progress?.Report("training (full batch, to ‖∇F‖ ≤ 1e-11)");
        var theta = FullBatchTrainer.Train(objective, init).Theta;
        var flat = Network.FlatDirections(spec, device);
        var gTrain = PerExampleGradients.Materialize(spec, theta, train);   // N × P
        var gTest = PerExampleGradients.Materialize(spec, theta, test);     // Q × P
        var rhs = gTest.t();                                                // P × Q
        Tensor Scores(Tensor preconditioned) => gTrain.matmul(preconditioned).neg(); // N × Q influence

        var rows = new List<MethodRow>();
        var sw = Stopwatch.StartNew();
        progress?.Report("exact");
        var h = ExactHessian.Of(objective, theta);
        using var inverse = HessianInverse.Factorize(h, damping, flat);
        var exact = Scores(inverse.Solve(rhs));
        rows.Add(Row("exact", $"δ = {damping:G3}, λ ∈ [{inverse.MinEigenvalue:E2}, {inverse.MaxEigenvalue:E2}]", exact, exact, sw, 0, ""));

        var op = CurvatureOperator.Of(objective, theta, damping);
        sw.Restart();
        progress?.Report("cg");
        var (cgX, cgReports) = ConjugateGradient.Solve(op.Apply, inverse.Project(rhs), 1e-8, 1000, flat);
        rows.Add(Row("cg", "tolerance 1e-8", Scores(cgX), exact, sw, op.Products,
            $"{cgReports.Count(r => r.Converged)}/{cgReports.Length} converged, max {cgReports.Max(r => r.Iterations)} iterations"));

        var plain = CurvatureOperator.Of(objective, theta, 0);
        sw.Restart();
        progress?.Report("arnoldi");
        int krylov = (int)Math.Min(spec.ParameterCount, 60), keep = Math.Max(1, krylov / 2);
        using (var arnoldi = Arnoldi.Run(plain.Apply, spec.ParameterCount, krylov, keep, seed: 0, spec.ScalarType, device, flat))
            rows.Add(Row("arnoldi", $"n = {krylov}, top {keep}", Scores(arnoldi.Solve(rhs, damping)), exact, sw, plain.Products, ""));

        sw.Restart();
        progress?.Report("lissa");
        double scale = 1.5 * (inverse.MaxEigenvalue + damping) * 2;
        var (lissa, lissaReport) = Lissa.Solve((v, batchRows) => CurvatureOperator.OnRows(objective, theta, batchRows, damping, v), inverse.Project(rhs), train.Count, new LissaSettings(damping, scale, Depth: 2000, Repeats: 4, BatchSize: Math.Min(64, (int)train.Count), Seed: 0));
        rows.Add(Row("lissa", $"scale {scale:G3}, depth 2000, 4 repeats, batch {Math.Min(64, train.Count)}", Scores(inverse.Project(lissa)), exact, sw, lissaReport.Products,
            lissaReport.Diverged > 0 ? $"{lissaReport.Diverged} of 4 repeats diverged" : ""));

        foreach (var ekfac in new[] { false, true })
        {
            sw.Restart();
            progress?.Report(ekfac ? "ekfac" : "kfac");
            using var sums = KfacFactorSums.Accumulate(spec, theta, train, FisherLabels.Empirical, 0);
            using var factors = KroneckerFactors.FromSums(spec, sums);
            if (ekfac) factors.SetCorrections(factors.CorrectionSums(theta, train, FisherLabels.Empirical, 0), train.Count);
            rows.Add(Row(ekfac ? "ekfac" : "kfac", "empirical Fisher, λ + δ added per layer", Scores(factors.Solve(rhs, damping, ekfac)), exact, sw, 0, ""));
        }

        sw.Restart();
        progress?.Report("tracin (minibatch SGD with checkpoints)");
        var (_, checkpoints) = MinibatchTrainer.Train(objective, init, new MinibatchOptions(Optimizer.Sgd, 0.05, Epochs: 100, BatchSize: 16, Seed: 0, CheckpointEvery: 20));
        rows.Add(Row("tracin", "SGD 100 epochs, 5 checkpoints", GradientSimilarity.TracIn(spec, checkpoints, train, test), exact, sw, 0, "its own SGD run, not θ̂"));
        sw.Restart();
        rows.Add(Row("grad-dot", "at θ̂", GradientSimilarity.GradDot(spec, theta, train, test), exact, sw, 0, ""));
        sw.Restart();
        rows.Add(Row("grad-cos", "at θ̂", GradientSimilarity.GradCos(spec, theta, train, test), exact, sw, 0, ""));
        return rows;
    }

    private static MethodRow Row(string method, string settings, Tensor scores, Tensor exact, Stopwatch sw, long products, string note)
    {
        double seconds = sw.Elapsed.TotalSeconds;
        int q = (int)exact.shape[1];
        var spearman = new double[q];
        var pearson = new double[q];
        for (int k = 0; k < q; k++)
        {
            var a = scores[.., k].to(ScalarType.Float64).data<double>().ToArray();
            var e = exact[.., k].to(ScalarType.Float64).data<double>().ToArray();
            spearman[k] = Correlation.Spearman(a, e);
            pearson[k] = Correlation.Pearson(a, e);
        }
        return new MethodRow(method, settings, spearman.Average(), spearman.Min(), pearson.Average(), seconds, products, note);
    }
}
