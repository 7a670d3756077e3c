using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Curvature products and conjugate gradient against exact Hessians, explicit Jacobians and exact solves.</summary>
public class IterativeSolverTests
{
    private static Tensor RandomColumns(long p, int k, int seed) => randn(p, k, dtype: ScalarType.Float64, generator: new Generator((ulong)seed));

    private static double RelativeError(Tensor actual, Tensor expected) => actual.sub(expected).norm().ToDouble() / expected.norm().ToDouble();

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Products_with_several_vectors_equal_the_exact_Hessian_times_them_and_add_up_over_shards(string kind)
    {
        using var p = Problem.Make(kind, n: 30);
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var v = RandomColumns(p.Spec.ParameterCount, 3, 7);
        var op = CurvatureOperator.Of(p.Objective, p.Theta, damping: 0.25);
        var hv = op.Apply(v);
        var expected = h.matmul(v).add(v.mul(0.25));
        Assert.True(RelativeError(hv, expected) <= 1e-12, $"{kind}: {RelativeError(hv, expected):E2}");
        Assert.Equal(3, op.Products);

        // Shards of 7, 13 and 10 rows: their data sums add up to the whole.
        var whole = HessianVectorProducts.DataSum(p.Spec, p.Theta, p.Data, v);
        var parts = new[] { (0, 7), (7, 13), (20, 10) }.Select(r => HessianVectorProducts.DataSum(p.Spec, p.Theta, p.Data.Rows(r.Item1, r.Item2), v)).ToList();
        Assert.True(RelativeError(parts[0].add(parts[1]).add(parts[2]), whole) <= 1e-13);
    }

    [Theory]
    [InlineData("softmax logreg")]
    [InlineData("binary logreg")]
    [InlineData("mlp tanh weights")]
    [InlineData("mlp relu all")]
    public void Gauss_Newton_products_equal_J_transpose_A_J_built_from_an_explicit_Jacobian(string kind)
    {
        using var p = Problem.Make(kind, n: 12);
        long n = p.Data.Count, pc = p.Spec.ParameterCount;
        int o = p.Spec.OutputDim;
        // Explicit Jacobian of every output of every example, one backward pass each.
        var jac = zeros(n * o, pc, dtype: ScalarType.Float64);
        using (var enabled = enable_grad())
        {
            var t = p.Theta.detach().requires_grad_(true);
            var z = Network.Logits(p.Spec, t, p.Data.X);
            for (long i = 0; i < n; i++)
                for (int c = 0; c < o; c++)
                    jac[i * o + c] = autograd.grad([z[i, c]], [t], retain_graph: true)[0].detach();
        }
        var zs = Network.Logits(p.Spec, p.Theta, p.Data.X);
        var ggn = zeros(pc, pc, dtype: ScalarType.Float64);
        for (long i = 0; i < n; i++)
        {
            var ji = jac.narrow(0, i * o, o);
            Tensor a;
            if (p.Spec.IsBinary) { var s = zs[i].sigmoid(); a = s.mul(s.neg().add(1)).view(1, 1); }
            else { var q = zs[i].softmax(0); a = diag(q).sub(q.outer(q)); }
            ggn.add_(ji.t().matmul(a).matmul(ji));
        }
        var v = RandomColumns(pc, 2, 3);
        var product = HessianVectorProducts.DataSum(p.Spec, p.Theta, p.Data, v, Curvature.GaussNewton);
        Assert.True(RelativeError(product, ggn.matmul(v)) <= 1e-12, $"{kind}: {RelativeError(product, ggn.matmul(v)):E2}");
        if (p.Spec.IsLogisticRegression)
        {
            // A linear model's Gauss-Newton matrix is its Hessian.
            var hessian = HessianVectorProducts.DataSum(p.Spec, p.Theta, p.Data, v);
            Assert.True(RelativeError(product, hessian) <= 1e-12);
        }
    }

    [Theory]
    [InlineData("binary logreg", 0.0)]
    [InlineData("mlp tanh weights", 0.0)]
    [InlineData("mlp relu all", 0.5)]
    public void CG_solves_the_damped_system_to_its_tolerance_at_a_trained_optimum(string kind, double damping)
    {
        using var p = Problem.Make(kind, n: 40);
        var trained = Training.FullBatchTrainer.Train(p.Objective, p.Theta, new Training.TrainingOptions { GradientTolerance = 1e-10 }).Theta;
        using var h = ExactHessian.Of(p.Objective, trained);
        // Softmax heads with unpenalised biases are flat along one direction: both sides solve on its complement.
        var flat = Network.FlatDirections(p.Spec, CPU);
        using var exact = HessianInverse.Factorize(h, damping, flat);
        var b = exact.Project(RandomColumns(p.Spec.ParameterCount, 4, 9));
        var expected = exact.Solve(b);
        var op = CurvatureOperator.Of(p.Objective, trained, damping);
        var (x, reports) = ConjugateGradient.Solve(op.Apply, b, tolerance: 1e-11, maxIterations: 500, flat);
        string context = $"{kind}: eigenvalues [{exact.MinEigenvalue:E2}, {exact.MaxEigenvalue:E2}]";
        Assert.All(reports, r => Assert.True(r.Converged && !r.NegativeCurvature && r.RelativeResidual <= 1e-11, $"{context}: {r}"));
        Assert.True(RelativeError(x, expected) <= 1e-7, $"{context}: {RelativeError(x, expected):E2}");
        // A missing damping term would show: the undamped solution is far from the damped one.
        if (damping > 0) Assert.True(RelativeError(linalg.solve(h.add(eye(p.Spec.ParameterCount, dtype: ScalarType.Float64).mul(1e-3)), b), expected) > 1e-3);
        // Columns are solved together, so the products used are those of the slowest column, once per unfinished column.
        Assert.Equal(reports.Sum(r => (long)r.Iterations), op.Products);
    }

    [Fact]
    public void CG_on_softmax_regression_with_its_flat_direction_gives_the_pseudo_inverse_solution()
    {
        using var p = Problem.Make("softmax logreg", n: 40);
        var flat = Network.FlatDirections(p.Spec, CPU)!;
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        using var inverse = HessianInverse.Factorize(h, 0, flat);
        var b = inverse.Project(RandomColumns(p.Spec.ParameterCount, 3, 4));
        var (x, reports) = ConjugateGradient.Solve(CurvatureOperator.Of(p.Objective, p.Theta, 0).Apply, b, 1e-12, 500, flat);
        Assert.All(reports, r => Assert.True(r.Converged, r.ToString()));
        Assert.True(RelativeError(x, inverse.Solve(b)) <= 1e-8);
    }

    [Fact]
    public void CG_reports_negative_curvature_instead_of_returning_a_wrong_answer()
    {
        // diag(2, 1, −1): the third direction has negative curvature.
        var a = diag(tensor(new[] { 2.0, 1.0, -1.0 }));
        // Column 0 = (0, 1, 1): pᵀAp = 1 − 1 = 0 at the first step. Column 1 = (1, 0, 0).
        var b = tensor(new[] { 0.0, 1.0, 1.0, 0.0, 1.0, 0.0 }, [3, 2]);
        var (_, reports) = ConjugateGradient.Solve(v => a.matmul(v), b, 1e-12, 10);
        Assert.True(reports[0].NegativeCurvature && !reports[0].Converged, reports[0].ToString());
        Assert.True(reports[1].Converged && !reports[1].NegativeCurvature, reports[1].ToString()); // b = (1, 0, 0) never meets it
    }

    [Fact]
    public void CG_stops_at_its_iteration_cap_and_says_it_did_not_converge()
    {
        var a = diag(linspace(1, 1000, 50, dtype: ScalarType.Float64));
        var b = ones(50, 1, dtype: ScalarType.Float64);
        var (_, reports) = ConjugateGradient.Solve(v => a.matmul(v), b, 1e-14, 5);
        Assert.Equal(5, reports[0].Iterations);
        Assert.False(reports[0].Converged);
        Assert.True(reports[0].RelativeResidual > 1e-6);
    }
}
