using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>How one right-hand side's solve ended.</summary>
/// <param name="RelativeResidual">‖b − A x‖ / ‖b‖ at the end (the recursive residual).</param>
/// <param name="NegativeCurvature">A search direction had pᵀAp ≤ 0: A is not positive definite there, and the solve stopped.</param>
public sealed record SolveReport(int Iterations, double RelativeResidual, bool Converged, bool NegativeCurvature);

/// <summary>
/// Conjugate gradient for A X = B with A symmetric positive definite, given only products A V:
/// each column of B is solved independently, all columns in lockstep so that one call of
/// <c>apply</c> (one round of distributed HVPs) serves every unfinished column. With a
/// preconditioner M⁻¹ (symmetric positive definite) it is preconditioned CG; the stopping test is
/// on the true residual's norm either way.
/// </summary>
public static class ConjugateGradient
{
    /// <param name="apply">A V for V of shape P×K (K = the unfinished columns).</param>
    /// <param name="b">P×Q right-hand sides.</param>
    /// <param name="tolerance">Stop a column when ‖r‖ ≤ tolerance·‖b‖.</param>
    /// <param name="flat">Orthonormal basis of directions to keep the iterates out of (A's null space), or null.</param>
    /// <param name="precondition">M⁻¹ R for residuals R (P×K), or null for plain CG.</param>
    public static (Tensor X, SolveReport[] Reports) Solve(Func<Tensor, Tensor> apply, Tensor b, double tolerance, int maxIterations, Tensor? flat = null,
        Func<Tensor, Tensor>? precondition = null)
    {
        if (b.dim() != 2) throw new ArgumentException("B must be P×Q");
        if (!(tolerance > 0)) throw new ArgumentOutOfRangeException(nameof(tolerance), "the tolerance must be positive");
        if (maxIterations < 1) throw new ArgumentOutOfRangeException(nameof(maxIterations), "at least one iteration");
        int q = (int)b.shape[1];
        using var scope = NewDisposeScope();
        Tensor Project(Tensor v) => Models.Network.WithoutFlat(v, flat);
        Tensor Precondition(Tensor residual) => precondition is null ? residual : Project(precondition(residual));
        static double[] Columns(Tensor t) => t.to_type(ScalarType.Float64).data<double>().ToArray();

        var rhs = Project(b);
        var x = zeros_like(rhs);
        var r = rhs.clone();
        var z = Precondition(r);
        var p = z.clone();
        var rz = Columns(r.mul(z).sum(0L, false));      // rᵀM⁻¹r, CG's step-size numerator
        var rNorm = Columns(r.square().sum(0L, false)).Select(Math.Sqrt).ToArray();
        var bNorm = rNorm.ToArray();
        var iterations = new int[q];
        var converged = new bool[q];
        var negative = new bool[q];
        var active = new List<int>();
        for (int j = 0; j < q; j++)
        {
            if (bNorm[j] == 0) converged[j] = true;
            else active.Add(j);
        }

        for (int it = 0; it < maxIterations && active.Count > 0; it++)
        {
            using var step = NewDisposeScope();
            var idx = tensor(active.Select(j => (long)j).ToArray(), device: b.device);
            var pa = p.index_select(1, idx);
            var ap = Project(apply(pa));
            var pap = pa.mul(ap).sum(0L, false).to_type(ScalarType.Float64).data<double>().ToArray();
            var alpha = new double[active.Count];
            var keep = new List<int>();
            for (int k = 0; k < active.Count; k++)
            {
                int j = active[k];
                iterations[j]++;
                if (!(pap[k] > 0))
                {
                    negative[j] = true; // the column keeps the iterate it has
                    continue;
                }
                alpha[k] = rz[j] / pap[k];
                keep.Add(k);
            }
            var alphaT = tensor(alpha, dtype: ScalarType.Float64, device: b.device).to_type(b.dtype);
            x.index_add_(1, idx, pa.mul(alphaT), 1.0);
            var ra = r.index_select(1, idx).sub(ap.mul(alphaT));
            var za = Precondition(ra);
            var rzNew = Columns(ra.mul(za).sum(0L, false));
            var raNorm = precondition is null ? rzNew.Select(Math.Sqrt).ToArray() : Columns(ra.square().sum(0L, false)).Select(Math.Sqrt).ToArray();
            var beta = new double[active.Count];
            for (int k = 0; k < active.Count; k++) beta[k] = alpha[k] == 0 ? 0 : rzNew[k] / rz[active[k]];
            var pNew = za.add(pa.mul(tensor(beta, dtype: ScalarType.Float64, device: b.device).to_type(b.dtype)));
            r.index_copy_(1, idx, ra);
            p.index_copy_(1, idx, pNew);

            var next = new List<int>();
            foreach (var k in keep)
            {
                int j = active[k];
                rz[j] = rzNew[k];
                rNorm[j] = raNorm[k];
                if (rNorm[j] <= tolerance * bNorm[j]) converged[j] = true;
                else next.Add(j);
            }
            active = next;
        }

        var reports = Enumerable.Range(0, q).Select(j => new SolveReport(iterations[j], bNorm[j] == 0 ? 0 : rNorm[j] / bNorm[j], converged[j], negative[j])).ToArray();
        return (x.MoveToOuterDisposeScope(), reports);
    }
}
