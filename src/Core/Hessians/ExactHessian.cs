using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>
/// Exact Hessians for models small enough to hold a P×P matrix (P up to <see cref="MaxParameters"/>).
/// Shards compute <see cref="DataSum"/> over their rows; the coordinator adds them, divides by N
/// and adds the regulariser (<see cref="Assemble"/>).
/// </summary>
public static class ExactHessian
{
    public const long MaxParameters = 12_000;

    /// <summary>Rows per block in <see cref="AnalyticLogisticSum"/>.</summary>
    private const long BlockRows = 8192;

    /// <summary>Σ_i w_i ∇²_θ L(z_i, θ) over the rows of <paramref name="data"/> (w = 1 by default): no normaliser, no regulariser.</summary>
    /// <param name="cancel">Checked between the P backward passes of a network's Hessian.</param>
    /// <param name="into">A P×P sum (θ's dtype) to add to in place and return, so that a sum over chunks of rows holds one P×P matrix, not two; a new one when null.</param>
    public static Tensor DataSum(ModelSpec spec, Tensor theta, DataTensors data, Tensor? weights = null, CancellationToken cancel = default, Tensor? into = null)
    {
        if (spec.ParameterCount > MaxParameters)
            throw new InvalidOperationException($"an exact Hessian needs {spec.ParameterCount}² entries; the limit is {MaxParameters} parameters (use an iterative method)");
        return spec.IsLogisticRegression ? AnalyticLogisticSum(spec, theta, data, weights, into) : DoubleBackwardSum(spec, theta, data, weights, cancel, into);
    }

    /// <summary>H = DataSum/N + diag(λ·mask), the Hessian of the objective, made in place of <paramref name="dataSum"/> (which it returns): a P×P copy is 493 MB at Fashion-MNIST's P.</summary>
    public static Tensor Assemble(Tensor dataSum, long normalizer, Tensor regularizerDiagonal)
    {
        dataSum.div_(normalizer);
        dataSum.diagonal().add_(regularizerDiagonal);
        return dataSum;
    }

    /// <summary>Hessian of the whole objective at θ, on one process (no shards).</summary>
    public static Tensor Of(Objective objective, Tensor theta)
    {
        var sum = DataSum(objective.Spec, theta, objective.Data, objective.ExampleWeights);
        using var reg = objective.RegularizerHessianDiagonal();
        return Assemble(sum, objective.Normalizer, reg);
    }

    /// <summary>
    /// Logistic regression in closed form. With per-example output curvature
    /// A_i = diag(p_i) − p_i p_iᵀ (softmax) or p_i(1 − p_i) (sigmoid), the block of classes (c, d) is
    /// W_c W_d: Σ A_i[c,d] x_i x_iᵀ, W_c b_d: Σ A_i[c,d] x_i, b_c b_d: Σ A_i[c,d].
    /// </summary>
    public static Tensor AnalyticLogisticSum(ModelSpec spec, Tensor theta, DataTensors data, Tensor? weights = null, Tensor? into = null)
    {
        if (!spec.IsLogisticRegression) throw new ArgumentException("the closed form is for logistic regression only");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        int c = spec.OutputDim;
        long d = spec.InputDim, n = data.Count;
        var h = into ?? zeros(spec.ParameterCount, spec.ParameterCount, dtype: spec.ScalarType, device: theta.device);
        long biasStart = c * d;
        // A block of rows at a time: each class pair's weighted copy of the inputs is one block's
        // (51 MB at 8,192 Fashion-MNIST rows), not the whole set's (377 MB at 60,000).
        for (long start = 0; start < n; start += BlockRows)
        {
            using var block = NewDisposeScope();
            long len = Math.Min(BlockRows, n - start);
            var x = data.X.narrow(0, start, len);
            var curvature = Objectives.OutputCurvature.Matrix(spec, Network.Logits(spec, theta, x)); // len × C × C
            if (weights is not null) curvature = curvature.mul(weights.narrow(0, start, len).to(spec.ScalarType).view(-1, 1, 1));
            for (int ci = 0; ci < c; ci++)
            {
                for (int di = ci; di < c; di++)
                {
                    using var inner = NewDisposeScope();
                    var w = curvature.select(1, ci).select(1, di);
                    var weighted = x.mul(w.unsqueeze(1));
                    var ww = x.t().matmul(weighted);
                    var wb = weighted.sum(0L, false);
                    var bb = w.sum();
                    // Added, not copied: h holds earlier rows' sum. On the diagonal (ci = di) the
                    // W_c b_c column is one place, added once.
                    h.narrow(0, ci * d, d).narrow(1, di * d, d).add_(ww);
                    h.narrow(0, ci * d, d).select(1, biasStart + di).add_(wb);
                    h[biasStart + ci, biasStart + di].add_(bb);
                    if (ci != di)
                    {
                        h.narrow(0, di * d, d).narrow(1, ci * d, d).add_(ww.t());
                        h.narrow(0, di * d, d).select(1, biasStart + ci).add_(wb);
                        h[biasStart + di, biasStart + ci].add_(bb);
                    }
                }
            }
        }
        // The W-b blocks were summed in the rows of W; mirror them into the rows of b.
        h.narrow(0, biasStart, c).copy_(h.narrow(1, biasStart, c).t().clone());
        return into is null ? h.MoveToOuterDisposeScope() : h;
    }

    /// <summary>Any model: row k of the Hessian is ∂(∇L)_k/∂θ by double backward (P backward passes).</summary>
    public static Tensor DoubleBackwardSum(ModelSpec spec, Tensor theta, DataTensors data, Tensor? weights = null, CancellationToken cancel = default, Tensor? into = null) =>
        OfFunction(t =>
        {
            var losses = Objective.PerExampleLoss(spec, t, data);
            return weights is null ? losses.sum() : losses.mul(weights.to(spec.ScalarType)).sum();
        }, theta, cancel, into);

    /// <summary>The Hessian of any scalar function of θ by double backward (P backward passes), added to <paramref name="into"/> when given.</summary>
    public static Tensor OfFunction(Func<Tensor, Tensor> value, Tensor theta, CancellationToken cancel = default, Tensor? into = null)
    {
        long p = theta.shape[0];
        if (p > MaxParameters) throw new InvalidOperationException($"an exact Hessian needs {p}² entries; the limit is {MaxParameters} parameters");
        using var scope = NewDisposeScope();
        using var enabled = enable_grad();
        var t = theta.detach().requires_grad_(true);
        // create_graph does not imply retain_graph in TorchSharp: pass both.
        var g = autograd.grad([value(t)], [t], retain_graph: true, create_graph: true)[0];
        var h = into ?? zeros(p, p, dtype: theta.dtype, device: theta.device);
        for (long k = 0; k < p; k++)
        {
            cancel.ThrowIfCancellationRequested();
            using var row = NewDisposeScope();
            h[k].add_(autograd.grad([g[k]], [t], retain_graph: true)[0]);
        }
        return into is null ? h.MoveToOuterDisposeScope() : h;
    }
}
