using System.Diagnostics;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Training;

public sealed record TrainingOptions
{
    /// <summary>L-BFGS stops when ‖∇F‖ falls below this (Newton polishing then takes over); null: <see cref="HandoverFor"/>.</summary>
    public double? LbfgsTolerance { get; init; }

    /// <summary>
    /// Where L-BFGS hands over to Newton: 1e-3 for logistic regression, whose Newton-CG steps cost a
    /// few dozen gradients each, so a long L-BFGS tail costs more than three Newton steps (the
    /// training times in docs/benchmarks.md, `scripts/bench-scale.sh`); 1e-7 where a Newton step
    /// builds an exact Hessian.
    /// </summary>
    public double HandoverFor(ModelSpec spec) => LbfgsTolerance ?? (spec.IsLogisticRegression ? 1e-3 : 1e-7);
    public int LbfgsMaxIterations { get; init; } = 5_000;
    public int LbfgsHistory { get; init; } = 20;
    /// <summary>
    /// Newton polishing: logistic regression by conjugate gradient on closed-form curvature products
    /// (any size; no P×P matrix), other models with the exact Hessian while P ≤
    /// <see cref="ExactHessian.MaxParameters"/> and P·N ≤ <see cref="NewtonWorkLimit"/>.
    /// </summary>
    public bool NewtonPolish { get; init; } = true;
    /// <summary>
    /// A network's exact Hessian is P backward passes over N rows. P·N = 5·10⁵ (a 410-parameter CNN
    /// on 1257 rows) takes seconds; 10⁷ (LeNet on 2000 Fashion-MNIST rows) took over ten minutes per Hessian.
    /// </summary>
    public long NewtonWorkLimit { get; init; } = 4_000_000;

    public bool Polishes(ModelSpec spec, long rows) =>
        NewtonPolish && (spec.IsLogisticRegression || (spec.ParameterCount <= ExactHessian.MaxParameters && spec.ParameterCount * rows <= NewtonWorkLimit));
    public int NewtonMaxIterations { get; init; } = 20;
    /// <summary>
    /// Checked before every L-BFGS and Newton iteration: a stopping silo must not leave libtorch
    /// inside an operation when the process exits (its static teardown then crashes the process).
    /// </summary>
    public CancellationToken Cancel { get; init; }
    /// <summary>Target ‖∇F‖; null picks 1e-11 for float64 and 1e-5 for float32.</summary>
    public double? GradientTolerance { get; init; }

    public double TargetFor(ModelSpec spec) => GradientTolerance ?? (spec.Precision == Precision.Float64 ? 1e-11 : 1e-5);
}

public sealed record TrainingResult(
    Tensor Theta,
    double Objective,
    double GradientNorm,
    int LbfgsIterations,
    int NewtonIterations,
    bool Converged,
    double Seconds);

/// <summary>
/// Full-batch training to a tight optimum, as influence functions assume: L-BFGS from the given
/// start, then Newton steps (<see cref="NewtonDirections"/>) until the gradient norm reaches the target. TorchSharp's LBFGS wraps libtorch's C++ optimizer, whose
/// constructor offers no line search; without one, full-batch L-BFGS can diverge, so this is a
/// small two-loop recursion on the flat parameter vector with Armijo backtracking.
/// </summary>
public static class FullBatchTrainer
{
    public static TrainingResult Train(ITrainingObjective objective, Tensor initialTheta, TrainingOptions? options = null, IProgress<string>? progress = null)
    {
        options ??= new TrainingOptions();
        var sw = Stopwatch.StartNew();
        var spec = objective.Spec;
        double target = options.TargetFor(spec);
        var theta = initialTheta.detach().clone();

        int lbfgsIterations = Lbfgs(objective, theta, Math.Max(options.HandoverFor(spec), target), options, progress);

        int newtonIterations = 0;
        var (value, grad) = objective.ValueAndGradient(theta);
        double gnorm = grad.norm().ToDouble();
        if (options.Polishes(spec, objective.RowCount))
        {
            var flat = objective.FlatDirections(theta.device);
            using var newton = NewtonDirections.For(objective, flat, options);
            while (gnorm > target && newtonIterations < options.NewtonMaxIterations)
            {
                options.Cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                progress?.Report($"Newton polish {newtonIterations + 1}: {newton.Describe(spec, objective.RowCount)}, from |grad|={gnorm:E3}");
                var step = newton.Step(theta, grad, gnorm);
                if (step is null) break;
                double alpha = 1.0, newValue = double.NaN, newNorm = double.NaN;
                Tensor? candidate = null, candidateGrad = null;
                for (int tries = 0; tries < 30; tries++, alpha /= 2)
                {
                    candidate = theta.sub(step.mul(alpha));
                    var (v, gc) = objective.ValueAndGradient(candidate);
                    newValue = v;
                    newNorm = gc.norm().ToDouble();
                    candidateGrad = gc;
                    // Near the optimum F stops resolving progress; the gradient norm still does.
                    if (v < value || (v <= value + 1e-14 * Math.Abs(value) && newNorm < gnorm)) break;
                    candidate = null;
                }
                newtonIterations++;
                if (candidate is null) break;
                theta.copy_(candidate);
                grad.copy_(candidateGrad!); // the accepted point's gradient: the next step needs no extra pass
                progress?.Report($"Newton polish {newtonIterations}: F={newValue:R} |grad|={newNorm:E3}{newton.LastSolve}");
                if (newNorm >= gnorm && newValue >= value) { value = newValue; gnorm = newNorm; break; }
                value = newValue;
                gnorm = newNorm;
            }
            flat?.Dispose();
        }
        if (gnorm > target && options.HandoverFor(spec) > target)
        {
            // Newton could not finish (an indefinite Hessian on the way, or a model too large for
            // an exact Hessian): let L-BFGS go on to the target itself.
            lbfgsIterations += Lbfgs(objective, theta, target, options, progress);
            grad.Dispose();
            (value, grad) = objective.ValueAndGradient(theta);
            gnorm = grad.norm().ToDouble();
        }
        grad.Dispose();
        return new TrainingResult(theta, value, gnorm, lbfgsIterations, newtonIterations, gnorm <= target, sw.Elapsed.TotalSeconds);
    }

    /// <summary>L-BFGS with Armijo backtracking; updates <paramref name="theta"/> in place, returns iterations.</summary>
    private static int Lbfgs(ITrainingObjective objective, Tensor theta, double tolerance, TrainingOptions options, IProgress<string>? progress)
    {
        var s = new List<Tensor>();
        var y = new List<Tensor>();
        var rho = new List<double>();
        var (value, grad) = objective.ValueAndGradient(theta);
        int iteration = 0;
        var eta = new GradientNormEta();
        try
        {
            for (; iteration < options.LbfgsMaxIterations; iteration++)
            {
                options.Cancel.ThrowIfCancellationRequested();
                double gnorm = grad.norm().ToDouble();
                if (gnorm <= tolerance || !double.IsFinite(gnorm)) break;
                using var scope = NewDisposeScope();
                // Two-loop recursion for the direction −H⁻¹g.
                var q = grad.clone();
                var alphas = new double[s.Count];
                for (int i = s.Count - 1; i >= 0; i--)
                {
                    alphas[i] = rho[i] * s[i].dot(q).ToDouble();
                    q.sub_(y[i].mul(alphas[i]));
                }
                double gamma = s.Count > 0 ? s[^1].dot(y[^1]).ToDouble() / y[^1].dot(y[^1]).ToDouble() : 1.0 / Math.Max(gnorm, 1.0);
                q.mul_(gamma);
                for (int i = 0; i < s.Count; i++)
                {
                    double beta = rho[i] * y[i].dot(q).ToDouble();
                    q.add_(s[i].mul(alphas[i] - beta));
                }
                var direction = q.neg();
                double slope = grad.dot(direction).ToDouble();
                if (slope >= 0) { direction = grad.neg(); slope = -gnorm * gnorm; ClearHistory(s, y, rho); }

                double step = 1.0, newValue = double.NaN;
                Tensor? newTheta = null, newGrad = null;
                for (int tries = 0; tries < 40; tries++, step *= 0.5)
                {
                    var candidate = theta.add(direction.mul(step));
                    var (v, g) = objective.ValueAndGradient(candidate);
                    if (double.IsFinite(v) && v <= value + 1e-4 * step * slope)
                    {
                        newTheta = candidate;
                        newGrad = g;
                        newValue = v;
                        break;
                    }
                    g.Dispose();
                }
                if (newTheta is null) break; // no decrease along the direction: as far as L-BFGS goes
                var sk = newTheta.sub(theta).MoveToOuterDisposeScope();
                var yk = newGrad!.sub(grad).MoveToOuterDisposeScope();
                double sy = sk.dot(yk).ToDouble();
                if (sy > 1e-12 * sk.norm().ToDouble() * yk.norm().ToDouble())
                {
                    s.Add(sk); y.Add(yk); rho.Add(1.0 / sy);
                    if (s.Count > options.LbfgsHistory) { s[0].Dispose(); y[0].Dispose(); s.RemoveAt(0); y.RemoveAt(0); rho.RemoveAt(0); }
                }
                else { sk.Dispose(); yk.Dispose(); }
                theta.copy_(newTheta);
                grad.Dispose();
                grad = newGrad.MoveToOuterDisposeScope();
                double change = value - newValue;
                value = newValue;
                if (progress is not null && iteration % 50 == 0) progress.Report($"L-BFGS {iteration}: F={value:R} |grad|={gnorm:E3}{eta.Report(gnorm, tolerance)}");
                if (change <= 1e-16 * Math.Max(1.0, Math.Abs(value)) && iteration > 10) { iteration++; break; }
            }
        }
        finally
        {
            grad.Dispose();
            ClearHistory(s, y, rho);
        }
        return iteration;
    }

    private static void ClearHistory(List<Tensor> s, List<Tensor> y, List<double> rho)
    {
        foreach (var t in s) t.Dispose();
        foreach (var t in y) t.Dispose();
        s.Clear(); y.Clear(); rho.Clear();
    }
}

/// <summary>
/// An estimate of the time left until ‖∇F‖ reaches a tolerance, for the progress line: L-BFGS
/// shrinks log ‖∇F‖ at a roughly steady rate per second, so the rate since the start is extrapolated.
/// </summary>
internal sealed class GradientNormEta
{
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private double? firstLog;

    /// <summary>" (to 1E-003 in ≈ 12 s at the rate so far)", or "" before there is a rate.</summary>
    public string Report(double gradientNorm, double tolerance)
    {
        double now = Math.Log10(gradientNorm), seconds = clock.Elapsed.TotalSeconds;
        if (firstLog is null) { firstLog = now; clock.Restart(); return ""; }
        double rate = (firstLog.Value - now) / seconds; // decades per second
        if (!(rate > 0) || !double.IsFinite(now)) return "";
        double left = (now - Math.Log10(tolerance)) / rate;
        return FormattableString.Invariant($" (to {tolerance:E0} in ≈ {Math.Max(0, left):F0} s at the rate so far)");
    }
}
