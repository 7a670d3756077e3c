using Influence.Core.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>How the (damped) Hessian was inverted.</summary>
public enum InverseKind { Cholesky, Eigen }

/// <summary>
/// Seconds of a factorisation (Cholesky, or the eigendecomposition that replaces it) and of its
/// extreme eigenvalues by Krylov, with that Krylov's operator products: the figures the benchmarks quote.
/// </summary>
public sealed record FactorizationCost(double FactorSeconds, double SpectrumSeconds, long SpectrumProducts)
{
    public FactorizationCost Add(FactorizationCost? other) => other is null ? this
        : new(FactorSeconds + other.FactorSeconds, SpectrumSeconds + other.SpectrumSeconds, SpectrumProducts + other.SpectrumProducts);
}

/// <summary>
/// The inverse of <c>H + δI</c> on the complement of the objective's flat directions U
/// (the pseudo-inverse there), factorised once. We factor <c>M = H + δI + s·UUᵀ</c> with
/// <c>s</c> the mean eigenvalue of <c>H + δI</c> on the complement (its trace over P − m): M is
/// invertible, maps the complement onto itself, and for g ⊥ U, <c>M⁻¹g = (H + δI)⁺g</c>. Because
/// s lies inside the spectrum of the complement, the extreme eigenvalues of M are those of H + δI
/// on the complement. Cholesky when M is positive definite; otherwise a symmetric
/// eigendecomposition, inverting every eigenvalue (sign kept) and dropping numerically zero ones.
/// </summary>
public sealed class HessianInverse : IDisposable
{
    private HessianInverse(InverseKind kind, Tensor factor, Tensor? eigenvalues, Tensor? flat, double damping, double minEigenvalue, double maxEigenvalue, int droppedEigenvalues)
    {
        Kind = kind;
        Factor = factor;
        Eigenvalues = eigenvalues;
        Flat = flat;
        Damping = damping;
        MinEigenvalue = minEigenvalue;
        MaxEigenvalue = maxEigenvalue;
        DroppedEigenvalues = droppedEigenvalues;
    }

    public InverseKind Kind { get; }
    /// <summary>Lower Cholesky factor L of M (Cholesky) or the eigenvectors V of M (Eigen).</summary>
    public Tensor Factor { get; }
    /// <summary>Eigenvalues of M (Eigen kind only).</summary>
    public Tensor? Eigenvalues { get; }
    /// <summary>Orthonormal flat directions U (P×m), or null.</summary>
    public Tensor? Flat { get; }
    public double Damping { get; }
    /// <summary>Smallest and largest eigenvalue of H + δI on the complement of the flat directions.</summary>
    public double MinEigenvalue { get; }
    public double MaxEigenvalue { get; }
    public bool PositiveDefinite => MinEigenvalue > 0;
    /// <summary>
    /// How well <see cref="MinEigenvalue"/> and <see cref="MaxEigenvalue"/> are known: the larger
    /// relative residual of their Krylov Ritz pairs (Cholesky kind; 0 where a full eigendecomposition gave them).
    /// </summary>
    public double EigenvalueResidual { get; private init; }
    /// <summary>What <see cref="Factorize"/> took (none for a loaded factorisation).</summary>
    public FactorizationCost? Cost { get; private init; }
    /// <summary>Eigenvalues treated as zero (pseudo-inverse) in the Eigen kind.</summary>
    public int DroppedEigenvalues { get; }

    /// <param name="hessian">H (P×P, symmetric), not modified.</param>
    /// <param name="damping">δ ≥ 0 added to the diagonal.</param>
    /// <param name="flat">Orthonormal flat directions (P×m) or null.</param>
    /// <param name="computeSpectrum">Compute the extreme eigenvalues (by <see cref="ExtremeEigenvalue"/>) when Cholesky succeeds.</param>
    /// <param name="overwrite">
    /// Build M in place of <paramref name="hessian"/> (which then holds M, see <see cref="Unshift"/>)
    /// instead of in a copy: one P×P matrix less at the peak, and no copy (at P = 7,850 both are 493 MB).
    /// </param>
    public static HessianInverse Factorize(Tensor hessian, double damping, Tensor? flat, bool computeSpectrum = true, bool overwrite = false)
    {
        using var scope = NewDisposeScope();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (m, u, shift) = Shifted(hessian, damping, flat, overwrite);
        var (l, info) = linalg.cholesky_ex(m);
        if (info.ToInt64() == 0)
        {
            double factorSeconds = clock.Elapsed.TotalSeconds;
            if (!overwrite) m.Dispose(); // L is all that is kept: H, M and L at once would be 1.5 GB at P = 7,850
            double min = double.NaN, max = double.NaN, residual = double.NaN;
            long products = 0;
            if (computeSpectrum)
            {
                // Krylov on M and on M⁻¹ (two triangular solves a product): a few dozen P² products,
                // not the P³ of a full eigendecomposition, which would only be read for its two ends.
                // On the complement of the flat directions (where Krylov stays) M v = (H + δI) v.
                long p = l.shape[0];
                Func<Tensor, Tensor> product = overwrite ? v => m.matmul(v) : v => hessian.matmul(v).add_(v, alpha: damping);
                var top = ExtremeEigenvalue.Largest(product, p, l.dtype, l.device, u);
                var ofInverse = ExtremeEigenvalue.Largest(v => CholeskySolve(v, l), p, l.dtype, l.device, u);
                (min, max, residual) = (1 / ofInverse.Value, top.Value, Math.Max(top.RelativeResidual, ofInverse.RelativeResidual));
                products = top.Products + ofInverse.Products;
            }
            return new HessianInverse(InverseKind.Cholesky, l.MoveToOuterDisposeScope(), null, u?.MoveToOuterDisposeScope(), damping, min, max, 0)
            {
                EigenvalueResidual = residual, FlatShift = shift,
                Cost = new FactorizationCost(factorSeconds, clock.Elapsed.TotalSeconds - factorSeconds, products),
            };
        }

        var (values, vectors) = linalg.eigh(m);
        double largest = values.abs().max().ToDouble();
        var tiny = values.abs().le(largest * 1e-12);
        int dropped = (int)tiny.sum().ToInt64();
        var safe = values.masked_fill(tiny, double.PositiveInfinity);
        return new HessianInverse(InverseKind.Eigen, vectors.MoveToOuterDisposeScope(), safe.MoveToOuterDisposeScope(), u?.MoveToOuterDisposeScope(),
            damping, values[0].ToDouble(), values[-1].ToDouble(), dropped) { FlatShift = shift, Cost = new FactorizationCost(clock.Elapsed.TotalSeconds, 0, 0) };
    }

    /// <summary>The s of M = H + δI + s·UUᵀ... as built: M's eigenvalue on the flat directions.</summary>
    private double FlatShift { get; init; }

    /// <summary>
    /// Turns the M that <see cref="Factorize"/> built in place (overwrite) back into H: for a caller
    /// that must factorise H again with another damping.
    /// </summary>
    public void Unshift(Tensor shifted)
    {
        shifted.diagonal().sub_(Damping);
        if (Flat is { } u) shifted.addmm_(u, u.t(), beta: 1, alpha: (float)-(FlatShift - Damping));
    }

    /// <summary>
    /// The Cholesky factorisation of H + δI (on the complement of the flat directions), or null when
    /// that is not positive definite. Unlike <see cref="Factorize"/> it never falls back to an
    /// eigendecomposition: a test of definiteness that costs one Cholesky (Newton's damping search).
    /// The extreme eigenvalues are not computed.
    /// </summary>
    public static HessianInverse? TryCholesky(Tensor hessian, double damping, Tensor? flat)
    {
        using var scope = NewDisposeScope();
        var (m, u, _) = Shifted(hessian, damping, flat, inPlace: false);
        var (l, info) = linalg.cholesky_ex(m);
        if (info.ToInt64() != 0) return null;
        return new HessianInverse(InverseKind.Cholesky, l.MoveToOuterDisposeScope(), null, u?.MoveToOuterDisposeScope(), damping, double.NaN, double.NaN, 0);
    }

    /// <summary>M = H + δI + s·UUᵀ (see the class summary), U in H's dtype and s; tensors in the caller's dispose scope.</summary>
    /// <param name="inPlace">M is made in <paramref name="hessian"/>'s memory (and not disposed with the scope).</param>
    private static (Tensor M, Tensor? U, double Shift) Shifted(Tensor hessian, double damping, Tensor? flat, bool inPlace)
    {
        if (damping < 0 || !double.IsFinite(damping)) throw new ArgumentOutOfRangeException(nameof(damping), "damping must be a finite number ≥ 0");
        long p = hessian.shape[0];
        Tensor? u = flat?.to(hessian.dtype);
        double s = 0;
        // Trace of H + δI on the complement (flat directions carry eigenvalue δ after damping), from H before it changes.
        if (u is not null)
        {
            long k = u.shape[1];
            s = (hessian.diagonal().sum().ToDouble() + (p - k) * damping - u.t().matmul(hessian).matmul(u).trace().ToDouble()) / (p - k);
            if (!(s > 0)) s = Math.Abs(s) + 1.0;
            s = damping + (float)(s - damping); // addmm_ takes a float: keep the s that M gets (Unshift subtracts it)
        }
        var m = inPlace ? hessian : hessian.clone();
        m.diagonal().add_(damping);
        if (u is not null) m.addmm_(u, u.t(), beta: 1, alpha: (float)(s - damping)); // in place: a P×P temporary is 0.5 GB at P = 7,850
        return (m, u, s);
    }

    /// <summary>Projects the columns of <paramref name="v"/> (P×K) onto the complement of the flat directions.</summary>
    public Tensor Project(Tensor v) => Models.Network.WithoutFlat(v, Flat);

    /// <summary>(H + δI)⁺ applied to the columns of <paramref name="rhs"/> (P×K).</summary>
    public Tensor Solve(Tensor rhs)
    {
        using var scope = NewDisposeScope();
        var b = Project(rhs.to(Factor.dtype));
        Tensor x = Kind == InverseKind.Cholesky
            ? CholeskySolve(b, Factor)
            : Factor.matmul(Factor.t().matmul(b).div(Eigenvalues!.unsqueeze(1)));
        return Project(x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// (L Lᵀ)⁻¹ B by two triangular solves: what torch's cholesky_solve computes, to the same bits
    /// here, but it copied L on every call (at P = 7,850: 140 ms for one right-hand side, against
    /// 19 ms for the two solves), which the Krylov iterations on the inverse pay a few dozen times.
    /// </summary>
    public static Tensor CholeskySolve(Tensor rhs, Tensor lower)
    {
        using var y = linalg.solve_triangular(lower, rhs, upper: false);
        return linalg.solve_triangular(lower.t(), y, upper: true);
    }

    /// <summary>
    /// (H + δI)⁺ as a P×P matrix, Π M⁻¹ Π with Π = I − UUᵀ the projector onto the complement of
    /// the flat directions (what <see cref="Solve"/> applies). For methods that need its blocks
    /// (newton-step's per-example C×C forms), not for solving: one more P×P matrix.
    /// </summary>
    public Tensor Explicit()
    {
        using var scope = NewDisposeScope();
        var x = Kind == InverseKind.Cholesky
            ? cholesky_inverse(Factor)
            : Factor.matmul(Factor.t().div(Eigenvalues!.unsqueeze(1)));
        if (Flat is { } u)
        {
            // Π X Π = X − U(UᵀX) − (XU)Uᵀ + U(UᵀXU)Uᵀ, X symmetric; in place (P×P temporaries are 0.5 GB at P = 7,850).
            var ux = u.t().matmul(x);
            var uxu = ux.matmul(u);
            x.addmm_(u, ux, beta: 1, alpha: -1);
            x.addmm_(ux.t(), u.t(), beta: 1, alpha: -1);
            x.addmm_(u.matmul(uxu), u.t(), beta: 1, alpha: 1);
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Takes the tensors out of the current dispose scope (the caller disposes the inverse).</summary>
    public HessianInverse DetachFromDisposeScope()
    {
        Factor.DetachFromDisposeScope();
        Eigenvalues?.DetachFromDisposeScope();
        Flat?.DetachFromDisposeScope();
        return this;
    }

    /// <summary>gᵀ(H + δI)⁺g for every row g of <paramref name="rows"/> (B×P): self-influence.</summary>
    public Tensor QuadraticForms(Tensor rows)
    {
        using var scope = NewDisposeScope();
        var g = Project(rows.to(Factor.dtype).t());
        Tensor q;
        if (Kind == InverseKind.Cholesky)
        {
            var y = linalg.solve_triangular(Factor, g, upper: false);
            q = y.square().sum(0L, false);
        }
        else
        {
            q = Factor.t().matmul(g).square().div(Eigenvalues!.unsqueeze(1)).sum(0L, false);
        }
        return q.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Factor.Dispose();
        Eigenvalues?.Dispose();
        Flat?.Dispose();
    }

    /// <summary>Writes the factorisation (for shards on other silos).</summary>
    public void Save(IArtifactStore store, string key)
    {
        using var scope = NewDisposeScope();
        // LAPACK leaves the factor (and eigh's vectors) column-major: stored as its transpose, which is
        // row-major, it needs no 493 MB copy, and a loaded factor has the same layout and so solves
        // to the same bits as the one in memory.
        bool columnMajor = !Factor.is_contiguous() && Factor.t().is_contiguous();
        var entries = new List<KeyValuePair<string, Tensor>>
        {
            columnMajor ? new("factor_transposed", Factor.t()) : new("factor", Factor), new("kind", TensorArchive.Scalar((long)Kind)), new("damping", TensorArchive.Scalar(Damping)),
            new("min_eigenvalue", TensorArchive.Scalar(MinEigenvalue)), new("max_eigenvalue", TensorArchive.Scalar(MaxEigenvalue)),
            new("dropped_eigenvalues", TensorArchive.Scalar(DroppedEigenvalues)),
        };
        if (Eigenvalues is not null) entries.Add(new("eigenvalues", Eigenvalues));
        if (Flat is not null) entries.Add(new("flat", Flat));
        TensorArchive.Write(store, key, entries);
    }

    /// <summary>The factorisation saved under <paramref name="key"/>, or the one this process handed off under it (<see cref="HandOff"/>).</summary>
    public static HessianInverse Load(IArtifactStore store, string key, Device device)
    {
        if (HandOff.Process.Take<HessianInverse>(store, key) is { } kept) return kept;
        using var a = TensorArchive.Read(store, key, device);
        var kind = (InverseKind)a.Int("kind");
        if (!Enum.IsDefined(kind)) throw new InvalidDataException($"artifact '{key}': unknown factorisation kind {(int)kind}");
        Tensor factor;
        if (a.Has("factor_transposed"))
            using (var transposed = a.Take("factor_transposed")) factor = transposed.t(); // a view: it keeps the storage
        else factor = a.Take("factor");
        return new HessianInverse(kind, factor, a.TakeOptional("eigenvalues"), a.TakeOptional("flat"),
            a.Double("damping"), a.Double("min_eigenvalue"), a.Double("max_eigenvalue"), a.Int("dropped_eigenvalues"));
    }
}
