using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>Work a shard does for a method before scoring; one artifact per unit.</summary>
public enum ShardWork
{
    /// <summary>Σ ∇²L_i over the shard's rows (exact).</summary>
    PartialHessian,
    /// <summary>Σ_i (curvature of L_i) V for the round's V (cg, arnoldi, lissa's spectrum).</summary>
    CurvatureProduct,
    /// <summary>One LiSSA recursion (units are repeats, not row ranges).</summary>
    LissaRepeat,
    /// <summary>K-FAC factor sums Σāāᵀ, Σδδᵀ.</summary>
    FactorSums,
    /// <summary>EK-FAC eigenvalue-correction sums.</summary>
    CorrectionSums,
    /// <summary>TRAK: projected per-example gradients Φ_b and Φ_bᵀΦ_b (kept across jobs).</summary>
    ProjectedFeatures,
    /// <summary>cg, lissa: (H + δI)⁻¹∇L(z) for each row, by the method's solver on the silo's copy of the data; keeps ∇L(z)ᵀx.</summary>
    SelfInfluenceSolves,
}

/// <summary>How a score job's stages are run: on shard grains across silos, or in sequence on one process.</summary>
public interface IScoreStages
{
    /// <summary>Runs one unit of <paramref name="work"/> per range, each on some shard; returns when all are done.</summary>
    Task RunShards(ShardWork work, int round, IReadOnlyList<(int Start, int End)> units);

    /// <summary>Runs a coordinator step on a compute thread.</summary>
    Task<T> Compute<T>(Func<T> step);

    /// <summary>
    /// Runs an iterative solver that needs many curvature products. Each call of the product
    /// function it is given is one round of <see cref="ShardWork.CurvatureProduct"/> over the shards,
    /// summed; the solver must not hold a compute thread while a round runs.
    /// </summary>
    Task<T> Solve<T>(Func<Func<Tensor, Tensor>, T> solver);
}

/// <summary>
/// The order of a score job's steps for each method, written once for the coordinator grain and
/// for one-process runs: shard stages, then the coordinator step that combines them into the
/// score terms.
/// </summary>
public static class ScorePipeline
{
    public static async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress = null)
    {
        var ranges = ScoreSettings.ShardRanges(data.Train.Count, job.Settings.Shards);
        switch (job.Settings.Method)
        {
            case Methods.Exact:
                await stages.RunShards(ShardWork.PartialHessian, 0, ranges);
                progress?.Report($"factorising the {checkpoint.Spec.ParameterCount}×{checkpoint.Spec.ParameterCount} Hessian");
                return await stages.Compute(() => job.Factorize(checkpoint, data, ranges.Select((_, k) => job.PartialHessianKey(k)).ToList()));
            case Methods.Cg or Methods.Arnoldi or Methods.Lissa:
            {
                var report = await stages.Solve(products => job.SolveWithProducts(checkpoint, data, products, progress));
                if (job.Settings.Method == Methods.Lissa)
                {
                    int repeats = job.Settings.Options.LissaRepeats;
                    progress?.Report($"LiSSA: {repeats} repeats of depth {job.Settings.Options.LissaDepth}");
                    await stages.RunShards(ShardWork.LissaRepeat, 0, Enumerable.Repeat((0, data.Train.Count), repeats).ToList());
                    report = await stages.Compute(() => job.CombineLissa(checkpoint, repeats));
                }
                if (!job.Settings.SolvesSelfInfluence) return report;
                progress?.Report($"self-influence: one {job.Settings.Method} solve per training example ({data.Train.Count})");
                await stages.RunShards(ShardWork.SelfInfluenceSolves, 0, ranges);
                return await stages.Compute(() => job.FinishSelfInfluenceSolves(ranges.Count));
            }
            case Methods.Kfac or Methods.Ekfac:
                await stages.RunShards(ShardWork.FactorSums, 0, ranges);
                progress?.Report("eigendecomposing the Kronecker factors");
                await stages.Compute(() => { job.CombineFactors(checkpoint, ranges.Count); return 0; });
                if (job.Settings.Method == Methods.Ekfac) await stages.RunShards(ShardWork.CorrectionSums, 0, ranges);
                return await stages.Compute(() => job.FinishKronecker(checkpoint, data, ranges.Count));
            case Methods.Trak:
            {
                // Shards whose features exist (an earlier job on the same model and rows) skip the work.
                int reused = ranges.Count(r => job.Store.Exists(job.FeaturesKey(checkpoint, data.Train, r.Start, r.End)));
                await stages.RunShards(ShardWork.ProjectedFeatures, 0, ranges);
                progress?.Report($"factorising the {job.Settings.Options.ProjectionDim}×{job.Settings.Options.ProjectionDim} projected curvature");
                return await stages.Compute(() => job.FinishTrak(checkpoint, data, ranges, reused));
            }
            default:
                return await stages.Compute(() => job.GradientTerms(checkpoint, data));
        }
    }

    /// <summary>A distributed product function from a runner of product rounds: writes V, runs the round, sums the parts.</summary>
    public static Func<Tensor, Tensor> Products(ScoreJob job, int shards, Action<int> runRound)
    {
        int round = 0;
        return v =>
        {
            int r = round++;
            job.WriteProductInput(r, v);
            runRound(r);
            return job.SumProductParts(r, shards);
        };
    }
}

/// <summary>Runs every stage in sequence on the calling thread: tests, benchmarks and one-process comparisons.</summary>
public sealed class InProcessStages(ScoreJob job, Checkpoint checkpoint, Dataset train) : IScoreStages
{
    public Task RunShards(ShardWork work, int round, IReadOnlyList<(int Start, int End)> units)
    {
        for (int k = 0; k < units.Count; k++) job.RunShardWork(work, checkpoint, train, round, k, units[k].Start, units[k].End, progress: null);
        return Task.CompletedTask;
    }

    public Task<T> Compute<T>(Func<T> step) => Task.FromResult(step());

    public Task<T> Solve<T>(Func<Func<Tensor, Tensor>, T> solver)
    {
        var ranges = ScoreSettings.ShardRanges(train.Count, job.Settings.Shards);
        return Task.FromResult(solver(ScorePipeline.Products(job, ranges.Count, r => RunShards(ShardWork.CurvatureProduct, r, ranges).GetAwaiter().GetResult())));
    }

    /// <summary>The whole job on this process: train, prepare the method, score every shard, write the outputs.</summary>
    public static ScoreResult Run(ScoreJob job, IProgress<string>? progress = null)
    {
        var data = job.LoadData();
        var checkpoint = job.TrainOrLoad(data, progress);
        var stages = new InProcessStages(job, checkpoint, data.Train);
        var report = ScorePipeline.PrepareAsync(job, checkpoint, data, stages, progress).GetAwaiter().GetResult();
        var ranges = ScoreSettings.ShardRanges(data.Train.Count, job.Settings.Shards);
        using var plan = job.LoadPlan(checkpoint);
        var tops = ranges.Select((r, k) => job.ScoreShard(checkpoint, data.Train, plan, k, r.Start, r.End)).ToList();
        var merged = TopKLists.Merge(tops, job.Settings.TopK);
        var runs = ranges.Select((r, k) => new ShardRun(k, r.Start, r.End, "in-process", 0, 0)).ToList();
        ScoreOutputs.Write(job, data, checkpoint, report, runs, merged, new Dictionary<string, double>());
        return new ScoreResult(report, checkpoint);
    }
}

public sealed record ScoreResult(MethodReport Report, Checkpoint Checkpoint);
