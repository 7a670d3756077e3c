using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

public class PerExampleGradientTests
{
    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Batched_outer_products_equal_the_per_example_loop(string kind)
    {
        using var p = Problem.Make(kind);
        using var batched = PerExampleGradients.Materialize(p.Spec, p.Theta, p.Data);
        using var loop = PerExampleGradients.ByLoop(p.Spec, p.Theta, p.Data);
        Assert.True(batched.sub(loop).abs().max().ToDouble() <= 1e-13 * loop.abs().max().ToDouble());
        // The per-example gradients sum to N times the gradient of the mean loss.
        using var noReg = new Problem(p.Spec with { L2 = 0 }, TestData.Blobs(24, p.Spec.InputDim, p.Spec.ClassCount, 3), p.Theta);
        var total = noReg.Objective.ValueAndGradient(p.Theta).Gradient.mul(p.Data.Count);
        Assert.True(batched.sum(0L, false).sub(total).abs().max().ToDouble() <= 1e-12 * total.abs().max().ToDouble() + 1e-14);
    }

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Query_dot_products_equal_materialised_gradients_times_queries(string kind)
    {
        using var p = Problem.Make(kind);
        var q = randn(7, p.Spec.ParameterCount, dtype: ScalarType.Float64, generator: new Generator(9));
        using var queries = new PerExampleGradients.Queries(p.Spec, q);
        using var dots = PerExampleGradients.DotWithQueries(p.Spec, p.Theta, p.Data, queries);
        using var expected = PerExampleGradients.ByLoop(p.Spec, p.Theta, p.Data).matmul(q.t());
        Assert.Equal(new long[] { p.Data.Count, 7 }, dots.shape);
        Assert.True(dots.sub(expected).abs().max().ToDouble() <= 1e-12 * expected.abs().max().ToDouble());
    }
}
