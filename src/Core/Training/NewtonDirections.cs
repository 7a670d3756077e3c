using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Training;

/// <summary>
/// Where the full-batch trainer's Newton steps come from: H⁻¹∇F at the current θ, by whichever
/// route the objective affords (<see cref="For"/>).
/// </summary>
public abstract class NewtonDirections : IDisposable
{
    /// <summary>
    /// Logistic regression's own objective: conjugate gradient on closed-form curvature products,
    /// preconditioned by Kronecker factors (no P×P matrix, so the job's one exact Hessian is the
    /// influence Hessian at θ̂). Other objectives: the exact Hessian while P allows, else none.
    /// </summary>
    public static NewtonDirections For(ITrainingObjective objective, Tensor? flat, TrainingOptions options) =>
        objective is Objective o && o.Spec.IsLogisticRegression ? new LogisticNewtonCg(o, flat, options)
        : objective.Spec.ParameterCount <= ExactHessian.MaxParameters ? new ExactNewton(objective, flat)
        : new NoNewton();

    /// <summary>What one step builds, for the progress line shown before it starts.</summary>
    public abstract string Describe(ModelSpec spec, long rows);

    /// <summary>The Newton step H⁻¹g (to subtract from θ), or null when there is none to take.</summary>
    public abstract Tensor? Step(Tensor theta, Tensor gradient, double gradientNorm);

    /// <summary>How the last step's solve went, appended to its progress line ("" when nothing to add).</summary>
    public virtual string LastSolve => "";

    public virtual void Dispose() { }

    private sealed class NoNewton : NewtonDirections
    {
        public override string Describe(ModelSpec spec, long rows) => "none";
        public override Tensor? Step(Tensor theta, Tensor gradient, double gradientNorm) => null;
    }

    /// <summary>
    /// The factorised exact Hessian, or where it is not positive definite (a saddle region on the
    /// way to the minimum) H + μI with the smallest μ = 1e-8·max|H|·10^k that makes it so: a
    /// Levenberg–Marquardt step, a descent direction the line search can use.
    /// </summary>
    private sealed class ExactNewton(ITrainingObjective objective, Tensor? flat) : NewtonDirections
    {
        // The Hessian is most of a step's time (minutes for a large network): say so before, not after.
        public override string Describe(ModelSpec spec, long rows) => $"the {spec.ParameterCount}×{spec.ParameterCount} Hessian over {rows:N0} rows";

        public override Tensor? Step(Tensor theta, Tensor gradient, double gradientNorm)
        {
            using var h = objective.Hessian(theta);
            using var inverse = DampedUntilPositiveDefinite(h);
            return inverse?.Solve(gradient.unsqueeze(1)).squeeze(1);
        }

        private HessianInverse? DampedUntilPositiveDefinite(Tensor h)
        {
            if (HessianInverse.TryCholesky(h, 0, flat) is { } inverse) return inverse;
            double mu = 1e-8 * Math.Max(1.0, h.abs().max().ToDouble());
            for (int k = 0; k < 12; k++, mu *= 10)
                if (HessianInverse.TryCholesky(h, mu, flat) is { } damped) return damped;
            return null;
        }
    }

    /// <summary>
    /// Truncated Newton for logistic regression: H s = g solved by preconditioned CG to a relative
    /// residual η = ‖g‖ clamped to [10⁻⁶, 10⁻²] (the Eisenstat–Walker choice that keeps Newton's
    /// quadratic rate near the optimum), with products from <see cref="LogisticCurvature"/> and
    /// <see cref="LogisticKfacPreconditioner"/> rebuilt at each θ (its input factor once).
    /// While ‖g‖ > 1e-6 the products read a float32 copy of the inputs, which halves their memory
    /// traffic: those steps only need the accuracy η they are solved to, and the optimum itself is
    /// decided by the float64 gradient. Below that, float64: a float32 product's error relative to
    /// the smallest curvature is about 1e-7·κ (3e-3 on Fashion-MNIST, where it left ‖∇F‖ at 7e-12
    /// instead of 1e-14), and it would stall the last steps of an ill-conditioned problem.
    /// The objective is convex, so H is positive semi-definite and CG applies; flat directions are
    /// projected out.
    /// </summary>
    private sealed class LogisticNewtonCg(Objective objective, Tensor? flat, TrainingOptions options) : NewtonDirections
    {
        private Tensor? inputGram, inputs32;
        private string lastSolve = "";
        /// <summary>‖∇F‖ above which the curvature products are float32 (see the class summary).</summary>
        private const double SinglePrecisionAbove = 1e-6;
        /// <summary>CG iterations per Newton step at most: far above what the preconditioned solves take (tens).</summary>
        private const int MaxCgIterations = 500;

        public override string Describe(ModelSpec spec, long rows) => $"conjugate gradient on curvature products over {rows:N0} rows";
        public override string LastSolve => lastSolve;

        public override Tensor? Step(Tensor theta, Tensor gradient, double gradientNorm)
        {
            // Kept across steps, outside every dispose scope (the trainer's per-step scope would free it).
            inputGram ??= LogisticKfacPreconditioner.InputGram(objective.Data, objective.ExampleWeights).DetachFromDisposeScope();
            inputs32 ??= objective.Data.X.to(ScalarType.Float32).DetachFromDisposeScope();
            using var scope = NewDisposeScope();
            var spec = objective.Spec;
            Tensor probabilities;
            using (no_grad()) probabilities = OutputCurvature.Probabilities(spec, Network.Logits(spec, theta, objective.Data.X));
            using var preconditioner = new LogisticKfacPreconditioner(spec, theta, objective.Data, objective.Normalizer, spec.L2, objective.ExampleWeights, inputGram);
            var regularizer = objective.RegularizerHessianDiagonal();
            var inputs = gradientNorm > SinglePrecisionAbove ? inputs32 : objective.Data.X;
            var curvature = new CurvatureOperator(v => LogisticCurvature.DataSum(spec, probabilities, inputs, v, objective.ExampleWeights),
                objective.Normalizer, regularizer, 0);
            double forcing = Math.Clamp(gradientNorm, 1e-6, 1e-2);
            var (x, reports) = ConjugateGradient.Solve(v =>
            {
                options.Cancel.ThrowIfCancellationRequested();
                return curvature.Apply(v);
            }, gradient.unsqueeze(1), forcing, MaxCgIterations, flat, preconditioner.Apply);
            var r = reports[0];
            lastSolve = FormattableString.Invariant($" ({r.Iterations} CG iterations, residual {r.RelativeResidual:E1})");
            if (r.NegativeCurvature && r.Iterations <= 1) return null;
            return x.squeeze(1).MoveToOuterDisposeScope();
        }

        public override void Dispose()
        {
            inputGram?.Dispose();
            inputs32?.Dispose();
        }
    }
}
