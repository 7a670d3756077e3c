using System.Runtime.InteropServices;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Scoring;

/// <summary>What one shard of the training set contributes to a score job.</summary>
/// <param name="Influence">Q×n row-major: I(z_{first+j}, test_q) = −∇L_testᵀ H⁻¹ ∇L(z) (or the method's stand-in).</param>
/// <param name="SelfInfluence">n values ∇L(z)ᵀ H⁻¹ ∇L(z), or null when the method has none.</param>
/// <param name="Passes">Passes over the rows, one per group of queries that fits the memory budget.</param>
/// <param name="SelfInfluenceSeconds">Time spent on self-influence (beside the dot products).</param>
public sealed record ShardScores(int FirstIndex, int Count, int QueryCount, double[] Influence, double[]? SelfInfluence, TopKLists TopK, int Passes = 1, double SelfInfluenceSeconds = 0);

/// <summary>Scores a contiguous range of training examples against a method's <see cref="ScorePlan"/>.</summary>
public static class ShardScorer
{
    /// <summary>
    /// Influence of every row on every query of the plan, Σ_terms weight·(−g(θ_t)ᵀq_t), and self-influence,
    /// from one backward pass per batch and term. Queries are taken in groups whose per-layer copies
    /// and B×Q intermediates fit <paramref name="memoryBudgetBytes"/>; each group is one pass over the rows.
    /// </summary>
    public static ShardScores Score(ModelSpec spec, ScorePlan plan, DataTensors rows, int firstIndex, int topK, int batchSize,
        long memoryBudgetBytes, IProgress<long>? progress = null)
    {
        int n = (int)rows.Count;
        int q = (int)plan.QueryCount;
        int group = QueriesPerPass(spec, plan, Math.Min(batchSize, n), memoryBudgetBytes);
        var influence = new double[(long)q * n];
        var self = plan.Self is null ? null : new double[n];
        int passes = 0;
        var selfClock = new System.Diagnostics.Stopwatch();
        for (int q0 = 0; q0 < q; q0 += group, passes++)
        {
            int qn = Math.Min(group, q - q0);
            var queries = plan.QueriesFor(spec, q0, qn, out bool owned);
            try
            {
                bool first = q0 == 0;
                for (int start = 0; start < n; start += batchSize)
                {
                    using var scope = NewDisposeScope();
                    int len = Math.Min(batchSize, n - start);
                    using var batch = rows.Rows(start, len);
                    var dots = zeros(len, qn, dtype: ScalarType.Float64, device: rows.X.device);
                    var selfSum = zeros(len, dtype: ScalarType.Float64, device: rows.X.device);
                    for (int t = 0; t < plan.Terms.Count; t++)
                    {
                        var term = plan.Terms[t];
                        var pieces = PerExampleGradients.Backward(spec, term.Theta, batch);
                        var d = PerExampleGradients.DotWithQueries(spec, pieces, queries[t]).to(ScalarType.Float64);
                        if (plan.Cosine) d = d.div(PerExampleGradients.SquaredNorms(pieces).to(ScalarType.Float64).sqrt().clamp_min(1e-300).unsqueeze(1));
                        dots.add_(d.mul(term.Weight));
                        if (first && plan.Self is not null)
                        {
                            selfClock.Start();
                            selfSum.add_(plan.Self.Of(spec, term, pieces).to(ScalarType.Float64));
                            selfClock.Stop();
                        }
                    }
                    // Influence is −qᵀg: negated once here, and copied row by row from native memory
                    // (a managed copy of the qn × len block, 41 MB at 10,000 queries, was left to the GC
                    // every batch).
                    CopyRows(dots.t().contiguous().neg().cpu(), influence, k => (long)(q0 + k) * n + start);
                    if (first && self is not null) Array.Copy(selfSum.cpu().data<double>().ToArray(), 0, self, start, len);
                    if (first) progress?.Report(len);
                }
            }
            finally
            {
                if (owned) foreach (var x in queries) x.Dispose();
            }
        }
        var top = TopKLists.FromBlock(influence, q, n, firstIndex, topK);
        return new ShardScores(firstIndex, n, q, influence, self, top, passes, selfClock.Elapsed.TotalSeconds);
    }

    /// <summary>Copies the rows of a contiguous float64 CPU tensor (R × L) into <paramref name="destination"/>, row r at <paramref name="offsetOfRow"/>(r).</summary>
    private static void CopyRows(Tensor block, double[] destination, Func<int, long> offsetOfRow)
    {
        int rows = (int)block.shape[0], length = (int)block.shape[1];
        // A span holds at most 2³¹ bytes: the rows go over in slices well below that.
        int rowsPerSlice = Math.Max(1, (1 << 27) / Math.Max(1, length));
        for (int r0 = 0; r0 < rows; r0 += rowsPerSlice)
        {
            int count = Math.Min(rowsPerSlice, rows - r0);
            using var slice = block.narrow(0, r0, count);
            var values = MemoryMarshal.Cast<byte, double>(slice.bytes);
            for (int r = 0; r < count; r++)
                values.Slice(r * length, length).CopyTo(destination.AsSpan(checked((int)offsetOfRow(r0 + r)), length));
        }
    }

    /// <summary>
    /// Queries per pass: each costs its per-layer copy (P values per term; none for a term that holds
    /// its layout, whose passes take views) and its share of the batch's intermediates in the dot
    /// products (B × min(In, Out) per layer, or B × 3r per low-rank layer).
    /// </summary>
    public static int QueriesPerPass(ModelSpec spec, ScorePlan plan, int batchSize, long memoryBudgetBytes)
    {
        long element = spec.Precision == Precision.Float64 ? 8 : 4;
        long widest = spec.Layers.Max(l => (long)Math.Min(l.In, l.Out));
        long copies = plan.Terms.Sum(t => t.Layout is null ? spec.ParameterCount : 0L);
        long intermediates = plan.Terms.Max(t => t.Layout?.IntermediatesPerQuery(spec) ?? widest);
        long perQuery = element * (copies + (long)batchSize * intermediates) + 8L * batchSize * 2;
        return (int)Math.Clamp(memoryBudgetBytes / Math.Max(1, perQuery), 1, int.MaxValue);
    }

    /// <summary>
    /// Examples per second of one plain batched forward+backward (the mean loss's gradient in θ) on
    /// the first batch of the rows: the floor a scorer's throughput is compared with, measured where
    /// it ran. One batch keeps the reference's cost off the job (a warm-up pass is not timed).
    /// </summary>
    public static double ForwardBackwardRate(ModelSpec spec, Tensor theta, DataTensors rows, int batchSize)
    {
        using var enabled = enable_grad();
        using var batch = rows.Rows(0, Math.Min(batchSize, rows.Count));
        void Pass()
        {
            using var scope = NewDisposeScope();
            var t = theta.detach().requires_grad_(true);
            autograd.grad([Objective.PerExampleLoss(spec, t, batch).mean()], [t])[0].Dispose();
        }
        Pass();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Pass();
        return batch.Count / sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// The machine's ceiling for scoring <paramref name="rows"/> rows: the seconds a plain matrix
    /// product of their shape takes, (rows × P) times (P × Q) per term in the model's precision (P: the
    /// width of the plan's queries, a projection's k where the method scores projected features), at
    /// the rate of one timed product of <paramref name="batchSize"/> rows (after a warm-up) against
    /// the plan's own query matrices. Scoring does these flops (2·rows·P·Q per term) and little else.
    /// </summary>
    public static double GemmSeconds(ModelSpec spec, ScorePlan plan, long rows, int batchSize)
    {
        using var scope = NewDisposeScope();
        long b = Math.Min(batchSize, Math.Max(1, rows));
        var device = plan.Terms[0].Theta.device;
        double seconds = 0;
        foreach (var term in plan.Terms)
        {
            // The queries' own width: P, or a projection's k (TRAK's features). At most 1,024 of
            // them (and 256 MB), scaled up: the reference must not cost as much as scoring 10,000
            // queries. A term in the scoring layout is timed against dense P-wide queries: the
            // product low-rank queries save on.
            long width = term.Queries?.shape[1] ?? spec.ParameterCount, element = spec.Precision == Precision.Float64 ? 8 : 4;
            long queries = term.QueryCount, timed = Math.Clamp((256L << 20) / (width * element), 1, Math.Min(queries, 1024));
            var right = (term.Queries?.narrow(0, 0, timed).to(spec.ScalarType)
                ?? randn(timed, width, dtype: spec.ScalarType, device: device, generator: new Generator(1))).t();
            var left = randn(b, right.shape[0], dtype: spec.ScalarType, device: device, generator: new Generator(0));
            left.matmul(right).Dispose(); // warm-up
            var clock = System.Diagnostics.Stopwatch.StartNew();
            left.matmul(right).cpu().Dispose();
            seconds += clock.Elapsed.TotalSeconds * queries / timed;
        }
        return seconds * rows / b;
    }

    /// <summary>Per-example gradients of the given rows (Q×P), e.g. of the test points.</summary>
    public static Tensor Gradients(ModelSpec spec, Tensor theta, DataTensors rows) =>
        PerExampleGradients.Materialize(spec, theta, rows);
}
