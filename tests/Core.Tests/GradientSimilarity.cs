using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Training;
using static TorchSharp.torch;

using Influence.Core.Scoring;

namespace Influence.Core.Tests;

/// <summary>
/// The oracle for the Hessian-free methods, written from their definitions one matrix at a time
/// (the jobs compute them per shard, per batch): in the influence sign convention of
/// docs/conventions.md (negative = proponent: training on z lowered the test loss):
/// TracIn (Pruthi et al. 2020) −Σ_t η_t ∇L(z_test; θ_t)·∇L(z; θ_t) over saved checkpoints;
/// grad-dot −∇L(z_test)·∇L(z) and grad-cos −cos(∇L(z_test), ∇L(z)) at θ̂.
/// </summary>
public static class GradientSimilarity
{
    /// <summary>N×Q TracIn scores of the training rows against the test rows.</summary>
    public static Tensor TracIn(ModelSpec spec, IReadOnlyList<TrainingCheckpoint> checkpoints, DataTensors train, DataTensors test, int batchSize = 512)
    {
        if (checkpoints.Count == 0) throw new ArgumentException("TracIn needs at least one checkpoint");
        var total = zeros(train.Count, test.Count, dtype: spec.ScalarType, device: train.X.device);
        foreach (var c in checkpoints)
        {
            using var scope = NewDisposeScope();
            total.add_(Dots(spec, c.Theta, train, test, batchSize).mul(c.LearningRate));
        }
        return total.neg_();
    }

    /// <summary>N×Q −∇L(z_test)·∇L(z) at θ.</summary>
    public static Tensor GradDot(ModelSpec spec, Tensor theta, DataTensors train, DataTensors test, int batchSize = 512) =>
        Dots(spec, theta, train, test, batchSize).neg_();

    /// <summary>N×Q −cos(∇L(z_test), ∇L(z)) at θ: the norms need the gradients themselves, so each batch is materialised once and serves dots and norms.</summary>
    public static Tensor GradCos(ModelSpec spec, Tensor theta, DataTensors train, DataTensors test, int batchSize = 512)
    {
        using var scope = NewDisposeScope();
        var testGradients = PerExampleGradients.Materialize(spec, theta, test);
        var testNorms = testGradients.square().sum(1L, false).sqrt();
        var result = zeros(train.Count, test.Count, dtype: spec.ScalarType, device: theta.device);
        for (long start = 0; start < train.Count; start += batchSize)
        {
            using var step = NewDisposeScope();
            var g = PerExampleGradients.Materialize(spec, theta, train.Rows(start, Math.Min(batchSize, train.Count - start)));
            var norms = g.square().sum(1L, false).sqrt();
            result.narrow(0, start, g.shape[0]).copy_(g.matmul(testGradients.t()).div(norms.unsqueeze(1).mul(testNorms.unsqueeze(0)).clamp_min(1e-300)));
        }
        return result.neg_().MoveToOuterDisposeScope();
    }

    /// <summary>N×Q ∇L(z_i)·∇L(test_q) at θ, by the batched dot products (no N×P matrix).</summary>
    private static Tensor Dots(ModelSpec spec, Tensor theta, DataTensors train, DataTensors test, int batchSize)
    {
        using var scope = NewDisposeScope();
        var testGradients = PerExampleGradients.Materialize(spec, theta, test);
        using var queries = new PerExampleGradients.Queries(spec, testGradients);
        var result = zeros(train.Count, test.Count, dtype: spec.ScalarType, device: theta.device);
        for (long start = 0; start < train.Count; start += batchSize)
        {
            using var step = NewDisposeScope();
            var batch = train.Rows(start, Math.Min(batchSize, train.Count - start));
            result.narrow(0, start, batch.Count).copy_(PerExampleGradients.DotWithQueries(spec, theta, batch, queries));
        }
        return result.MoveToOuterDisposeScope();
    }
}
