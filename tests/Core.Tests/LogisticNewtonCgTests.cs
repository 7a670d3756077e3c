using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Training;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>
/// Logistic regression's Newton polish without a P×P matrix: closed-form curvature products against
/// autograd's Hessian, the Kronecker preconditioner against its explicit matrix, preconditioned CG
/// against a factorised solve, and the trained point against one exact Newton step.
/// </summary>
public class LogisticNewtonCgTests
{
    private static double RelativeError(Tensor actual, Tensor expected) => actual.sub(expected).norm().ToDouble() / expected.norm().ToDouble();

    private static Problem Moderate(bool binary, int n = 300) =>
        new(ModelSpec.LogisticRegression(12, binary ? 2 : 5, 0.01, seed: 2), TestData.Blobs(n, 12, binary ? 2 : 5, seed: 5, spread: 2.5));

    [Theory]
    [InlineData("softmax logreg", false)]
    [InlineData("softmax logreg", true)]
    [InlineData("binary logreg", false)]
    [InlineData("binary logreg", true)]
    public void Closed_form_products_equal_autograds_Hessian_times_V(string kind, bool weighted)
    {
        using var p = Problem.Make(kind, n: 30);
        var weights = weighted ? rand(30, dtype: ScalarType.Float64, generator: new Generator(4)).mul(2) : null;
        var v = randn(p.Spec.ParameterCount, 3, dtype: ScalarType.Float64, generator: new Generator(7));
        var expected = ExactHessian.DoubleBackwardSum(p.Spec, p.Theta, p.Data, weights).matmul(v);
        var actual = LogisticCurvature.DataSum(p.Spec, p.Theta, p.Data, v, weights);
        Assert.True(RelativeError(actual, expected) <= 1e-12, $"{kind}: {RelativeError(actual, expected):E2}");
    }

    [Fact]
    public void Float32_products_from_the_probabilities_agree_with_float64_to_float32_precision()
    {
        using var p = Moderate(binary: false);
        var v = randn(p.Spec.ParameterCount, 2, dtype: ScalarType.Float64, generator: new Generator(5));
        var exact = LogisticCurvature.DataSum(p.Spec, p.Theta, p.Data, v);
        var probabilities = OutputCurvature.Probabilities(p.Spec, Network.Logits(p.Spec, p.Theta, p.Data.X));
        var single = LogisticCurvature.DataSum(p.Spec, probabilities, p.Data.X.to(ScalarType.Float32), v);
        Assert.Equal(ScalarType.Float64, single.dtype);
        double error = RelativeError(single, exact);
        Assert.InRange(error, 1e-10, 1e-5); // float32's rounding, and only that: above float64's, far below a wrong product
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_Kronecker_preconditioner_inverts_its_explicit_matrix(bool binary)
    {
        using var p = Moderate(binary, n: 80);
        var spec = p.Spec;
        long c = spec.OutputDim, d = spec.InputDim;
        double gamma = 0.03;
        using var preconditioner = new LogisticKfacPreconditioner(spec, p.Theta, p.Data, p.Data.Count, gamma);
        // Ā ⊗ S in the augmented layout (class c's row [W_c, b_c]), moved to the flat one.
        var aBar = OutputCurvature.Matrix(spec, Network.Logits(spec, p.Theta, p.Data.X)).mean([0]);
        var xAug = cat([p.Data.X, ones(p.Data.Count, 1, dtype: ScalarType.Float64)], 1);
        var s = xAug.t().matmul(xAug).div(p.Data.Count);
        var augmented = kron(aBar, s);
        var flatOf = new long[c * (d + 1)];
        for (long ci = 0; ci < c; ci++)
        {
            for (long j = 0; j < d; j++) flatOf[ci * (d + 1) + j] = ci * d + j;
            flatOf[ci * (d + 1) + d] = c * d + ci;
        }
        var toAugmented = argsort(tensor(flatOf)); // flat index → its augmented position
        var explicitMatrix = augmented.index_select(0, toAugmented).index_select(1, toAugmented).add(eye(spec.ParameterCount, dtype: ScalarType.Float64).mul(gamma));
        var r = randn(spec.ParameterCount, 4, dtype: ScalarType.Float64, generator: new Generator(3));
        var back = preconditioner.Apply(explicitMatrix.matmul(r));
        Assert.True(RelativeError(back, r) <= 1e-10, $"M⁻¹(M r) differs from r by {RelativeError(back, r):E2}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Preconditioned_CG_matches_the_factorised_solve_in_fewer_iterations_than_plain_CG(bool binary)
    {
        using var p = Moderate(binary);
        var theta = FullBatchTrainer.Train(p.Objective, p.Theta, new TrainingOptions { NewtonPolish = false, GradientTolerance = 1e-3, LbfgsTolerance = 1e-3 }).Theta;
        var spec = p.Spec;
        var flat = p.Objective.FlatDirections(CPU);
        using var h = ExactHessian.Of(p.Objective, theta);
        using var inverse = HessianInverse.Factorize(h, 0, flat);
        var b = inverse.Project(randn(spec.ParameterCount, 2, dtype: ScalarType.Float64, generator: new Generator(9)));
        var op = new CurvatureOperator(v => LogisticCurvature.DataSum(spec, theta, p.Data, v), p.Data.Count, p.Objective.RegularizerHessianDiagonal(), 0);
        using var preconditioner = new LogisticKfacPreconditioner(spec, theta, p.Data, p.Data.Count, spec.L2);
        var (x, reports) = ConjugateGradient.Solve(op.Apply, b, 1e-10, 1000, flat, preconditioner.Apply);
        var (_, plain) = ConjugateGradient.Solve(op.Apply, b, 1e-10, 1000, flat);
        Assert.All(reports, r => Assert.True(r.Converged, r.ToString()));
        Assert.True(RelativeError(x, inverse.Solve(b)) <= 1e-7, $"{RelativeError(x, inverse.Solve(b)):E2}");
        for (int k = 0; k < 2; k++)
            Assert.True(reports[k].Iterations < plain[k].Iterations, $"preconditioned {reports[k].Iterations} iterations, plain {plain[k].Iterations}");
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Training_ends_where_an_exact_Newton_step_has_nothing_left_to_do(bool binary, bool weighted)
    {
        using var p = Moderate(binary);
        var objective = weighted
            ? new Objective(p.Spec, p.Data, p.Data.Count, CPU, rand(p.Data.Count, dtype: ScalarType.Float64, generator: new Generator(8)).mul(2).index_fill_(0, tensor(new long[] { 3, 17 }), 0))
            : p.Objective;
        var result = FullBatchTrainer.Train(objective, p.Theta, new TrainingOptions { LbfgsTolerance = 1e-4 });
        Assert.True(result.Converged && result.GradientNorm <= 1e-11, $"‖∇F‖ = {result.GradientNorm:E2}");
        Assert.True(result.NewtonIterations >= 1, "L-BFGS stopped at 1e-4, so the Newton polish must have taken over");
        // The oracle: the exact Newton step from the trained point (autograd's Hessian, factorised).
        using var h = ExactHessian.DoubleBackwardSum(p.Spec, result.Theta, objective.Data, objective.ExampleWeights).div(objective.Normalizer);
        h.diagonal().add_(objective.RegularizerHessianDiagonal());
        using var inverse = HessianInverse.Factorize(h, 0, objective.FlatDirections(CPU), computeSpectrum: false);
        var (_, g) = objective.ValueAndGradient(result.Theta);
        double step = inverse.Solve(g.unsqueeze(1)).norm().ToDouble();
        Assert.True(step <= 1e-9 * Math.Max(1, result.Theta.norm().ToDouble()), $"an exact Newton step would still move θ by {step:E2}");
    }
}
