using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>The largest eigenvalue of a symmetric positive definite operator, and how well it is known.</summary>
/// <param name="RelativeResidual">‖A u − λ u‖ / λ of the Ritz pair: |λ − λ_true| ≤ that · λ, and usually far less.</param>
public sealed record ExtremeEigenvalue(double Value, double RelativeResidual, int KrylovDimension, long Products)
{
    /// <summary>
    /// The largest eigenvalue of a symmetric positive definite operator by a Krylov method
    /// (<see cref="Arnoldi"/>: Lanczos with full re-orthogonalisation, for a symmetric operator), from
    /// a Krylov space of 32 dimensions doubled until the Ritz pair's relative residual is at most
    /// <paramref name="tolerance"/>. A few dozen products instead of a P×P eigendecomposition: with a
    /// factorised M, the smallest eigenvalue is 1 / the largest of M⁻¹.
    /// </summary>
    /// <param name="apply">A V for V of shape P×1. For a P×P matrix each product reads the whole matrix: memory-bound, so the space starts small.</param>
    /// <param name="flat">Directions the operator is restricted away from (its known null space), or null.</param>
    public static ExtremeEigenvalue Largest(Func<Tensor, Tensor> apply, long parameterCount, ScalarType dtype, Device device, Tensor? flat = null,
        double tolerance = 1e-8, int maxDimension = 512)
    {
        long products = 0;
        for (int n = 16; ; n *= 2)
        {
            using var scope = NewDisposeScope();
            int dimension = (int)Math.Min(n, parameterCount);
            using var ritz = Arnoldi.Run(apply, parameterCount, dimension, 1, seed: 0, dtype, device, flat);
            products += ritz.Products + 1;
            double value = ritz.Eigenvalues[0].ToDouble();
            var u = ritz.Eigenvectors.narrow(1, 0, 1);
            double residual = Models.Network.WithoutFlat(apply(u), flat).sub(u.mul(value)).norm().ToDouble() / Math.Abs(value);
            if (residual <= tolerance || dimension >= Math.Min(maxDimension, parameterCount) || ritz.Iterations < dimension)
                return new ExtremeEigenvalue(value, residual, ritz.Iterations, products);
        }
    }
}
