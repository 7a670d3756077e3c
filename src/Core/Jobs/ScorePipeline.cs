using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>How a score job's stages are run: on shard grains across silos, or in sequence on one process.</summary>
public interface IScoreStages
{
    /// <summary>The training set's shards: contiguous row ranges [Start, End), one shard each.</summary>
    IReadOnlyList<(int Start, int End)> Ranges { get; }

    /// <summary>
    /// Runs one unit of a shard stage per range (the shards' row ranges, or one per repeat), each on
    /// some shard; returns when all are done. The stage is a name the method's
    /// <see cref="InfluenceMethod.RunStage"/> knows, or <see cref="ScorePipeline.CurvatureProductStage"/>.
    /// </summary>
    Task RunShards(string stage, int round, IReadOnlyList<(int Start, int End)> units);

    /// <summary>
    /// The training rows in one contiguous range per silo that can run shard work now (one in a
    /// single process): for stages whose partial results are large (a P×P Hessian), so that each
    /// silo sums its rows before anything touches the store.
    /// </summary>
    Task<IReadOnlyList<(int Start, int End)>> PerSiloRanges();

    /// <summary>Runs a coordinator step on a compute thread.</summary>
    Task<T> Compute<T>(Func<T> step);

    /// <summary>
    /// Runs an iterative solver that needs many curvature products. Each call of the product
    /// function it is given is one round of <see cref="ScorePipeline.CurvatureProductStage"/> over the shards,
    /// summed; the solver must not hold a compute thread while a round runs.
    /// </summary>
    Task<T> Solve<T>(Func<Func<Tensor, Tensor>, T> solver);
}

/// <summary>
/// What a score job's run shares on the cluster and in one process: the method's preparation
/// (<see cref="InfluenceMethod.PrepareAsync"/>) against some <see cref="IScoreStages"/>, then the
/// score stage on every shard; the distributed products of the iterative methods.
/// </summary>
public static class ScorePipeline
{
    /// <summary>The last shard stage: influence of the shard's rows on every query, self-influence, local top-k.</summary>
    public const string ScoreStage = "score";

    /// <summary>A shard's share of a round of curvature products (the iterative methods' distributed Hessian-vector products).</summary>
    public const string CurvatureProductStage = "curvature_product";

    /// <summary>The shards' ranges merged into <paramref name="groups"/> contiguous ranges of nearly equal shard counts.</summary>
    public static IReadOnlyList<(int Start, int End)> Merge(IReadOnlyList<(int Start, int End)> ranges, int groups) =>
        ScoreSettings.ShardRanges(ranges.Count, Math.Max(1, groups)).Select(g => (ranges[g.Start].Start, ranges[g.End - 1].End)).ToList();

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
    public IReadOnlyList<(int Start, int End)> Ranges { get; } = job.Settings.ShardRangesFor(train.Count);

    public Task RunShards(string stage, int round, IReadOnlyList<(int Start, int End)> units)
    {
        for (int k = 0; k < units.Count; k++) job.RunStage(stage, checkpoint, train, new ShardUnit(k, units[k].Start, units[k].End, round), progress: null);
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<(int Start, int End)>> PerSiloRanges() => Task.FromResult(ScorePipeline.Merge(Ranges, 1));

    public Task<T> Compute<T>(Func<T> step) => Task.FromResult(step());

    public Task<T> Solve<T>(Func<Func<Tensor, Tensor>, T> solver) =>
        Task.FromResult(solver(ScorePipeline.Products(job, Ranges.Count, r => RunShards(ScorePipeline.CurvatureProductStage, r, Ranges).GetAwaiter().GetResult())));

    /// <summary>The whole job on this process: train, prepare the method, score every shard, write the outputs.</summary>
    public static ScoreResult Run(ScoreJob job, IProgress<string>? progress = null)
    {
        var data = job.LoadData();
        var checkpoint = job.TrainOrLoad(data, progress);
        var stages = new InProcessStages(job, checkpoint, data.Train);
        var report = job.Method.PrepareAsync(job, checkpoint, data, stages, progress).GetAwaiter().GetResult();
        var ranges = stages.Ranges;
        using var plan = job.LoadPlan(checkpoint);
        var tops = ranges.Select((r, k) => job.ScoreShard(checkpoint, data.Train, plan, k, r.Start, r.End)).ToList();
        var merged = TopKLists.Merge(tops, job.Settings.TopK);
        var runs = ranges.Select((r, k) => new ShardRun(k, r.Start, r.End, "in-process", 0, 0)).ToList();
        ScoreOutputs.Write(job, data, checkpoint, report, runs, merged, new Dictionary<string, double>());
        return new ScoreResult(report, checkpoint);
    }
}

public sealed record ScoreResult(MethodReport Report, Checkpoint Checkpoint);
