using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Random projections of gradients: reproducible, independent of batching, inner products kept in expectation.</summary>
public class GradientProjectorTests
{
    [Theory]
    [InlineData(ProjectionKind.Gaussian)]
    [InlineData(ProjectionKind.Rademacher)]
    public void The_same_seed_projects_the_same_way_whatever_the_batching(ProjectionKind kind)
    {
        var projector = new GradientProjector(10_000, 64, kind, seed: 11); // three blocks, the last partial
        var x = randn(6, 10_000, dtype: ScalarType.Float64, generator: new Generator(1));
        var whole = projector.Project(x);
        var split = cat([projector.Project(x.narrow(0, 0, 2)), projector.Project(x.narrow(0, 2, 4))], 0);
        // Equal up to rounding: a GEMM over 2 rows may sum in another order than over 6.
        Assert.True(whole.sub(split).abs().max().ToDouble() <= 1e-12 * whole.abs().max().ToDouble());
        Assert.Equal(0, whole.sub(new GradientProjector(10_000, 64, kind, seed: 11).Project(x)).abs().max().ToDouble());
        Assert.True(whole.sub(new GradientProjector(10_000, 64, kind, seed: 12).Project(x)).abs().max().ToDouble() > 0.01);
        // Projecting is multiplying by the blocks of R stacked: check against R built whole.
        var r = cat([projector.Block(0, ScalarType.Float64, CPU), projector.Block(1, ScalarType.Float64, CPU), projector.Block(2, ScalarType.Float64, CPU)], 0);
        Assert.Equal(10_000, r.shape[0]);
        Assert.True(whole.sub(x.matmul(r)).abs().max().ToDouble() <= 1e-10);
    }

    [Fact]
    public void Rademacher_entries_are_plus_or_minus_one_over_root_k_and_Gaussian_ones_have_variance_one_over_k()
    {
        var rademacher = new GradientProjector(5000, 100, ProjectionKind.Rademacher, 3).Block(0, ScalarType.Float64, CPU);
        Assert.True(rademacher.abs().sub(0.1).abs().max().ToDouble() <= 1e-15);
        double meanSign = rademacher.sign().mean().ToDouble();
        Assert.True(Math.Abs(meanSign) < 0.01, $"mean sign {meanSign}");
        var gaussian = new GradientProjector(5000, 100, ProjectionKind.Gaussian, 3).Block(0, ScalarType.Float64, CPU);
        double variance = gaussian.var().ToDouble();
        Assert.True(Math.Abs(variance * 100 - 1) < 0.02, $"variance × k = {variance * 100}");
    }

    [Theory]
    [InlineData(ProjectionKind.Gaussian)]
    [InlineData(ProjectionKind.Rademacher)]
    public void Inner_products_are_kept_within_the_Johnson_Lindenstrauss_spread(ProjectionKind kind)
    {
        // 20 unit vectors in P = 3000, projected to k = 2048: each inner product moves by about √(2/k) ≈ 0.031.
        var x = randn(20, 3000, dtype: ScalarType.Float64, generator: new Generator(9));
        x = x.div(x.square().sum(1L, keepdim: true).sqrt());
        var px = new GradientProjector(3000, 2048, kind, seed: 5).Project(x);
        var error = px.matmul(px.t()).sub(x.matmul(x.t())).abs();
        Assert.True(error.max().ToDouble() < 0.15, $"largest inner-product error {error.max().ToDouble():F3}");
        Assert.True(error.mean().ToDouble() < 0.04, $"mean inner-product error {error.mean().ToDouble():F3}");
    }
}
