using Influence.Core.Storage;
using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>How a shard's self-influence solves went (cg: residuals; lissa: diverged repeats).</summary>
public sealed record SelfSolveStats(int Solves, int Unconverged, int NegativeCurvature, double LargestResidual, int DivergedRepeats, int AllDiverged, long Products)
{
    public static readonly SelfSolveStats None = new(0, 0, 0, 0, 0, 0, 0);

    public SelfSolveStats Add(SelfSolveStats o) => new(Solves + o.Solves, Unconverged + o.Unconverged, NegativeCurvature + o.NegativeCurvature,
        Math.Max(LargestResidual, o.LargestResidual), DivergedRepeats + o.DivergedRepeats, AllDiverged + o.AllDiverged, Products + o.Products);
}

/// <summary>
/// The iterative methods whose preconditioner is a solver rather than a matrix (cg, lissa):
/// self-influence s(z) = ∇L(z)ᵀ(H + δI)⁻¹∇L(z) needs one solve per training example, made when
/// asked (--solve-self-influence) in the <see cref="SelfInfluenceSolvesStage"/>. Each shard solves
/// for its own rows with the method's solver and settings, the curvature products taken over its
/// silo's copy of the whole training set (the rows are the parallel unit here, not the products:
/// N independent solves need no rounds between silos).
/// </summary>
public abstract class SelfSolvingMethod : CurvatureProductMethod
{
    public const string SelfInfluenceSolvesStage = "self_influence_solves";

    public override SelfInfluenceSource SelfInfluenceSource => SelfInfluenceSource.Solves;

    private static string SelfInfluenceKey(ScoreJob job, int shard) => job.WorkKey($"self-{shard:D4}.safetensors");

    /// <summary>The method's preparation without the self-influence solves.</summary>
    protected virtual Task<MethodReport> PrepareTermsAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress) =>
        base.PrepareAsync(job, checkpoint, data, stages, progress);

    public sealed override async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress)
    {
        var report = await PrepareTermsAsync(job, checkpoint, data, stages, progress);
        if (!job.Settings.SolvesSelfInfluence) return report;
        progress?.Report($"self-influence: one {Name} solve per training example ({data.Train.Count})");
        await stages.RunShards(SelfInfluenceSolvesStage, 0, stages.Ranges);
        return await stages.Compute(() => FinishSelfInfluenceSolves(job, stages.Ranges.Count));
    }

    public override long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress)
    {
        if (stage != SelfInfluenceSolvesStage) return base.RunStage(stage, job, checkpoint, train, unit, progress);
        SelfInfluenceSolves(job, checkpoint, train, unit, progress);
        return 0;
    }

    /// <summary>x = (H + δI)⁻¹g for a block of columns g (P × len) with the method's solver; the curvature over every row of <paramref name="objective"/>.</summary>
    protected abstract (Tensor X, SelfSolveStats Stats) SolveColumns(ScoreJob job, MethodReport report, Objective objective, Tensor theta, Tensor? flat, Tensor g, int firstColumn);

    /// <summary>The totals' figures and warnings in the method's report.</summary>
    protected abstract void ReportSolves(SelfSolveStats total, JsonObject json, MethodReport report);

    /// <summary>Shard step: the self-influence of the unit's rows, solved in blocks of columns that fit the memory budget.</summary>
    private void SelfInfluenceSolves(ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress)
    {
        var key = SelfInfluenceKey(job, unit.Index);
        if (job.Store.Exists(key)) return;
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var spec = checkpoint.Spec;
        var report = job.LoadMethodReport();
        var theta = checkpoint.Theta(device);
        using var rows = DataTensors.From(train, spec, device);
        var objective = new Objective(spec, rows, train.Count, device);
        var flat = Network.FlatDirections(spec, device)?.to(spec.ScalarType);
        int block = Columns(job.Settings, spec, unit.Count);
        var values = new double[unit.Count];
        var stats = SelfSolveStats.None;
        for (int b0 = unit.Start; b0 < unit.End; b0 += block)
        {
            using var step = NewDisposeScope();
            int len = Math.Min(block, unit.End - b0);
            using var blockRows = rows.Rows(b0, len);
            var g = ShardScorer.Gradients(spec, theta, blockRows).t().contiguous(); // P × len
            var (x, blockStats) = SolveColumns(job, report, objective, theta, flat, g, b0);
            stats = stats.Add(blockStats);
            var s = g.mul(x).sum(0L, false).to(ScalarType.Float64).cpu().data<double>().ToArray();
            Array.Copy(s, 0, values, b0 - unit.Start, len);
            progress?.Report(len);
        }
        TensorArchive.Write(job.Store, key, [
            new("self_influence", tensor(values, dtype: ScalarType.Float64)),
            new("solves", TensorArchive.Scalar(stats.Solves)), new("unconverged", TensorArchive.Scalar(stats.Unconverged)),
            new("negative_curvature", TensorArchive.Scalar(stats.NegativeCurvature)), new("largest_residual", TensorArchive.Scalar(stats.LargestResidual)),
            new("diverged_repeats", TensorArchive.Scalar(stats.DivergedRepeats)), new("all_diverged", TensorArchive.Scalar(stats.AllDiverged)),
            new("products", TensorArchive.Scalar(stats.Products))]);
    }

    private static (double[] Values, SelfSolveStats Stats) ReadSelfInfluence(ScoreJob job, int shard)
    {
        using var a = TensorArchive.Read(job.Store, SelfInfluenceKey(job, shard), Compute.Devices.Default);
        var values = a["self_influence"].cpu().data<double>().ToArray();
        var stats = new SelfSolveStats(a.Int("solves"), a.Int("unconverged"), a.Int("negative_curvature"), a.Double("largest_residual"),
            a.Int("diverged_repeats"), a.Int("all_diverged"), a.Long("products"));
        return (values, stats);
    }

    /// <summary>Scores as every method does; the self-influence, when solved for, comes from the shard's solves.</summary>
    public override ShardScores ScoreRows(ScoreJob job, Checkpoint checkpoint, Dataset train, DataTensors rows, ScorePlan plan, int shard, int start, int end, IProgress<long>? progress)
    {
        var scores = base.ScoreRows(job, checkpoint, train, rows, plan, shard, start, end, progress);
        if (!job.Settings.SolvesSelfInfluence) return scores;
        var values = ReadSelfInfluence(job, shard).Values;
        if (values.Length != end - start) throw new InvalidDataException($"{SelfInfluenceKey(job, shard)} holds {values.Length} values, not the shard's {end - start} rows");
        return scores with { SelfInfluence = values };
    }

    public override SelfInfluence? SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report) => null;

    /// <summary>Coordinator step after the solves: their totals and warnings join the method's report.</summary>
    private MethodReport FinishSelfInfluenceSolves(ScoreJob job, int shards)
    {
        var report = job.LoadMethodReport();
        if (report.Details.ContainsKey("self_influence_solves")) return report;
        var total = Enumerable.Range(0, shards).Select(k => ReadSelfInfluence(job, k).Stats).Aggregate((a, b) => a.Add(b));
        var json = new JsonObject { ["solves"] = total.Solves, ["products"] = total.Products };
        ReportSolves(total, json, report);
        report.Details["self_influence_solves"] = json;
        job.SaveMethodReport(report);
        return report;
    }

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options)
    {
        base.ReportOptions(settings, spec, options);
        options["solve_self_influence"] = settings.Options.SolveSelfInfluence;
    }

    /// <summary>
    /// Columns per self-influence solve: a solver holds about six P×K tensors (iterate, residual,
    /// direction, product, right-hand side and their temporaries), within the memory budget.
    /// </summary>
    public static int Columns(ScoreSettings settings, ModelSpec spec, int rows)
    {
        long element = spec.Precision == Precision.Float64 ? 8 : 4;
        long perColumn = 6 * element * spec.ParameterCount;
        return (int)Math.Clamp((settings.MemoryBudgetMb << 20) / perColumn, 1, Math.Max(1, rows));
    }
}
