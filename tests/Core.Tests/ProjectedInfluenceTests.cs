using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>TRAK-style projected influence against closed forms on the full gradients.</summary>
public class ProjectedInfluenceTests
{
    [Theory]
    [InlineData(ProjectionKind.Gaussian)]
    [InlineData(ProjectionKind.Rademacher)]
    public void With_k_equal_to_P_and_no_damping_it_is_the_empirical_Fisher_influence_for_any_projection(ProjectionKind kind)
    {
        // Binary logistic regression: P = 5 < N = 40, so GᵀG/N is invertible.
        using var p = Problem.Make("binary logreg", n: 40);
        long n = p.Data.Count, size = p.Spec.ParameterCount;
        var g = PerExampleGradients.Materialize(p.Spec, p.Theta, p.Data);
        var projector = new GradientProjector(size, (int)size, kind, seed: 4);
        var phi = ProjectedFeatures.Of(p.Spec, p.Theta, p.Data, projector, batchSize: 7);
        using var curvature = new ProjectedCurvature(phi.t().matmul(phi), n, damping: 1e-12);
        var queries = phi.narrow(0, 0, 3);
        var trak = phi.matmul(curvature.Precondition(queries).t()).neg();

        var fisher = g.t().matmul(g).div(n);
        var expected = g.matmul(linalg.solve(fisher, g.narrow(0, 0, 3).t())).neg();
        Assert.True(trak.sub(expected).abs().max().ToDouble() <= 1e-7 * expected.abs().max().ToDouble(),
            $"max difference {trak.sub(expected).abs().max().ToDouble():E2} (scale {expected.abs().max().ToDouble():E2})");
        // The normaliser matters: without 1/N the scores would be N times smaller.
        Assert.True(trak.div(expected).mean().ToDouble() is > 0.99 and < 1.01);
    }

    [Fact]
    public void Self_influence_and_the_automatic_damping_follow_their_definitions()
    {
        using var p = Problem.Make("mlp tanh weights", n: 30);
        var projector = new GradientProjector(p.Spec.ParameterCount, 8, ProjectionKind.Rademacher, seed: 1);
        var phi = ProjectedFeatures.Of(p.Spec, p.Theta, p.Data, projector, batchSize: 64);
        var gram = phi.t().matmul(phi);
        double auto = ProjectedCurvature.AutoDamping(gram, p.Data.Count);
        Assert.Equal(0.1 * linalg.eigvalsh(gram.div(p.Data.Count)).mean().ToDouble(), auto, 1e-12);

        using var curvature = new ProjectedCurvature(gram, p.Data.Count, auto);
        var k = gram.div(p.Data.Count).add(eye(8, dtype: ScalarType.Float64).mul(auto));
        var expected = phi.mul(linalg.solve(k, phi.t()).t()).sum(1L, false);
        Assert.True(curvature.QuadraticForms(phi).sub(expected).abs().max().ToDouble() <= 1e-10 * expected.abs().max().ToDouble());
        Assert.Equal(auto, curvature.Damping);
    }

    [Fact]
    public void Without_damping_a_rank_deficient_Gram_is_refused_with_advice()
    {
        // 3 rows, k = 8: ΦᵀΦ has rank 3.
        using var p = Problem.Make("mlp tanh weights", n: 3);
        var projector = new GradientProjector(p.Spec.ParameterCount, 8, ProjectionKind.Gaussian, seed: 1);
        var phi = ProjectedFeatures.Of(p.Spec, p.Theta, p.Data, projector, batchSize: 64);
        var e = Assert.Throws<InvalidOperationException>(() => new ProjectedCurvature(phi.t().matmul(phi), 3, damping: 0));
        Assert.Contains("--damping auto", e.Message);
    }
}
