using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>LiSSA and Arnoldi against exact Hessians, their spectra and exact solves.</summary>
public class LissaArnoldiTests
{
    /// <summary>Binary logistic regression on 60 points with 8 features (P = 9), trained to ‖∇F‖ ≤ 1e-10: a convex problem with no flat direction.</summary>
    private static (Problem Problem, Tensor Theta, Tensor Hessian) Convex()
    {
        var p = new Problem(ModelSpec.LogisticRegression(8, 2, 0.02, seed: 1), TestData.Blobs(60, 8, 2, 5));
        var theta = Training.FullBatchTrainer.Train(p.Objective, p.Theta, new Training.TrainingOptions { GradientTolerance = 1e-10 }).Theta;
        return (p, theta, ExactHessian.Of(p.Objective, theta));
    }

    private static Func<Tensor, long[], Tensor> BatchProduct(Problem p, Tensor theta, double damping) =>
        (v, rows) => CurvatureOperator.OnRows(p.Objective, theta, rows, damping, v);

    private static double RelativeError(Tensor a, Tensor e) => a.sub(e).norm().ToDouble() / e.norm().ToDouble();

    [Fact]
    public void Full_batch_LiSSA_converges_to_the_damped_inverse()
    {
        var (p, theta, h) = Convex();
        const double damping = 0.01;
        var spectrum = linalg.eigvalsh(h);
        double lmin = spectrum.min().ToDouble() + damping, lmax = spectrum.max().ToDouble() + damping;
        double scale = 1.5 * lmax;
        int depth = (int)Math.Ceiling(Math.Log(1e-9) / Math.Log(1 - lmin / scale));
        var v = randn(9, 2, dtype: ScalarType.Float64, generator: new Generator(3));
        var (estimate, report) = Lissa.Solve(BatchProduct(p, theta, damping), v, 60, new LissaSettings(damping, scale, depth, Repeats: 1, BatchSize: 60, Seed: 0));
        var exact = linalg.solve(h.add(eye(9, dtype: ScalarType.Float64).mul(damping)), v);
        Assert.Equal(0, report.Diverged);
        Assert.True(RelativeError(estimate, exact) <= 1e-7, $"depth {depth}: {RelativeError(estimate, exact):E2}");
        // Without the damping the answer is measurably different: the test would catch a dropped δ.
        Assert.True(RelativeError(linalg.solve(h, v), exact) > 1e-2);
    }

    [Fact]
    public void Minibatch_LiSSA_averages_to_near_the_inverse_and_reports_how_it_settled()
    {
        var (p, theta, h) = Convex();
        const double damping = 0.01;
        double scale = 1.5 * (linalg.eigvalsh(h).max().ToDouble() + damping) * 2; // batches have larger curvature than the mean
        var v = randn(9, 1, dtype: ScalarType.Float64, generator: new Generator(4));
        var (estimate, report) = Lissa.Solve(BatchProduct(p, theta, damping), v, 60, new LissaSettings(damping, scale, Depth: 3000, Repeats: 8, BatchSize: 30, Seed: 7));
        var exact = linalg.solve(h.add(eye(9, dtype: ScalarType.Float64).mul(damping)), v);
        Assert.Equal(0, report.Diverged);
        Assert.Equal(8 * 3000L, report.Products);
        Assert.True(RelativeError(estimate, exact) <= 0.1, $"minibatch LiSSA error {RelativeError(estimate, exact):E2}");
    }

    [Fact]
    public void LiSSA_with_a_scale_below_the_largest_eigenvalue_is_reported_as_diverging()
    {
        var (p, theta, h) = Convex();
        double scale = 0.3 * linalg.eigvalsh(h).max().ToDouble();
        var v = randn(9, 1, dtype: ScalarType.Float64, generator: new Generator(4));
        var (estimate, report) = Lissa.Solve(BatchProduct(p, theta, 0), v, 60, new LissaSettings(0, scale, Depth: 5000, Repeats: 3, BatchSize: 60, Seed: 1));
        Assert.Equal(3, report.Diverged);
        Assert.True(double.IsNaN(estimate[0, 0].ToDouble()));
    }

    [Fact]
    public void Arnoldi_with_a_full_Krylov_space_recovers_the_spectrum_and_the_inverse()
    {
        var (p, theta, h) = Convex();
        var op = CurvatureOperator.Of(p.Objective, theta, 0);
        using var result = Arnoldi.Run(op.Apply, 9, iterations: 9, keep: 9, seed: 2, ScalarType.Float64, CPU);
        var exact = linalg.eigvalsh(h).sort(descending: true).Values;
        Assert.True(result.Eigenvalues.sub(exact).abs().max().ToDouble() <= 1e-10 * exact.max().ToDouble(),
            $"Ritz values {string.Join(", ", result.Eigenvalues.data<double>().ToArray())} vs {string.Join(", ", exact.data<double>().ToArray())}");
        var g = randn(9, 3, dtype: ScalarType.Float64, generator: new Generator(8));
        Assert.True(RelativeError(result.Solve(g), linalg.solve(h, g)) <= 1e-8);
        Assert.True(RelativeError(result.Solve(g, 0.5), linalg.solve(h.add(eye(9, dtype: ScalarType.Float64).mul(0.5)), g)) <= 1e-8);
        Assert.Equal(9, result.Products);
    }

    [Fact]
    public void Arnoldi_finds_the_dominant_eigenpairs_of_an_MLP_Hessian_from_a_small_Krylov_space()
    {
        using var p = Problem.Make("mlp relu all", n: 40);
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var (values, vectors) = linalg.eigh(h);
        var order = values.abs().argsort(descending: true).narrow(0, 0, 3);
        var top = values.index_select(0, order);
        var op = CurvatureOperator.Of(p.Objective, p.Theta, 0);
        using var result = Arnoldi.Run(op.Apply, p.Spec.ParameterCount, iterations: 30, keep: 3, seed: 5, ScalarType.Float64, CPU);
        Assert.True(result.Eigenvalues.sub(top).abs().max().ToDouble() <= 1e-6 * top.abs().max().ToDouble(),
            $"Ritz {string.Join(", ", result.Eigenvalues.data<double>().ToArray())} vs {string.Join(", ", top.data<double>().ToArray())} (P = {p.Spec.ParameterCount})");
        // The kept vectors span the dominant eigenvectors: projectors agree.
        var exactU = vectors.index_select(1, order);
        var diff = result.Eigenvectors.matmul(result.Eigenvectors.t()).sub(exactU.matmul(exactU.t())).norm().ToDouble();
        Assert.True(diff <= 1e-4, $"projector difference {diff:E2}");
        Assert.Equal(30, result.Products);
    }
}

/// <summary>The automatic damping against the exact spectrum.</summary>
public class DampingChoiceTests
{
    [Theory]
    [InlineData("mlp relu all")]
    [InlineData("mlp tanh weights")]
    public void Damping_comes_from_the_extreme_eigenvalues_and_says_when_the_Hessian_is_indefinite(string kind)
    {
        using var p = Problem.Make(kind, n: 40); // at the (untrained) initialisation: indefinite
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var spectrum = linalg.eigvalsh(h).data<double>().ToArray();
        double lmin = spectrum.Min(), lmax = spectrum.Max();
        Assert.True(lmin < 0, $"the fixture should be indefinite: λ_min {lmin}");
        var op = CurvatureOperator.Of(p.Objective, p.Theta, 0);
        var report = DampingChoice.Choose(op.Apply, p.Spec.ParameterCount, iterations: (int)p.Spec.ParameterCount, seed: 1, ScalarType.Float64, CPU, convex: false);
        double scale = Math.Max(Math.Abs(lmin), Math.Abs(lmax));
        Assert.True(Math.Abs(report.LargestEigenvalue - lmax) <= 1e-8 * scale, $"λ_max {report.LargestEigenvalue} vs {lmax}");
        Assert.True(Math.Abs(report.SmallestEigenvalue - lmin) <= 1e-8 * scale, $"λ_min {report.SmallestEigenvalue} vs {lmin}");
        Assert.Equal(lmin < 0, report.Indefinite);
        Assert.Equal(Math.Max(0, -lmin) + DampingChoice.RelativeFloor * lmax, report.Damping, 1e-8 * scale);
        // The damped curvature is positive definite.
        Assert.True(linalg.eigvalsh(h.add(eye(p.Spec.ParameterCount, dtype: ScalarType.Float64).mul(report.Damping))).min().ToDouble() > 0);
    }

    [Fact]
    public void A_convex_model_with_a_positive_definite_Hessian_gets_no_damping()
    {
        using var p = Problem.Make("binary logreg", n: 40);
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var spectrum = linalg.eigvalsh(h).data<double>().ToArray();
        double lmin = spectrum.Min(), lmax = spectrum.Max();
        Assert.True(lmin > DampingChoice.SingularRatio * lmax, $"the fixture should be positive definite: λ_min {lmin}");
        var op = CurvatureOperator.Of(p.Objective, p.Theta, 0);
        int k = (int)p.Spec.ParameterCount;

        var convex = DampingChoice.Choose(op.Apply, p.Spec.ParameterCount, k, seed: 1, ScalarType.Float64, CPU, convex: true);
        Assert.Equal(0, convex.Damping);
        Assert.StartsWith("0: H is positive definite", convex.Rule);
        // Not known to be convex: a positive Krylov estimate of λ_min is not trusted and the floor applies.
        var unknown = DampingChoice.Choose(op.Apply, p.Spec.ParameterCount, k, seed: 1, ScalarType.Float64, CPU, convex: false);
        Assert.Equal(DampingChoice.RelativeFloor * lmax, unknown.Damping, 1e-8 * lmax);
    }

    [Theory]
    [InlineData(1.0, 10.0, true, 0.0)]            // positive definite, trusted: none
    [InlineData(1e-9, 10.0, true, 0.01)]          // trusted but near singular: the floor
    [InlineData(1.0, 10.0, false, 0.01)]          // an untrusted estimate: the floor
    [InlineData(-2.0, 10.0, true, 2.01)]          // indefinite: the shift plus the floor
    public void The_rule_damps_only_what_is_not_known_to_be_positive_definite(double smallest, double largest, bool trusted, double expected)
    {
        Assert.Equal(expected, DampingChoice.Decide(smallest, largest, trusted).Damping, 12);
    }
}
