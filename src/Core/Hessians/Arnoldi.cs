using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>The dominant eigenpairs Arnoldi found, and the inverse they define on their span.</summary>
/// <param name="Eigenvalues">k values, largest magnitude first.</param>
/// <param name="Eigenvectors">P×k, orthonormal columns.</param>
public sealed record ArnoldiResult(Tensor Eigenvalues, Tensor Eigenvectors, int Iterations, long Products) : IDisposable
{
    /// <summary>Σ_i uᵢ uᵢᵀ g / (λᵢ + δ): the inverse restricted to the kept eigenvectors (Schioppa et al. 2022).</summary>
    public Tensor Solve(Tensor g, double damping = 0)
    {
        using var scope = NewDisposeScope();
        var coefficients = Eigenvectors.t().matmul(g).div(Eigenvalues.add(damping).unsqueeze(1));
        return Eigenvectors.matmul(coefficients).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Eigenvalues.Dispose();
        Eigenvectors.Dispose();
    }
}

/// <summary>
/// Arnoldi iteration over curvature products (Schioppa et al. 2022): an orthonormal Krylov basis
/// from a seeded random start, with full re-orthogonalisation; the Ritz pairs of the projected
/// matrix approximate H's eigenpairs of largest magnitude. H is symmetric, so the projected matrix
/// is symmetrised and diagonalised with eigh.
/// </summary>
public static class Arnoldi
{
    /// <param name="apply">H V for V of shape P×1.</param>
    /// <param name="iterations">Krylov dimension n (≥ k); one product each.</param>
    /// <param name="keep">k eigenpairs kept.</param>
    /// <param name="flat">Directions to keep the basis out of (H's known null space), or null.</param>
    public static ArnoldiResult Run(Func<Tensor, Tensor> apply, long parameterCount, int iterations, int keep, int seed, ScalarType dtype, Device device, Tensor? flat = null)
    {
        if (keep < 1 || iterations < keep) throw new ArgumentException($"Arnoldi needs 1 ≤ k ≤ n, not k = {keep}, n = {iterations}");
        iterations = (int)Math.Min(iterations, parameterCount);
        keep = Math.Min(keep, iterations);
        using var scope = NewDisposeScope();
        Tensor Project(Tensor v) => Models.Network.WithoutFlat(v, flat);

        var basis = zeros(parameterCount, iterations + 1, dtype: dtype, device: device);
        var hess = zeros(iterations + 1, iterations, dtype: ScalarType.Float64);
        var start = Project(randn(parameterCount, 1, dtype: dtype, device: device, generator: new Generator((ulong)seed)));
        basis[.., 0] = start.div(start.norm()).squeeze(1);
        int built = iterations;
        long products = 0;
        for (int j = 0; j < iterations; j++)
        {
            using var step = NewDisposeScope();
            var w = Project(apply(basis[.., j].unsqueeze(1))).squeeze(1);
            products++;
            // Two passes of Gram-Schmidt against every earlier vector keep the basis orthonormal in floating point.
            var q = basis.narrow(1, 0, j + 1);
            var c1 = q.t().matmul(w);
            w = w.sub(q.matmul(c1));
            var c2 = q.t().matmul(w);
            w = w.sub(q.matmul(c2));
            var c = c1.add(c2).to_type(ScalarType.Float64).cpu();
            hess.narrow(1, j, 1).narrow(0, 0, j + 1).copy_(c.unsqueeze(1));
            double norm = w.norm().ToDouble();
            hess[j + 1, j] = norm;
            if (norm < 1e-12 * Math.Max(1, c.abs().max().ToDouble()))
            {
                built = j + 1; // an invariant subspace: the Krylov space is exhausted
                break;
            }
            basis[.., j + 1] = w.div(norm);
        }
        keep = Math.Min(keep, built);
        var square = hess.narrow(0, 0, built).narrow(1, 0, built);
        var symmetric = square.add(square.t()).div(2);
        var (values, vectors) = linalg.eigh(symmetric);
        var order = values.abs().argsort(descending: true).narrow(0, 0, keep);
        var lambda = values.index_select(0, order);
        var ritz = basis.narrow(1, 0, built).matmul(vectors.index_select(1, order).to_type(dtype).to(device));
        return new ArnoldiResult(lambda.to_type(dtype).to(device).MoveToOuterDisposeScope(), ritz.MoveToOuterDisposeScope(), built, products);
    }
}
