using Influence.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Objectives;

/// <summary>
/// The loss's curvature in the model's outputs z (the logits), A = ∇²_z L: softmax cross-entropy
/// diag(p) − ppᵀ, sigmoid p(1 − p). The one definition behind exact Hessians, Gauss-Newton
/// products and the leave-one-out fast path.
/// </summary>
public static class OutputCurvature
{
    /// <summary>p: softmax (or sigmoid, for a binary head) of logits (…, O).</summary>
    public static Tensor Probabilities(ModelSpec spec, Tensor logits) => spec.IsBinary ? logits.sigmoid() : logits.softmax(-1);

    /// <summary>A as matrices: logits (…, O) → (…, O, O); a binary head's is (…, 1, 1).</summary>
    public static Tensor Matrix(ModelSpec spec, Tensor logits)
    {
        var p = Probabilities(spec, logits);
        return spec.IsBinary ? p.mul(p.neg().add(1)).unsqueeze(-1) : p.diag_embed().sub(p.unsqueeze(-1).mul(p.unsqueeze(-2)));
    }

    /// <summary>A v without forming A: p from <see cref="Probabilities"/> (…, O), v (…, O).</summary>
    public static Tensor Apply(ModelSpec spec, Tensor p, Tensor v) =>
        spec.IsBinary ? v.mul(p.mul(p.neg().add(1))) : p.mul(v).sub(p.mul(p.mul(v).sum(-1L, keepdim: true)));
}
