using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Scoring;

/// <summary>What one shard of the training set contributes to a score job.</summary>
/// <param name="Influence">Q×n row-major: I(z_{first+j}, test_q) = −∇L_testᵀ H⁻¹ ∇L(z).</param>
/// <param name="SelfInfluence">n values ∇L(z)ᵀ H⁻¹ ∇L(z), or null when not asked for.</param>
public sealed record ShardScores(int FirstIndex, int Count, int QueryCount, double[] Influence, double[]? SelfInfluence, TopKLists TopK, long GradientsComputed);

/// <summary>Scores a contiguous range of training examples against preconditioned queries.</summary>
public static class ShardScorer
{
    /// <param name="preconditionedQueries">Q×P: H⁻¹ ∇L(test_q) for each query.</param>
    /// <param name="inverse">The factorised Hessian, for self-influence; null skips it.</param>
    public static ShardScores Score(ModelSpec spec, Tensor theta, DataTensors rows, int firstIndex, Tensor preconditionedQueries,
        HessianInverse? inverse, int topK, int batchSize = 512, IProgress<long>? progress = null)
    {
        int n = (int)rows.Count;
        int q = (int)preconditionedQueries.shape[0];
        var influence = new double[(long)q * n];
        var self = inverse is null ? null : new double[n];
        using var queries = new PerExampleGradients.Queries(spec, preconditionedQueries.to(spec.ScalarType));
        Tensor? buffer = inverse is null ? null : empty(Math.Min(batchSize, n), spec.ParameterCount, dtype: spec.ScalarType, device: theta.device);
        try
        {
            for (int start = 0; start < n; start += batchSize)
            {
                using var scope = NewDisposeScope();
                int len = Math.Min(batchSize, n - start);
                using var batch = rows.Rows(start, len);
                // n×Q dot products, negated: I = −qᵀg.
                var dots = PerExampleGradients.DotWithQueries(spec, theta, batch, queries).to(ScalarType.Float64).cpu();
                var block = dots.t().contiguous().neg().data<double>().ToArray(); // Q × len
                for (int k = 0; k < q; k++)
                    Array.Copy(block, (long)k * len, influence, (long)k * n + start, len);
                if (inverse is not null)
                {
                    var g = buffer!.narrow(0, 0, len);
                    PerExampleGradients.Materialize(spec, theta, batch, g);
                    var s = inverse.QuadraticForms(g).to(ScalarType.Float64).cpu().data<double>().ToArray();
                    Array.Copy(s, 0, self!, start, len);
                }
                progress?.Report(len);
            }
        }
        finally
        {
            buffer?.Dispose();
        }
        var top = TopKLists.FromBlock(influence, q, n, firstIndex, topK);
        return new ShardScores(firstIndex, n, q, influence, self, top, n);
    }

    /// <summary>Per-example gradients of the given rows (Q×P), e.g. of the test points.</summary>
    public static Tensor Gradients(ModelSpec spec, Tensor theta, DataTensors rows) =>
        PerExampleGradients.Materialize(spec, theta, rows);
}
