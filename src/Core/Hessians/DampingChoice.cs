using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>The extreme eigenvalues found and the damping chosen from them.</summary>
/// <param name="LargestEigenvalue">λ_max of the curvature (Arnoldi on H).</param>
/// <param name="SmallestEigenvalue">λ_min (Arnoldi on λ_max·I − H, whose dominant eigenvalue is λ_max − λ_min).</param>
/// <param name="Damping">max(0, −λ_min) + <see cref="DampingChoice.RelativeFloor"/>·λ_max: enough to make H + δI positive definite with a margin.</param>
public sealed record DampingReport(double LargestEigenvalue, double SmallestEigenvalue, double Damping, long Products)
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
    /// <summary>The damping's margin above zero curvature, relative to λ_max.</summary>
    public const double RelativeFloor = 1e-3;

    /// <param name="apply">H V (no damping) for V of shape P×1.</param>
    public static DampingReport Choose(Func<Tensor, Tensor> apply, long parameterCount, int iterations, int seed, ScalarType dtype, Device device, Tensor? flat = null)
    {
        using var top = Arnoldi.Run(apply, parameterCount, iterations, keep: 1, seed, dtype, device, flat);
        double dominant = top.Eigenvalues[0].ToDouble();
        // The dominant eigenvalue by magnitude may be negative; the shift must exceed the largest positive one.
        double shift = Math.Abs(dominant);
        using var shifted = Arnoldi.Run(v => v.mul(shift).sub(apply(v)), parameterCount, iterations, keep: 1, seed + 1, dtype, device, flat);
        double smallest = shift - shifted.Eigenvalues[0].ToDouble();
        double largest = Math.Max(dominant, smallest);
        return new DampingReport(largest, smallest, FromEigenvalues(smallest, largest), top.Products + shifted.Products);
    }

    /// <summary>max(0, −λ_min) + <see cref="RelativeFloor"/>·|λ_max|.</summary>
    public static double FromEigenvalues(double smallest, double largest) => Math.Max(0, -smallest) + RelativeFloor * Math.Abs(largest);
}
