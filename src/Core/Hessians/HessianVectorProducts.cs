using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>Which curvature an iterative method multiplies by.</summary>
public enum Curvature
{
    /// <summary>The Hessian of the objective (indefinite away from a minimum, and for non-convex models).</summary>
    Hessian,
    /// <summary>The generalised Gauss-Newton Jᵀ ∇²_z L J (+ regulariser): positive semi-definite by construction.</summary>
    [System.Text.Json.Serialization.JsonStringEnumMemberName("ggn")]
    GaussNewton,
}

/// <summary>
/// Products of the objective's curvature with vectors, without forming a P×P matrix. A shard
/// computes <see cref="DataSum"/> over its rows; the coordinator adds the shards' sums, divides
/// by N and adds the regulariser and damping (<see cref="CurvatureOperator"/>).
/// </summary>
public static class HessianVectorProducts
{
    /// <summary>
    /// Σ_i ∇²L(z_i, θ) V (or the Gauss-Newton Σ_i J_iᵀ ∇²_z L_i J_i V) over the rows of
    /// <paramref name="data"/>, for each column of V (P×K): no normaliser, no regulariser.
    /// The Hessian product is Pearlmutter's: the gradient of (∇L·v), one double backward per column.
    /// </summary>
    public static Tensor DataSum(ModelSpec spec, Tensor theta, DataTensors data, Tensor v, Curvature curvature = Curvature.Hessian)
    {
        if (v.dim() != 2 || v.shape[0] != spec.ParameterCount) throw new ArgumentException($"V must be P×K with P = {spec.ParameterCount}, not [{string.Join(",", v.shape)}]");
        return curvature == Curvature.Hessian ? HessianSum(spec, theta, data, v) : GaussNewtonSum(spec, theta, data, v);
    }

    private static Tensor HessianSum(ModelSpec spec, Tensor theta, DataTensors data, Tensor v)
    {
        using var outer = NewDisposeScope();
        using var enabled = enable_grad();
        var t = theta.detach().requires_grad_(true);
        var loss = Objective.PerExampleLoss(spec, t, data).sum();
        // create_graph does not imply retain_graph in TorchSharp (docs/architecture.md): pass both.
        var g = autograd.grad([loss], [t], create_graph: true, retain_graph: true)[0];
        var columns = new List<Tensor>();
        for (long k = 0; k < v.shape[1]; k++)
        {
            var hv = autograd.grad([g.dot(v[.., k])], [t], retain_graph: true)[0];
            columns.Add(hv.detach());
        }
        return stack(columns, 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Jᵀ A J V with A = ∇²_z L the loss's curvature in the outputs z (softmax: diag(p) − ppᵀ;
    /// sigmoid: p(1−p)). J V by the double-backward trick (J V = ∂/∂u of (Jᵀu)·V), Jᵀ(·) by a backward pass.
    /// </summary>
    private static Tensor GaussNewtonSum(ModelSpec spec, Tensor theta, DataTensors data, Tensor v)
    {
        using var outer = NewDisposeScope();
        using var enabled = enable_grad();
        var t = theta.detach().requires_grad_(true);
        var z = Network.Logits(spec, t, data.X); // N × O
        var u = zeros_like(z).requires_grad_(true);
        var jtu = autograd.grad([z], [t], grad_outputs: [u], create_graph: true, retain_graph: true)[0];
        Tensor a;
        using (no_grad()) a = Objectives.OutputCurvature.Probabilities(spec, z).detach();
        var columns = new List<Tensor>();
        for (long k = 0; k < v.shape[1]; k++)
        {
            var jv = autograd.grad([jtu.dot(v[.., k])], [u], retain_graph: true)[0].detach(); // N × O
            var ajv = Objectives.OutputCurvature.Apply(spec, a, jv);
            var col = autograd.grad([z], [t], grad_outputs: [ajv], retain_graph: true)[0];
            columns.Add(col.detach());
        }
        return stack(columns, 1).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The curvature of the whole objective as an operator: (Σ_shards DataSum)/N + λ·mask ⊙ V + δV.
/// Counts the products it makes (each column is one HVP).
/// </summary>
public sealed class CurvatureOperator(Func<Tensor, Tensor> dataSum, long normalizer, Tensor regularizerDiagonal, double damping)
{
    public long Normalizer { get; } = normalizer;
    public double Damping { get; } = damping;
    public long Products { get; private set; }

    /// <summary>(H + δI) V for V of shape P×K.</summary>
    public Tensor Apply(Tensor v)
    {
        Products += v.shape[1];
        using var scope = NewDisposeScope();
        var result = dataSum(v).div((double)Normalizer).add(v.mul(regularizerDiagonal.unsqueeze(1)));
        if (Damping != 0) result.add_(v.mul(Damping));
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// (H_B + δI) V with H_B the curvature of the mean loss over the chosen training rows plus the
    /// regulariser: the stochastic product LiSSA takes a step with.
    /// </summary>
    public static Tensor OnRows(Objective objective, Tensor theta, long[] rows, double damping, Tensor v, Curvature curvature = Curvature.Hessian)
    {
        using var scope = NewDisposeScope();
        var idx = tensor(rows, device: theta.device);
        var batch = new DataTensors(objective.Data.X.index_select(0, idx), objective.Data.Y.index_select(0, idx));
        var op = new CurvatureOperator(w => HessianVectorProducts.DataSum(objective.Spec, theta, batch, w, curvature), rows.Length, objective.RegularizerHessianDiagonal(), damping);
        return op.Apply(v).MoveToOuterDisposeScope();
    }

    /// <summary>The operator of a whole objective on one process (no shards).</summary>
    public static CurvatureOperator Of(Objective objective, Tensor theta, double damping, Curvature curvature = Curvature.Hessian) =>
        new(v => HessianVectorProducts.DataSum(objective.Spec, theta, objective.Data, v, curvature), objective.Normalizer, objective.RegularizerHessianDiagonal(), damping);
}
