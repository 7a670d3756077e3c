using Influence.Core.Storage;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// What every method's steps share: the query gradients, the score terms and method report that
/// end a preparation, the plan a shard scores with, sums of the shards' partial results, and the
/// distributed curvature-vector products of the iterative methods.
/// </summary>
public sealed partial class ScoreJob
{
    public string ProductInputKey(int round) => WorkKey($"hvp/{round:D5}/v.safetensors");
    public string ProductPartKey(int round, int shard) => WorkKey($"hvp/{round:D5}/part-{shard:D4}.safetensors");

    private static Device Device => Compute.Devices.Default;

    /// <summary>Q×P gradients of the chosen test points' losses at θ (the queries' layout in the score terms).</summary>
    public Tensor QueryGradients(Checkpoint checkpoint, TrainTestData data, Tensor theta)
    {
        using var test = DataTensors.From(data.Test.Select(Settings.TestIndices), checkpoint.Spec, Device);
        return ShardScorer.Gradients(checkpoint.Spec, theta, test);
    }

    /// <summary>
    /// <paramref name="reduce"/> of the Q×P query gradients, computed <see cref="QueryBlockRows"/>
    /// test points at a time and stacked: for a map that shrinks each row (TRAK's projection), the
    /// full Q×P matrix is never held (10,000 queries of a 203,530-parameter MLP are 8.1 GB).
    /// </summary>
    public Tensor QueryGradients(Checkpoint checkpoint, TrainTestData data, Tensor theta, Func<Tensor, Tensor> reduce)
    {
        var blocks = new List<Tensor>();
        try
        {
            foreach (var g in QueryGradientBlocks(checkpoint, data, theta))
                using (g)
                using (NewDisposeScope())
                    blocks.Add(reduce(g).DetachFromDisposeScope());
            return cat(blocks, 0);
        }
        finally
        {
            foreach (var b in blocks) b.Dispose();
        }
    }

    /// <summary>The query gradients <see cref="QueryBlockRows"/> test points at a time (the caller disposes each).</summary>
    private IEnumerable<Tensor> QueryGradientBlocks(Checkpoint checkpoint, TrainTestData data, Tensor theta)
    {
        var indices = Settings.TestIndices;
        for (int i0 = 0; i0 < indices.Length; i0 += QueryBlockRows)
        {
            Tensor g;
            using (NewDisposeScope())
            using (var test = DataTensors.From(data.Test.Select(indices[i0..Math.Min(indices.Length, i0 + QueryBlockRows)]), checkpoint.Spec, Device))
                g = ShardScorer.Gradients(checkpoint.Spec, theta, test).DetachFromDisposeScope();
            yield return g;
        }
    }

    /// <summary>Test points per block of the query gradients (tests set fewer to cover several blocks).</summary>
    public int QueryBlockRows { get; init; } = 512;

    /// <summary>P×Q gradients of the chosen test points' losses at θ (right-hand sides of the solvers).</summary>
    public Tensor TestGradients(Checkpoint checkpoint, TrainTestData data, Tensor theta)
    {
        using var g = QueryGradients(checkpoint, data, theta);
        return g.t().contiguous();
    }

    /// <summary>The method's score terms (preconditioned queries, factors) are in the store: preparation is done.</summary>
    public bool HasScoreTerms => Store.Exists(TermsKey);

    public MethodReport LoadMethodReport()
    {
        using var s = Store.OpenRead(MethodReportKey);
        return MethodReport.Load(s);
    }

    public void SaveMethodReport(MethodReport report) => Store.Write(MethodReportKey, report.Save);

    /// <summary>Writes the report, then the single term (θ̂, Q×P preconditioned queries): the terms' existence marks the step done.</summary>
    public MethodReport FinishPreconditioning(Tensor theta, Tensor queries, MethodReport report) => FinishTerms([new ScoreTerm(theta, queries, 1.0)], report);

    /// <summary>
    /// Preconditions the queries a block of <see cref="QueryBlockRows"/> test points at a time
    /// (<paramref name="precondition"/>: B×P gradients to B×P) and finishes. With --query-rank r
    /// each block goes to the scoring layout at once (rank-r per-layer factors), so that no Q×P
    /// matrix is held: the term stores Q·r·(Out + In + 1) values per low-rank layer instead of
    /// Q·P (1.4 GB instead of 8.1 GB for 10,000 queries of the MLP 784-256-10 at rank 32).
    /// </summary>
    public MethodReport FinishPreconditioning(Checkpoint checkpoint, TrainTestData data, Tensor theta, Func<Tensor, Tensor> precondition, MethodReport report)
    {
        var spec = checkpoint.Spec;
        int rank = Settings.Options.QueryRank;
        if (rank == 0) return FinishPreconditioning(theta, QueryGradients(checkpoint, data, theta, precondition), report);
        var blocks = new List<PerExampleGradients.Queries>();
        try
        {
            foreach (var g in QueryGradientBlocks(checkpoint, data, theta))
            {
                using (g)
                using (NewDisposeScope())
                    blocks.Add(new PerExampleGradients.Queries(spec, precondition(g).to(spec.ScalarType), rank).DetachFromDisposeScope());
                Stopping.ThrowIfCancellationRequested();
            }
            return FinishTerms([new ScoreTerm(theta, PerExampleGradients.Queries.Concat(blocks), 1.0)], report);
        }
        finally
        {
            foreach (var b in blocks) b.Dispose();
        }
    }

    /// <summary>Writes the report, then the terms: the terms' existence marks the preparation done.</summary>
    public MethodReport FinishTerms(IReadOnlyList<ScoreTerm> terms, MethodReport report)
    {
        SaveMethodReport(report);
        Store.Write(TermsKey, s => ScorePlan.WriteTerms(s, terms));
        return report;
    }

    /// <summary>What a shard scores with: the terms, and the method's self-influence.</summary>
    public ScorePlan LoadPlan(Checkpoint checkpoint)
    {
        List<ScoreTerm> terms;
        using (var s = Store.OpenRead(TermsKey)) terms = ScorePlan.ReadTerms(s, $"artifact '{TermsKey}'", Device, checkpoint.Spec);
        return new ScorePlan(terms, Method.SelfInfluence(this, checkpoint, LoadMethodReport()), Method.Cosine, Settings.Options.QueryRank)
        {
            State = Method.LoadScoringState(this, checkpoint),
        };
    }

    /// <summary>One unit of a shard stage: a round of curvature products (shared by the iterative methods), or one of the method's own stages.</summary>
    /// <param name="progress">Rows done, for the stages that report them as they go (self-influence solves).</param>
    public long RunStage(string stage, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress) =>
        stage == ScorePipeline.CurvatureProductStage
            ? CurvatureProduct(checkpoint, train, unit)
            : Method.RunStage(stage, this, checkpoint, train, unit, progress);

    /// <summary>The sum of tensors stored under the keys (shards' partial sums), taking one handed off in memory (<see cref="HandOff"/>) instead of reading it.</summary>
    public Tensor SumStored(IEnumerable<string> keys)
    {
        Tensor? sum = null;
        foreach (var key in keys)
        {
            var part = TakeHandedOff(key) ?? ReadTensor(key);
            if (sum is null) sum = part; else { sum.add_(part); part.Dispose(); }
        }
        return sum ?? throw new InvalidOperationException("no partial sums to add");
    }

    /// <summary>The tensor handed off under the key, as a tensor of the caller's dispose scope (the kept one is outside every scope).</summary>
    private Tensor? TakeHandedOff(string key)
    {
        using var kept = HandOff.Process.Take<Tensor>(Store, key);
        return kept?.alias(); // the same memory, owned by the caller's scope
    }

    public Tensor ReadTensor(string key) => TensorArchive.ReadOne(Store, key, Device);

    public void WriteTensor(string key, Tensor t) => TensorArchive.WriteOne(Store, key, t);

    // ---- Curvature products (cg, lissa, arnoldi) ----

    /// <summary>Shard step: Σ over rows [start, end) of the curvature times the round's vectors V (P×K); returns K (0 when already done).</summary>
    private long CurvatureProduct(Checkpoint checkpoint, Dataset train, ShardUnit unit)
    {
        var key = ProductPartKey(unit.Round, unit.Index);
        if (Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        using var rows = DataTensors.From(train, unit.Start, unit.End, spec, Device);
        var v = ReadTensor(ProductInputKey(unit.Round));
        var sum = HessianVectorProducts.DataSum(spec, checkpoint.Theta(Device), rows, v.to(spec.ScalarType), Settings.Options.Curvature);
        WriteTensor(key, sum);
        return v.shape[1];
    }

    public void WriteProductInput(int round, Tensor v) => WriteTensor(ProductInputKey(round), v);

    /// <summary>Adds the shards' partial products of a round, then deletes the round's artifacts (they are as large as V).</summary>
    public Tensor SumProductParts(int round, int shards)
    {
        var sum = SumStored(Enumerable.Range(0, shards).Select(k => ProductPartKey(round, k)));
        Store.DeletePrefix(WorkKey($"hvp/{round:D5}/"));
        return sum;
    }

    /// <summary>A product function that gives up when the silo is stopping (solvers call it once per iteration).</summary>
    public Func<Tensor, Tensor> Checked(Func<Tensor, Tensor> product) => v =>
    {
        Stopping.ThrowIfCancellationRequested();
        return product(v);
    };

    public Func<Tensor, T, Tensor> Checked<T>(Func<Tensor, T, Tensor> product) => (v, a) =>
    {
        Stopping.ThrowIfCancellationRequested();
        return product(v, a);
    };
}
