using Influence.Core.Storage;
using Influence.Core.Hessians;
using Influence.Core.Models;
using static TorchSharp.torch;

namespace Influence.Core.Scoring;

/// <summary>
/// One term of a score: weight · ∇L(z; θ)ᵀ q for each query q. Influence methods have one term at
/// θ̂ with the preconditioned queries; TracIn has one per checkpoint. The queries are either a Q×P
/// matrix (<see cref="Queries"/>; a plan truncates them to --query-rank when it scores) or already
/// in the scoring layout (<see cref="Layout"/>: per-layer blocks, low-rank where truncated), which a
/// method builds block by block when Q×P would not fit in memory.
/// </summary>
public sealed class ScoreTerm : IDisposable
{
    public ScoreTerm(Tensor theta, Tensor queries, double weight) => (Theta, Queries, Weight) = (theta, queries, weight);

    public ScoreTerm(Tensor theta, PerExampleGradients.Queries layout, double weight) => (Theta, Layout, Weight) = (theta, layout, weight);

    public Tensor Theta { get; }
    /// <summary>Q×P query vectors, or null where the term holds its <see cref="Layout"/>.</summary>
    public Tensor? Queries { get; }
    public PerExampleGradients.Queries? Layout { get; }
    public double Weight { get; }
    public long QueryCount => Queries?.shape[0] ?? Layout!.Count;

    /// <summary>The dense Q×P queries (TRAK's Q×k); for methods whose terms always have them.</summary>
    public Tensor DenseQueries => Queries ?? throw new InvalidOperationException("the term's queries are in the per-layer scoring layout, not a Q×P matrix");

    public void Dispose()
    {
        Theta.Dispose();
        Queries?.Dispose();
        Layout?.Dispose();
    }
}

/// <summary>Each method's self-influence s(z) of a batch, from the same backward pass that gives its dot products.</summary>
public abstract class SelfInfluence : IDisposable
{
    /// <summary>B values to add for one term.</summary>
    public abstract Tensor Of(ModelSpec spec, ScoreTerm term, PerExampleGradients.Pieces pieces);

    public virtual void Dispose() { }

    /// <summary>
    /// gᵀ(H + δI)⁺g with the exact factorisation. The gradients are materialised (P is small) into
    /// one B×P buffer kept across batches: fresh B×P allocations are several times slower.
    /// </summary>
    public sealed class Exact(HessianInverse inverse, bool ownsInverse = true) : SelfInfluence
    {
        private Tensor? buffer;

        public override Tensor Of(ModelSpec spec, ScoreTerm term, PerExampleGradients.Pieces pieces)
        {
            long b = pieces.Inputs[0].shape[0];
            if (buffer is null || buffer.shape[0] < b)
            {
                buffer?.Dispose();
                buffer = empty(b, spec.ParameterCount, dtype: spec.ScalarType, device: term.Theta.device).DetachFromDisposeScope();
            }
            var g = buffer.narrow(0, 0, b);
            PerExampleGradients.Materialize(spec, pieces, g);
            return inverse.QuadraticForms(g);
        }

        public override void Dispose()
        {
            buffer?.Dispose();
            if (ownsInverse) inverse.Dispose();
        }
    }

    /// <summary>Σ_i (u_iᵀg)² / d_i over kept eigenpairs (Arnoldi): dot products with the eigenvectors, no B×P matrix.</summary>
    public sealed class LowRank(ModelSpec spec, Tensor vectors, Tensor denominators) : SelfInfluence
    {
        private readonly PerExampleGradients.Queries basis = new(spec, vectors.t().contiguous());

        public override Tensor Of(ModelSpec spec, ScoreTerm term, PerExampleGradients.Pieces pieces)
        {
            using var scope = NewDisposeScope();
            var dots = PerExampleGradients.DotWithQueries(spec, pieces, basis).to(ScalarType.Float64);
            return dots.square().div(denominators.unsqueeze(0)).sum(1L, false).MoveToOuterDisposeScope();
        }

        public override void Dispose()
        {
            basis.Dispose();
            vectors.Dispose();
            denominators.Dispose();
        }
    }

    /// <summary>gᵀ(F̂ + (λ + δ)I)⁻¹g per layer in the Kronecker eigenbasis (K-FAC / EK-FAC), from the pieces.</summary>
    public sealed class Kronecker(KroneckerFactors factors, double damping, bool ekfac) : SelfInfluence
    {
        public override Tensor Of(ModelSpec spec, ScoreTerm term, PerExampleGradients.Pieces pieces) => factors.QuadraticForms(pieces, damping, ekfac);

        public override void Dispose() => factors.Dispose();
    }

    /// <summary>weight · ‖g‖² (TracIn: Σ_t η_t ‖∇L(z; θ_t)‖²; grad-dot: ‖∇L(z)‖²).</summary>
    public sealed class SquaredNorm : SelfInfluence
    {
        public override Tensor Of(ModelSpec spec, ScoreTerm term, PerExampleGradients.Pieces pieces) =>
            PerExampleGradients.SquaredNorms(pieces).mul(term.Weight);
    }
}

/// <summary>What a shard needs to score its rows with a method: the terms, how to get self-influence, and whether scores are cosines.</summary>
public sealed class ScorePlan(IReadOnlyList<ScoreTerm> terms, SelfInfluence? self, bool cosine, int queryRank = 0) : IDisposable
{
    /// <summary>Rank of each query's per-layer blocks when scoring (0 = exact; see <see cref="PerExampleGradients.Queries"/>).</summary>
    public int QueryRank { get; } = queryRank;
    public IReadOnlyList<ScoreTerm> Terms { get; } = terms;
    public SelfInfluence? Self { get; } = self;
    /// <summary>Divide each training example's dot products by its gradient norm (grad-cos; the queries are unit vectors already).</summary>
    public bool Cosine { get; } = cosine;
    public long QueryCount => Terms[0].QueryCount;
    /// <summary>What the method's own row scoring reads besides the terms (<see cref="Jobs.InfluenceMethod.LoadScoringState"/>), or null.</summary>
    public IDisposable? State { get; init; }

    private readonly Lock gate = new();
    private PerExampleGradients.Queries[]? whole;

    /// <summary>
    /// Each term's queries [q0, q0 + qn) in the scoring layout. When that is every query (one pass),
    /// they are built once and kept for the plan's next shard (low-rank factors are the costly part);
    /// <paramref name="owned"/> says whether the caller disposes them. A term that holds its layout
    /// already gives views of it.
    /// </summary>
    public PerExampleGradients.Queries[] QueriesFor(ModelSpec spec, int q0, int qn, out bool owned)
    {
        PerExampleGradients.Queries[] Build() => Terms.Select(t => t.Layout is { } layout
            ? layout.Slice(q0, qn)
            : new PerExampleGradients.Queries(spec, t.Queries!.narrow(0, q0, qn).to(spec.ScalarType), QueryRank)).ToArray();
        owned = q0 != 0 || qn != QueryCount;
        if (owned) return Build();
        lock (gate) return whole ??= Build();
    }

    /// <summary>Disposes the kept queries (a plan that borrows its terms is never disposed itself).</summary>
    public void ReleaseQueries()
    {
        lock (gate)
        {
            foreach (var q in whole ?? []) q.Dispose();
            whole = null;
        }
    }

    public void Dispose()
    {
        foreach (var t in Terms) t.Dispose();
        ReleaseQueries();
        Self?.Dispose();
        State?.Dispose();
    }

    /// <summary>Writes the terms: θ, weight, and the queries (term{k}.queries, or the layout's term{k}.layerL.* tensors) each.</summary>
    public static void WriteTerms(Stream stream, IReadOnlyList<ScoreTerm> terms)
    {
        using var weights = tensor(terms.Select(t => t.Weight).ToArray(), dtype: ScalarType.Float64);
        TensorArchive.Write(stream, terms.SelectMany((t, k) =>
                t.Layout?.Entries($"term{k}").Prepend(new($"term{k}.theta", t.Theta))
                ?? [new($"term{k}.theta", t.Theta), new($"term{k}.queries", t.Queries!)])
            .Prepend(new("weights", weights)));
    }

    public static List<ScoreTerm> ReadTerms(Stream stream, string source, Device device, ModelSpec spec)
    {
        using var archive = TensorArchive.Read(stream, source, device);
        var weights = archive["weights"].data<double>().ToArray();
        return weights.Select((w, k) => archive.Has($"term{k}.queries")
            ? new ScoreTerm(archive.Take($"term{k}.theta"), archive.Take($"term{k}.queries"), w)
            : new ScoreTerm(archive.Take($"term{k}.theta"), PerExampleGradients.Queries.Take(archive, $"term{k}", spec, source), w)).ToList();
    }
}
