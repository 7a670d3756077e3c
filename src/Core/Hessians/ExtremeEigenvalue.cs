using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>The largest eigenvalue of a symmetric positive definite operator, and how well it is known.</summary>
/// <param name="RelativeResidual">‖A u − λ u‖ / λ of the Ritz pair: |λ − λ_true| ≤ that · λ, and usually far less.</param>
public sealed record ExtremeEigenvalue(double Value, double RelativeResidual, int KrylovDimension, long Products)
{
    /// <summary>
    /// The Ritz pair's relative residual at which a run stops: the eigenvalue is then known to
    /// 1e-6 relative at worst (for a symmetric operator |λ − λ_true| ≤ ‖r‖), and in practice to the
    /// square of that, more than a report or the damping rule needs.
    /// </summary>
    public const double DefaultTolerance = 1e-6;

    /// <summary>
    /// A run also stops when the Ritz value moves by at most this (relative) when the space
    /// doubles. Where the top of the spectrum is a tight cluster the residual converges slowly
    /// while the value already has: at 60,000 Fashion-MNIST rows with noisy labels the top of
    /// (H + δI)⁻¹ is a cluster at 1/λ (pixels almost never lit), and the residual rule alone grew
    /// the space to its 512 cap (about 1,000 products, 70 s) with the residual still at 7.7e-6.
    /// </summary>
    public const double StableValue = 1e-10;

    /// <summary>
    /// The largest eigenvalue of a symmetric positive definite operator by a Krylov method
    /// (<see cref="Arnoldi"/>: Lanczos with full re-orthogonalisation, for a symmetric operator), from
    /// a Krylov space of 16 dimensions doubled until the Ritz pair's relative residual is at most
    /// <paramref name="tolerance"/> or its value stops moving (<see cref="StableValue"/>). A few dozen products instead of a P×P eigendecomposition: with a
    /// factorised M, the smallest eigenvalue is 1 / the largest of M⁻¹.
    /// </summary>
    /// <param name="apply">A V for V of shape P×1. For a P×P matrix each product reads the whole matrix: memory-bound, so the space starts small.</param>
    /// <param name="flat">Directions the operator is restricted away from (its known null space), or null.</param>
    public static ExtremeEigenvalue Largest(Func<Tensor, Tensor> apply, long parameterCount, ScalarType dtype, Device device, Tensor? flat = null,
        double tolerance = DefaultTolerance, int maxDimension = 512)
    {
        long products = 0;
        double previous = double.NaN;
        for (int n = 16; ; n *= 2)
        {
            using var scope = NewDisposeScope();
            int dimension = (int)Math.Min(n, parameterCount);
            using var ritz = Arnoldi.Run(apply, parameterCount, dimension, 1, seed: 0, dtype, device, flat);
            products += ritz.Products + 1;
            double value = ritz.Eigenvalues[0].ToDouble();
            var u = ritz.Eigenvectors.narrow(1, 0, 1);
            double residual = Models.Network.WithoutFlat(apply(u), flat).sub(u.mul(value)).norm().ToDouble() / Math.Abs(value);
            bool stable = Math.Abs(value - previous) <= StableValue * Math.Abs(value);
            if (residual <= tolerance || stable || dimension >= Math.Min(maxDimension, parameterCount) || ritz.Iterations < dimension)
                return new ExtremeEigenvalue(value, residual, ritz.Iterations, products);
            previous = value;
        }
    }
}
