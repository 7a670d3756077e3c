using TorchSharp;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Loo;

/// <summary>
/// newton-step for a group (the LDS setting): removing the rows R, one Newton step of F₋R from θ̂
/// with its own curvature, Δθ = (H + δI − (1/N)Σ_{j∈R}∇²L(z_j))⁻¹ (1/N)Σ_{j∈R} g_j, and the test
/// loss evaluated at θ̂ + Δθ (or linearised). The first-order relative is the sum of the rows'
/// influences; the Woodbury form of one row is no use for half the data (rank |R|·C), so Δθ comes
/// for logistic regression from conjugate gradient preconditioned by (H + δI)⁺ (which the matrix
/// differs from by the removed rows' curvature only), its products closed-form sums over the kept
/// rows. A network's (up to the exact Hessian's size) matrix is the exact H + δI less the removed
/// rows' Gauss-Newton terms J_jᵀA_jJ_j/N, as for one row, written out and solved directly.
/// </summary>
public sealed class GroupNewtonStep : IDisposable
{
    /// <summary>CG stops at ‖r‖ ≤ this · ‖b‖: far below what the retrains resolve.</summary>
    public const double Tolerance = 1e-10;
    public const int MaxIterations = 500;

    private readonly ModelSpec spec;
    private readonly DataTensors train;
    private readonly Tensor theta, inputs, labels, regularizer;
    // Logistic regression's probabilities at θ̂; a network's H + δI.
    private readonly Tensor? probabilities, dampedHessian;
    private readonly Tensor? flat;
    // Logistic regression's CG preconditioner, (H + δI)⁺.
    private readonly HessianInverse? inverse;
    private readonly double damping;

    /// <param name="train">All N training rows.</param>
    public GroupNewtonStep(ModelSpec spec, Tensor theta, DataTensors train, double damping)
    {
        if (!spec.IsLogisticRegression && spec.ParameterCount > ExactHessian.MaxParameters)
            throw new ArgumentException(FormattableString.Invariant(
                $"the group newton-step on a network uses its exact Hessian, and {spec.Describe()} has {spec.ParameterCount:N0} parameters (the limit is {ExactHessian.MaxParameters:N0})"));
        using var scope = NewDisposeScope();
        spec = spec with { Precision = Precision.Float64 };
        this.spec = spec;
        this.damping = damping;
        this.theta = theta.to(ScalarType.Float64).detach().DetachFromDisposeScope();
        var device = this.theta.device;
        inputs = train.X.to(ScalarType.Float64).DetachFromDisposeScope();
        if (spec.IsLogisticRegression)
            using (no_grad()) probabilities = OutputCurvature.Probabilities(spec, Network.Logits(spec, this.theta, inputs)).DetachFromDisposeScope();
        regularizer = Objective.RegularizerHessianDiagonal(spec, device).to(ScalarType.Float64).DetachFromDisposeScope();
        flat = Network.FlatDirections(spec, device)?.to(ScalarType.Float64).DetachFromDisposeScope();
        // The labels in the float64 model's type (a sigmoid's are float), kept past this scope.
        labels = (train.Y.dtype == ScalarType.Int64 ? train.Y.alias() : train.Y.to(ScalarType.Float64)).DetachFromDisposeScope();
        this.train = new DataTensors(inputs, labels);
        var h = ExactHessian.Of(new Objective(spec, this.train, train.Count, device), this.theta);
        if (spec.IsLogisticRegression)
            inverse = HessianInverse.Factorize(h, damping, flat, computeSpectrum: false).DetachFromDisposeScope();
        else
        {
            h.diagonal().add_(damping);
            dampedHessian = h.DetachFromDisposeScope();
        }
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
        if (!spec.IsLogisticRegression) return NetworkStep(removed, b);
        var (x, reports) = ConjugateGradient.Solve(LogisticProducts(kept), b, Tolerance, MaxIterations, flat, inverse!.Solve);
        return (x.squeeze(1).MoveToOuterDisposeScope(), reports[0]);
    }

    /// <summary>(H + δI − (1/N)Σ_{j∈R}∇²L(z_j))V for logistic regression: the kept rows' closed-form curvature, the regulariser and δ.</summary>
    private Func<Tensor, Tensor> LogisticProducts(Tensor kept) => v => LogisticCurvature.DataSum(spec, probabilities!, inputs, v, kept).div(train.Count)
        .add(v.mul(regularizer.unsqueeze(1))).add(v, alpha: damping);

    /// <summary>
    /// A network's step by a direct solve with H + δI − (1/N)Σ_{j∈R}J_jᵀA_jJ_j written out (P ≤ 12,000):
    /// unlike logistic regression's, this matrix can be indefinite (removing half the rows' Gauss-Newton
    /// terms from a Hessian whose other terms are negative), where CG stops; the Newton step is still
    /// defined, and the report says the curvature was not positive definite. The removed rows' logits'
    /// Jacobians come in batches; flat directions (an unpenalised softmax bias) are fixed by adding uuᵀ.
    /// </summary>
    private (Tensor Step, SolveReport Report) NetworkStep(IReadOnlyList<int> removed, Tensor b)
    {
        const int batch = 64;
        long p = spec.ParameterCount, n = train.Count;
        var matrix = dampedHessian!.clone();
        for (int start = 0; start < removed.Count; start += batch)
        {
            using var inner = NewDisposeScope();
            using var index = tensor(removed.Skip(start).Take(batch).Select(i => (long)i).ToArray(), device: theta.device);
            var x = inputs.index_select(0, index);
            var jacobians = PerExampleGradients.Jacobians(spec, theta, x);                                   // B × C × P
            Tensor curvature;
            using (no_grad()) curvature = OutputCurvature.Matrix(spec, Network.Logits(spec, theta, x));     // B × C × C
            matrix.sub_(jacobians.view(-1, p).t().matmul(curvature.bmm(jacobians).view(-1, p)).div_(n));
        }
        if (flat is not null) matrix.add_(flat.matmul(flat.t()));
        bool positiveDefinite = linalg.cholesky_ex(matrix).info.ToInt64() == 0;
        var step = Network.WithoutFlat(linalg.solve(matrix, b), flat);
        double residual = matrix.matmul(step).sub(b).norm().ToDouble() / Math.Max(b.norm().ToDouble(), double.Epsilon);
        return (step.squeeze(1).MoveToOuterDisposeScope(), new SolveReport(0, residual, residual <= 1e-6, !positiveDefinite));
    }

    /// <summary>
    /// The predicted change of each test point's loss when <paramref name="removed"/> are left out:
    /// L(θ̂ + Δθ) − L(θ̂), or ∇L_testᵀΔθ when <paramref name="linearised"/>.
    /// </summary>
    public (double[] Change, SolveReport Report) Predict(IReadOnlyList<int> removed, DataTensors test, bool linearised)
    {
        using var scope = NewDisposeScope();
        var (step, report) = Step(removed);
        test = new DataTensors(test.X.to(ScalarType.Float64), spec.IsBinary ? test.Y.to(ScalarType.Float64) : test.Y);
        var change = linearised
            ? ShardScorer.Gradients(spec, theta, test).to(ScalarType.Float64).matmul(step)
            : Objective.PerExampleLoss(spec, theta.add(step), test).sub(Objective.PerExampleLoss(spec, theta, test));
        return (change.to(ScalarType.Float64).cpu().data<double>().ToArray(), report);
    }

    public void Dispose()
    {
        inverse?.Dispose();
        theta.Dispose();
        probabilities?.Dispose();
        dampedHessian?.Dispose();
        regularizer.Dispose();
        flat?.Dispose();
        inputs.Dispose();
        labels.Dispose();
    }
}
