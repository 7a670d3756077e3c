using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>The extreme eigenvalues found and the damping chosen from them.</summary>
/// <param name="LargestEigenvalue">λ_max of the curvature (Arnoldi on H).</param>
/// <param name="SmallestEigenvalue">λ_min (Arnoldi on λ_max·I − H, whose dominant eigenvalue is λ_max − λ_min).</param>
/// <param name="Damping">What <see cref="DampingChoice.Decide"/> chose from them.</param>
/// <param name="Rule">How: the formula, or why no damping was needed.</param>
public sealed record DampingReport(double LargestEigenvalue, double SmallestEigenvalue, double Damping, string Rule, long Products)
{
    public bool Indefinite => SmallestEigenvalue < 0;
}

/// <summary>
/// Chooses the damping δ for an iterative inverse from estimates of the curvature's extreme
/// eigenvalues, by two short Arnoldi runs over (distributed) products. The user can always
/// override it; the report says what was found, and whether H is indefinite at θ̂.
/// </summary>
public static class DampingChoice
{
    /// <summary>
    /// Kronfluence's rule for Fisher and Gram curvatures (K-FAC, EK-FAC, TRAK), where λ_min is not
    /// meaningful: δ = this fraction of the mean eigenvalue.
    /// </summary>
    public const double MeanEigenvalueFraction = 0.1;

    /// <summary>δ by <see cref="MeanEigenvalueFraction"/>, and how summary.json names the rule.</summary>
    public static double FromMeanEigenvalue(double meanEigenvalue) => MeanEigenvalueFraction * meanEigenvalue;

    public static readonly string MeanEigenvalueRule = FormattableString.Invariant($"{MeanEigenvalueFraction} * mean eigenvalue (Kronfluence's heuristic)");

    /// <summary>The damping's margin above zero curvature, relative to λ_max.</summary>
    public const double RelativeFloor = 1e-3;

    /// <summary>
    /// A positive definite curvature whose λ_min is trusted gets no damping while its condition
    /// number stays below 1/this: damping then only biases the answer (on Fashion-MNIST logistic
    /// regression, δ = 1e-3·λ_max lowered exact-vs-LOO agreement from 0.982 to 0.645).
    /// </summary>
    public const double SingularRatio = 1e-6;

    /// <summary>
    /// δ from the extreme eigenvalues. When λ_min is trusted — <paramref name="smallestTrusted"/>:
    /// it comes from an eigendecomposition, or the objective is convex so no negative curvature
    /// can hide from a Krylov estimate — and H is positive definite and not near singular, δ = 0.
    /// Otherwise δ = max(0, −λ_min) + <see cref="RelativeFloor"/>·|λ_max|: positive definite with
    /// a margin that covers an estimate of λ_min that is too high.
    /// </summary>
    public static (double Damping, string Rule) Decide(double smallest, double largest, bool smallestTrusted)
    {
        if (smallestTrusted && smallest > SingularRatio * Math.Abs(largest))
            return (0, $"0: H is positive definite (lambda_min {smallest:E3} > {SingularRatio} * lambda_max)");
        return (Math.Max(0, -smallest) + RelativeFloor * Math.Abs(largest), $"max(0, -lambda_min) + {RelativeFloor} * lambda_max");
    }

    /// <param name="apply">H V (no damping) for V of shape P×1.</param>
    /// <param name="convex">The objective is convex (a linear model), so H ⪰ 0 and a positive estimate of λ_min is trusted.</param>
    public static DampingReport Choose(Func<Tensor, Tensor> apply, long parameterCount, int iterations, int seed, ScalarType dtype, Device device, bool convex, Tensor? flat = null)
    {
        using var top = Arnoldi.Run(apply, parameterCount, iterations, keep: 1, seed, dtype, device, flat);
        double dominant = top.Eigenvalues[0].ToDouble();
        // The dominant eigenvalue by magnitude may be negative; the shift must exceed the largest positive one.
        double shift = Math.Abs(dominant);
        using var shifted = Arnoldi.Run(v => v.mul(shift).sub(apply(v)), parameterCount, iterations, keep: 1, seed + 1, dtype, device, flat);
        double smallest = shift - shifted.Eigenvalues[0].ToDouble();
        double largest = Math.Max(dominant, smallest);
        var (damping, rule) = Decide(smallest, largest, convex);
        return new DampingReport(largest, smallest, damping, rule, top.Products + shifted.Products);
    }
}
