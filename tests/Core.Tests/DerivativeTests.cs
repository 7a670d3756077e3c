using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Gradients, Hessians and HVPs against central finite differences in float64.</summary>
public class DerivativeTests
{
    private const double H = 1e-5;

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Gradient_matches_finite_differences(string kind)
    {
        using var p = Problem.Make(kind);
        var (_, grad) = p.Objective.ValueAndGradient(p.Theta);
        var g = grad.data<double>().ToArray();
        for (int k = 0; k < g.Length; k++)
        {
            var plus = p.Theta.clone(); plus[k] = plus[k] + H;
            var minus = p.Theta.clone(); minus[k] = minus[k] - H;
            double fd = (p.Objective.Value(plus).ToDouble() - p.Objective.Value(minus).ToDouble()) / (2 * H);
            Assert.True(Math.Abs(fd - g[k]) <= 1e-7 + 1e-6 * Math.Abs(fd), $"{kind} θ[{k}]: autograd {g[k]} vs FD {fd}");
        }
    }

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Exact_Hessian_matches_finite_differences_of_gradients(string kind)
    {
        using var p = Problem.Make(kind);
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        long n = p.Spec.ParameterCount;
        double scale = h.abs().max().ToDouble();
        for (long k = 0; k < n; k++)
        {
            var plus = p.Theta.clone(); plus[k] = plus[k] + H;
            var minus = p.Theta.clone(); minus[k] = minus[k] - H;
            var fd = p.Objective.ValueAndGradient(plus).Gradient.sub(p.Objective.ValueAndGradient(minus).Gradient).div(2 * H);
            double err = fd.sub(h[k]).abs().max().ToDouble();
            Assert.True(err <= 1e-6 * scale, $"{kind} row {k}: max |H - FD| = {err} (scale {scale})");
        }
        Assert.True(h.sub(h.t()).abs().max().ToDouble() <= 1e-12 * scale, "Hessian not symmetric");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Analytic_logistic_Hessian_equals_double_backward(int classes)
    {
        var data = TestData.Blobs(30, 5, classes, 11);
        using var p = new Problem(ModelSpec.LogisticRegression(5, classes, 0.1, seed: 2), data);
        using var analytic = ExactHessian.AnalyticLogisticSum(p.Spec, p.Theta, p.Data);
        using var generic = ExactHessian.DoubleBackwardSum(p.Spec, p.Theta, p.Data);
        double err = analytic.sub(generic).abs().max().ToDouble();
        Assert.True(err <= 1e-12 * generic.abs().max().ToDouble(), $"analytic vs double backward differ by {err}");
    }

    /// <summary>The closed form goes over the rows 8,192 at a time: more rows than that, with example weights, against double backward.</summary>
    [Fact]
    public void Analytic_logistic_Hessian_over_several_row_blocks_equals_double_backward()
    {
        var data = TestData.Blobs(9000, 4, 3, 13);
        using var p = new Problem(ModelSpec.LogisticRegression(4, 3, 0.1, seed: 2), data);
        using var weights = rand(9000, dtype: ScalarType.Float64, generator: new Generator(3));
        using var analytic = ExactHessian.AnalyticLogisticSum(p.Spec, p.Theta, p.Data, weights);
        using var generic = ExactHessian.DoubleBackwardSum(p.Spec, p.Theta, p.Data, weights);
        double err = analytic.sub(generic).abs().max().ToDouble();
        Assert.True(err <= 1e-11 * generic.abs().max().ToDouble(), $"analytic vs double backward differ by {err}");
    }

    /// <summary>A shard sums its rows' Hessians chunk by chunk into one P×P matrix: the sum must not depend on the chunks.</summary>
    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Hessian_summed_in_place_over_chunks_equals_the_whole(string kind)
    {
        using var p = Problem.Make(kind); // 24 rows
        using var whole = ExactHessian.DataSum(p.Spec, p.Theta, p.Data);
        Tensor? sum = null;
        foreach (var (start, count) in new[] { (0, 10), (10, 1), (11, 13) })
            sum = ExactHessian.DataSum(p.Spec, p.Theta, p.Data.Rows(start, count), into: sum);
        using (sum)
        {
            double err = sum!.sub(whole).abs().max().ToDouble();
            Assert.True(err <= 1e-12 * whole.abs().max().ToDouble(), $"{kind}: chunked sum differs by {err}");
        }
    }

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Hessian_vector_product_equals_H_times_v(string kind)
    {
        using var p = Problem.Make(kind);
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var v = randn(p.Spec.ParameterCount, dtype: ScalarType.Float64, generator: new Generator(5));
        var hv = CurvatureOperator.Of(p.Objective, p.Theta, damping: 0).Apply(v.unsqueeze(1)).squeeze(1);
        var expected = h.matmul(v);
        Assert.True(hv.sub(expected).abs().max().ToDouble() <= 1e-12 * expected.abs().max().ToDouble() + 1e-14);
    }

    [Fact]
    public void Regulariser_covers_weights_only_or_all_parameters()
    {
        using var p = Problem.Make("mlp tanh weights");
        var mask = Network.RegularizationMask(p.Spec, CPU);
        foreach (var layer in p.Spec.Layers)
        {
            Assert.Equal(layer.WeightCount, mask.narrow(0, layer.WeightOffset, layer.WeightCount).sum().ToInt64());
            Assert.Equal(0, mask.narrow(0, layer.BiasOffset, layer.Out).sum().ToInt64());
        }
        using var all = Problem.Make("mlp relu all");
        Assert.Equal(all.Spec.ParameterCount, Network.RegularizationMask(all.Spec, CPU).sum().ToInt64());
        // F = mean loss + (λ/2)‖mask θ‖², checked by hand.
        var loss = Objective.PerExampleLoss(p.Spec, p.Theta, p.Data).mean().ToDouble();
        var reg = p.Spec.L2 / 2 * p.Theta.mul(mask).square().sum().ToDouble();
        Assert.Equal(loss + reg, p.Objective.Value(p.Theta).ToDouble(), 12);
    }
}
