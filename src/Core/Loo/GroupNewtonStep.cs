using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Loo;

/// <summary>
/// newton-step for a group (the LDS setting), logistic regression: removing the rows R, one Newton
/// step of F₋R from θ̂ with its own curvature, Δθ = (H + δI − (1/N)Σ_{j∈R}∇²L(z_j))⁻¹ (1/N)Σ_{j∈R} g_j,
/// and the test loss evaluated at θ̂ + Δθ (or linearised). The first-order relative is the sum of
/// the rows' influences; the Woodbury form of one row is no use for half the data (rank |R|·C), so
/// Δθ comes from conjugate gradient on closed-form curvature products over the kept rows,
/// preconditioned by (H + δI)⁺ (which it differs from by the removed rows' curvature only).
/// </summary>
public sealed class GroupNewtonStep : IDisposable
{
    /// <summary>CG stops at ‖r‖ ≤ this · ‖b‖: far below what the retrains resolve.</summary>
    public const double Tolerance = 1e-10;
    public const int MaxIterations = 500;

    private readonly ModelSpec spec;
    private readonly DataTensors train;
    private readonly Tensor theta, inputs, probabilities, regularizer;
    private readonly Tensor? flat;
    private readonly HessianInverse inverse;
    private readonly double damping;

    /// <param name="train">All N training rows.</param>
    public GroupNewtonStep(ModelSpec spec, Tensor theta, DataTensors train, double damping)
    {
        if (!spec.IsLogisticRegression) throw new ArgumentException("the group newton-step is implemented for logistic regression");
        using var scope = NewDisposeScope();
        this.spec = spec;
        this.train = train;
        this.damping = damping;
        this.theta = theta.to(ScalarType.Float64).detach().DetachFromDisposeScope();
        var device = this.theta.device;
        inputs = train.X.to(ScalarType.Float64).DetachFromDisposeScope();
        using (no_grad()) probabilities = OutputCurvature.Probabilities(spec, Network.Logits(spec, this.theta, train.X)).to(ScalarType.Float64).DetachFromDisposeScope();
        regularizer = Objective.RegularizerHessianDiagonal(spec, device).to(ScalarType.Float64).DetachFromDisposeScope();
        flat = Network.FlatDirections(spec, device)?.to(ScalarType.Float64).DetachFromDisposeScope();
        var h = ExactHessian.Of(new Objective(spec, train, train.Count, device), this.theta);
        inverse = HessianInverse.Factorize(h, damping, flat, computeSpectrum: false).DetachFromDisposeScope();
    }

    /// <summary>Δθ of removing <paramref name="removed"/> (P, float64) and how CG ended.</summary>
    public (Tensor Step, SolveReport Report) Step(IReadOnlyList<int> removed)
    {
        using var scope = NewDisposeScope();
        long n = train.Count;
        var device = theta.device;
        var removedMask = zeros(n, dtype: ScalarType.Float64, device: device);
        removedMask.index_fill_(0, tensor(removed.Select(i => (long)i).ToArray(), device: device), 1.0);
        var kept = removedMask.neg().add(1);
        // b = (1/N) Σ_{j∈R} g_j: the gradient of the removed rows' loss sum, over N.
        var b = Objective.ValueAndGradient(t => Objective.PerExampleLoss(spec, t, train).mul(removedMask).sum().div(n), theta).Gradient.unsqueeze(1);
        Tensor Apply(Tensor v) => LogisticCurvature.DataSum(spec, probabilities, inputs, v, kept).div(n)
            .add(v.mul(regularizer.unsqueeze(1))).add(v, alpha: damping);
        var (x, reports) = ConjugateGradient.Solve(Apply, b, Tolerance, MaxIterations, flat, inverse.Solve);
        return (x.squeeze(1).MoveToOuterDisposeScope(), reports[0]);
    }

    /// <summary>
    /// The predicted change of each test point's loss when <paramref name="removed"/> are left out:
    /// L(θ̂ + Δθ) − L(θ̂), or ∇L_testᵀΔθ when <paramref name="linearised"/>.
    /// </summary>
    public (double[] Change, SolveReport Report) Predict(IReadOnlyList<int> removed, DataTensors test, bool linearised)
    {
        using var scope = NewDisposeScope();
        var (step, report) = Step(removed);
        var change = linearised
            ? ShardScorer.Gradients(spec, theta, test).to(ScalarType.Float64).matmul(step)
            : Objective.PerExampleLoss(spec, theta.add(step), test).sub(Objective.PerExampleLoss(spec, theta, test));
        return (change.to(ScalarType.Float64).cpu().data<double>().ToArray(), report);
    }

    public void Dispose()
    {
        inverse.Dispose();
        theta.Dispose();
        probabilities.Dispose();
        regularizer.Dispose();
        flat?.Dispose();
        inputs.Dispose();
    }
}
