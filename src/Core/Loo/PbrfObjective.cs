using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Loo;

/// <summary>
/// The proximal Bregman response function of Bae et al. 2022 for removing example j, the objective
/// influence functions actually approximate:
/// <c>(1/N) Σ_i D(f_θ(x_i), f_θ̂(x_i)) − (1/N) L(f_θ(x_j), y_j) + R_D(θ, θ̂) + (δ/2)‖θ − θ̂‖²</c>,
/// with D the Bregman divergence of the loss in the network's outputs (for softmax cross-entropy
/// <c>LSE(z) − LSE(ẑ) − softmax(ẑ)ᵀ(z − ẑ)</c>; for the sigmoid the same with softplus) and δ the
/// damping. The weight decay enters through its own Bregman divergence
/// <c>R_D = (λ/2)‖mask ⊙ (θ − θ̂)‖²</c>, so that PBRF's Hessian at θ̂ is the Gauss–Newton Hessian
/// plus λ·mask plus δ: the matrix the damped influence inverts. With λ = 0 this is Bae et al.'s
/// formula verbatim. For logistic regression (outputs linear in θ) and δ = 0 the PBRF equals
/// leave-one-out up to the term ∇F(θ̂)ᵀθ, which vanishes at the optimum.
/// </summary>
public sealed class PbrfObjective : ITrainingObjective, IDisposable
{
    private readonly DataTensors data;
    private readonly Tensor thetaHat;
    private readonly Tensor logitsHat;
    private readonly Tensor mask;
    private readonly DataTensors removedRow;
    private readonly double damping;

    public PbrfObjective(ModelSpec spec, DataTensors train, int removed, Tensor thetaHat, double damping)
    {
        if (!(damping >= 0) || double.IsInfinity(damping)) throw new ArgumentOutOfRangeException(nameof(damping));
        Spec = spec;
        data = train;
        this.damping = damping;
        this.thetaHat = thetaHat.detach().clone();
        using (no_grad()) logitsHat = Network.Logits(spec, this.thetaHat, train.X).detach();
        mask = Network.RegularizationMask(spec, thetaHat.device);
        removedRow = train.Rows(removed, 1);
    }

    public ModelSpec Spec { get; }
    public long RowCount => data.Count;

    public Tensor Value(Tensor theta)
    {
        long n = data.Count;
        var logits = Network.Logits(Spec, theta, data.X);
        var divergence = Bregman(logits, logitsHat).sum().div(n);
        var removedLoss = Objective.PerExampleLoss(Spec, theta, removedRow).sum().div(n);
        var diff = theta.sub(thetaHat);
        var proximity = diff.mul(mask).square().sum().mul(Spec.L2 / 2).add(diff.square().sum().mul(damping / 2));
        return divergence.sub(removedLoss).add(proximity);
    }

    /// <summary>Per-row Bregman divergence of the loss in the logits between z and ẑ.</summary>
    private Tensor Bregman(Tensor z, Tensor zHat)
    {
        if (Spec.IsBinary)
        {
            var a = z.squeeze(1);
            var b = zHat.squeeze(1);
            return nn.functional.softplus(a).sub(nn.functional.softplus(b)).sub(b.sigmoid().mul(a.sub(b)));
        }
        return z.logsumexp(1, false).sub(zHat.logsumexp(1, false)).sub(zHat.softmax(1).mul(z.sub(zHat)).sum(1));
    }

    public (double Value, Tensor Gradient) ValueAndGradient(Tensor theta) => Objective.ValueAndGradient(Value, theta);

    public Tensor Hessian(Tensor theta) => ExactHessian.OfFunction(Value, theta);

    /// <summary>With δ = 0 the softmax bias shift stays flat (as in the training objective); δ > 0 removes it.</summary>
    public Tensor? FlatDirections(Device device) => damping > 0 ? null : Network.FlatDirections(Spec, device);

    public void Dispose()
    {
        thetaHat.Dispose();
        logitsHat.Dispose();
        mask.Dispose();
    }
}
