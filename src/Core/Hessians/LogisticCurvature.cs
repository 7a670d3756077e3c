using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>
/// Logistic regression's curvature without a P×P matrix. With logits z_i = W x_i + b and the
/// loss's curvature A_i in the logits (<see cref="OutputCurvature"/>), the data term of the Hessian
/// is Σ_i w_i A_i ⊗ x̃_i x̃_iᵀ (x̃ = [x, 1]). A product with V is two passes over the inputs (the
/// logit change U = X V_W + v_b, then A U back through Xᵀ): the cost of one gradient, so a
/// Newton-CG step at 60,000 rows costs seconds where the explicit Hessian costs a minute.
/// </summary>
public static class LogisticCurvature
{
    /// <summary>Σ_i w_i ∇²L(z_i, θ) V for V (P×K) in the flat layout (W row-major, then b): no normaliser, no regulariser.</summary>
    public static Tensor DataSum(ModelSpec spec, Tensor theta, DataTensors data, Tensor v, Tensor? weights = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var p = OutputCurvature.Probabilities(spec, Network.Logits(spec, theta, data.X));
        return DataSum(spec, p, data.X, v, weights).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The same product from the model's probabilities p (N × C) at θ, in the precision of
    /// <paramref name="x"/> (a float32 copy halves the memory traffic of Newton-CG's products);
    /// the result is in V's precision.
    /// </summary>
    public static Tensor DataSum(ModelSpec spec, Tensor probabilities, Tensor x, Tensor v, Tensor? weights = null)
    {
        if (!spec.IsLogisticRegression) throw new ArgumentException("the closed-form curvature product is for logistic regression only");
        if (v.dim() != 2 || v.shape[0] != spec.ParameterCount) throw new ArgumentException($"V must be P×K with P = {spec.ParameterCount}");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long n = x.shape[0], d = spec.InputDim, c = spec.OutputDim, k = v.shape[1];
        var p = probabilities.to(x.dtype);
        var vx = v.to(x.dtype);
        var vw = vx.narrow(0, 0, c * d).view(c, d, k).permute(1, 0, 2).reshape(d, c * k);
        var vb = vx.narrow(0, c * d, c);                                             // C × K
        var u = x.matmul(vw).view(n, c, k).add(vb.unsqueeze(0));                     // N × C × K: logit changes
        var au = OutputCurvature.Apply(spec, p.unsqueeze(2).expand(n, c, k).transpose(1, 2), u.transpose(1, 2)).transpose(1, 2); // A_i u_i
        if (weights is not null) au = au.mul(weights.to(x.dtype).view(n, 1, 1));
        var hw = au.reshape(n, c * k).t().matmul(x).view(c, k, d).permute(0, 2, 1).reshape(c * d, k);
        var hb = au.sum(0L, false);
        return cat([hw, hb], 0).to(v.dtype).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A Kronecker-factored approximation of logistic regression's Hessian, used as a preconditioner:
/// (1/N) Σ w_i A_i ⊗ x̃_i x̃_iᵀ ≈ Ā ⊗ S with Ā = (1/N) Σ w_i A_i and S = Σ w_i x̃ x̃ᵀ / Σ w_i (K-FAC
/// for one layer), plus γI. Its inverse is exact in the two factors' eigenbases: a solve costs two
/// small rotations, and building it is one (D+1)² Gram matrix and two small eigendecompositions.
/// </summary>
public sealed class LogisticKfacPreconditioner : IDisposable
{
    private readonly long c, d;
    private readonly Tensor qa, qs, denominator; // C×C, (D+1)×(D+1), C×(D+1)

    /// <param name="gamma">Added to every eigenvalue of Ā ⊗ S: the regulariser's λ (and a floor where λ = 0).</param>
    public LogisticKfacPreconditioner(ModelSpec spec, Tensor theta, DataTensors data, long normalizer, double gamma, Tensor? weights = null, Tensor? inputGram = null)
    {
        if (!spec.IsLogisticRegression) throw new ArgumentException("the Kronecker preconditioner here is for logistic regression only");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        c = spec.OutputDim;
        d = spec.InputDim;
        var w = weights?.to(spec.ScalarType);
        var a = OutputCurvature.Matrix(spec, Network.Logits(spec, theta, data.X)); // N × C × C
        if (w is not null) a = a.mul(w.view(-1, 1, 1));
        var aBar = a.sum(0L, false).div((double)normalizer);
        var s = inputGram ?? InputGram(data, w);
        var (la, va) = linalg.eigh(aBar);
        var (ls, vs) = linalg.eigh(s);
        var products = la.clamp_min(0).unsqueeze(1).mul(ls.clamp_min(0).unsqueeze(0));
        double floor = Math.Max(gamma, 1e-10 * Math.Max(products.max().ToDouble(), 1e-300));
        qa = va.MoveToOuterDisposeScope();
        qs = vs.MoveToOuterDisposeScope();
        denominator = products.add(floor).MoveToOuterDisposeScope();
    }

    /// <summary>S = Σ w_i x̃ x̃ᵀ / Σ w_i: independent of θ, so a polish builds it once for all its Newton steps.</summary>
    public static Tensor InputGram(DataTensors data, Tensor? weights = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = data.X;
        var xAug = cat([x, ones(x.shape[0], 1, dtype: x.dtype, device: x.device)], 1);
        var weighted = weights is null ? xAug : xAug.mul(weights.to(x.dtype).unsqueeze(1));
        double total = weights is null ? x.shape[0] : weights.sum().ToDouble();
        return xAug.t().matmul(weighted).div(total).MoveToOuterDisposeScope();
    }

    /// <summary>(Ā ⊗ S + γI)⁻¹ R for R (P×K) in the flat layout.</summary>
    public Tensor Apply(Tensor r)
    {
        using var scope = NewDisposeScope();
        long k = r.shape[1];
        // Flat → C × (D+1) × K: class c's row is [W_c, b_c].
        var m = cat([r.narrow(0, 0, c * d).view(c, d, k), r.narrow(0, c * d, c).view(c, 1, k)], 1);
        var rotated = einsum("ca,cek,ef->afk", qa, m, qs).div(denominator.unsqueeze(2));
        var back = einsum("ac,cek,fe->afk", qa, rotated, qs);
        return cat([back.narrow(1, 0, d).reshape(c * d, k), back.narrow(1, d, 1).reshape(c, k)], 0).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        qa.Dispose();
        qs.Dispose();
        denominator.Dispose();
    }
}
