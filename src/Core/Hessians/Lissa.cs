using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>Settings of the LiSSA recursion (Agarwal et al. 2017; Koh and Liang 2017).</summary>
/// <param name="Damping">δ: the result approximates (H + δI)⁻¹ v.</param>
/// <param name="Scale">s, above the largest eigenvalue of H + δI, so that the recursion contracts.</param>
/// <param name="Depth">Recursion steps per repeat.</param>
/// <param name="Repeats">Independent recursions averaged.</param>
/// <param name="BatchSize">Training rows per curvature product (a fresh random batch each step).</param>
public sealed record LissaSettings(double Damping, double Scale, int Depth, int Repeats, int BatchSize, int Seed)
{
    public void Validate()
    {
        if (!(Scale > 0)) throw new ArgumentException($"LiSSA scale must be positive, not {Scale}");
        if (Damping < 0) throw new ArgumentException($"LiSSA damping must be ≥ 0, not {Damping}");
        if (Depth < 1 || Repeats < 1 || BatchSize < 1) throw new ArgumentException("LiSSA depth, repeats and batch size must be ≥ 1");
    }
}

/// <summary>How a LiSSA estimate went: a diverging recursion is reported, never averaged in silently.</summary>
/// <param name="FinalStepNorms">Per repeat, ‖h_J − h_{J−1}‖ / ‖v‖ over the columns (small when the recursion settled).</param>
public sealed record LissaReport(int Repeats, int Diverged, double[] FinalStepNorms, long Products);

/// <summary>
/// The stochastic recursion h₀ = v, h_j = v + h_{j−1} − (H_B + δI) h_{j−1} / s, whose fixed point
/// h/s = (H + δI)⁻¹ v; H_B is the curvature on a random batch of training rows.
/// </summary>
public static class Lissa
{
    /// <summary>A recursion whose iterate grows past this multiple of ‖v‖ is diverging (s is below the largest eigenvalue).</summary>
    public const double DivergenceFactor = 1e8;

    /// <param name="batchProduct">(H_B + δI) V for the rows a generator picks: (V, batch rows) → P×K.</param>
    public static (Tensor Estimate, LissaReport Report) Solve(Func<Tensor, long[], Tensor> batchProduct, Tensor v, long trainCount, LissaSettings settings)
    {
        settings.Validate();
        using var scope = NewDisposeScope();
        var rng = new Random(settings.Seed);
        var sum = zeros_like(v);
        int diverged = 0;
        long products = 0;
        double vNorm = v.norm().ToDouble();
        var stepNorms = new double[settings.Repeats];
        for (int r = 0; r < settings.Repeats; r++)
        {
            var h = v.clone();
            bool bad = false;
            double lastStep = 0;
            for (int j = 0; j < settings.Depth; j++)
            {
                using var step = NewDisposeScope();
                var rows = Batch(rng, trainCount, settings.BatchSize);
                var next = v.add(h).sub(batchProduct(h, rows).div(settings.Scale));
                products += v.shape[1];
                lastStep = next.sub(h).norm().ToDouble() / Math.Max(vNorm, double.Epsilon);
                // Free the previous iterate now: it belongs to the outer scope, which would otherwise
                // hold all Depth of them (P × K each: 24 GB on a 203k-parameter MLP with 100 queries).
                var previous = h;
                h = next.MoveToOuterDisposeScope();
                previous.Dispose();
                double norm = h.norm().ToDouble();
                if (!double.IsFinite(norm) || norm > DivergenceFactor * vNorm) { bad = true; break; }
            }
            stepNorms[r] = bad ? double.PositiveInfinity : lastStep;
            if (bad) diverged++;
            else sum.add_(h.div(settings.Scale));
        }
        int kept = settings.Repeats - diverged;
        var estimate = kept > 0 ? sum.div(kept) : full_like(v, double.NaN);
        return (estimate.MoveToOuterDisposeScope(), new LissaReport(settings.Repeats, diverged, stepNorms, products));
    }

    private static long[] Batch(Random rng, long n, int size)
    {
        if (size >= n) return [.. Enumerable.Range(0, (int)n).Select(i => (long)i)];
        var rows = new HashSet<long>();
        while (rows.Count < size) rows.Add(rng.NextInt64(n));
        return [.. rows.Order()];
    }
}
