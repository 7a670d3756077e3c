using Influence.Core.Storage;
using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// LiSSA (Agarwal et al.): the stochastic Neumann recursion x ← g + (I − (H_batch + δI)/s)x, in
/// independent seeded repeats (one shard task each, over the whole training set) averaged on the
/// coordinator. The scale s is given, or 3·(λ_max + δ) from an Arnoldi estimate of λ_max.
/// </summary>
public sealed class LissaMethod : SelfSolvingMethod
{
    public const string RepeatStage = "lissa_repeat";

    public override string Name => Methods.Lissa;
    public override string Summary => "the stochastic Neumann series of LiSSA, in seeded repeats spread over the silos and averaged";

    private static string RhsKey(ScoreJob job) => job.WorkKey("rhs.safetensors");
    private static string RepeatKey(ScoreJob job, int repeat) => job.WorkKey($"lissa-{repeat:D3}.safetensors");

    protected override bool NeedsSpectrum(ScoreSettings settings) => settings.Options.LissaScale == 0;

    /// <summary>The coordinator's part is done once the scale and right-hand sides the repeats read are stored.</summary>
    protected override bool Solved(ScoreJob job) => job.HasScoreTerms || (job.Store.Exists(RhsKey(job)) && job.Store.Exists(job.MethodReportKey));

    protected override async Task<MethodReport> PrepareTermsAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress)
    {
        await base.PrepareTermsAsync(job, checkpoint, data, stages, progress);
        var o = job.Settings.Options;
        progress?.Report($"LiSSA: {o.LissaRepeats} repeats of depth {o.LissaDepth}");
        await stages.RunShards(RepeatStage, 0, Enumerable.Range(0, o.LissaRepeats).Select(_ => (0, data.Train.Count)).ToList());
        return await stages.Compute(() => CombineRepeats(job, checkpoint, o.LissaRepeats));
    }

    /// <summary>Fixes the scale and stores the right-hand sides for the repeats.</summary>
    protected override MethodReport Precondition(ScoreJob job, ProductContext context, MethodReport report, IProgress<string>? progress)
    {
        var options = job.Settings.Options;
        double scale = options.LissaScale > 0 ? options.LissaScale : 3 * (report.LargestEigenvalue!.Value + report.Damping);
        report.Details["scale"] = scale;
        report.Details["scale_rule"] = options.LissaScale > 0 ? "given" : "3 * (lambda_max + damping)";
        report.Details["depth"] = options.LissaDepth;
        report.Details["repeats"] = options.LissaRepeats;
        report.Details["batch_size"] = options.LissaBatch;
        job.WriteTensor(RhsKey(job), context.Rhs);
        job.SaveMethodReport(report);
        return report;
    }

    private static double Scale(MethodReport report) => report.Details["scale"]!.GetValue<double>();

    private static Func<Tensor, long[], Tensor> BatchProduct(ScoreJob job, Objective objective, Tensor theta, double damping) =>
        job.Checked<long[]>((v, batch) => CurvatureOperator.OnRows(objective, theta, batch, damping, v, job.Settings.Options.Curvature));

    public override long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress)
    {
        if (stage != RepeatStage) return base.RunStage(stage, job, checkpoint, train, unit, progress);
        // One seeded recursion over batches of the whole training set (repeats are the parallel unit).
        var key = RepeatKey(job, unit.Index);
        if (job.Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var spec = checkpoint.Spec;
        var report = job.LoadMethodReport();
        var rhs = job.ReadTensor(RhsKey(job));
        using var rows = DataTensors.From(train, spec, device);
        var objective = new Objective(spec, rows, train.Count, device);
        var o = job.Settings.Options;
        var settings = new LissaSettings(report.Damping, Scale(report), o.LissaDepth, Repeats: 1, o.LissaBatch, Seed: Seeds.LissaRepeat(o.MethodSeed, unit.Index));
        var (estimate, lissa) = Lissa.Solve(BatchProduct(job, objective, checkpoint.Theta(device), report.Damping), rhs, train.Count, settings);
        TensorArchive.Write(job.Store, key, [
            new("estimate", estimate), new("diverged", TensorArchive.Scalar(lissa.Diverged > 0)),
            new("final_step_norm", TensorArchive.Scalar(lissa.FinalStepNorms[0])), new("products", TensorArchive.Scalar(lissa.Products))]);
        return lissa.Products;
    }

    /// <summary>Coordinator step: the mean of the repeats that did not diverge.</summary>
    private static MethodReport CombineRepeats(ScoreJob job, Checkpoint checkpoint, int repeats)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var report = job.LoadMethodReport();
        Tensor? sum = null;
        int kept = 0;
        long products = 0;
        var steps = new JsonArray();
        for (int r = 0; r < repeats; r++)
        {
            using var repeat = TensorArchive.Read(job.Store, RepeatKey(job, r), device);
            bool diverged = repeat.Bool("diverged");
            double step = repeat.Double("final_step_norm");
            products += repeat.Long("products");
            var estimate = repeat.Take("estimate");
            steps.Add(MethodReport.Number(step));
            if (diverged) continue;
            kept++;
            sum = sum is null ? estimate : sum.add(estimate);
        }
        report.Details["diverged"] = repeats - kept;
        report.Details["final_step_norms"] = steps;
        report.Details["products"] = products;
        if (kept == 0)
            throw new InvalidOperationException($"all {repeats} LiSSA repeats diverged: the scale {report.Details["scale"]} is below the largest eigenvalue of the batch curvature + δ; raise --lissa-scale or --lissa-batch");
        if (kept < repeats) report.Warnings.Add($"{repeats - kept} of {repeats} LiSSA repeats diverged and were left out of the mean");
        var flat = Network.FlatDirections(checkpoint.Spec, device)?.to(sum!.dtype);
        var mean = Network.WithoutFlat(sum!.div(kept), flat);
        return job.FinishPreconditioning(checkpoint.Theta(device), mean.t().contiguous(), report);
    }

    protected override (Tensor X, SelfSolveStats Stats) SolveColumns(ScoreJob job, MethodReport report, Objective objective, Tensor theta, Tensor? flat, Tensor g, int firstColumn)
    {
        var o = job.Settings.Options;
        var settings = new LissaSettings(report.Damping, Scale(report), o.LissaDepth, o.LissaRepeats, o.LissaBatch, Seed: Seeds.LissaSelfInfluence(o.MethodSeed, firstColumn));
        var (estimate, lissa) = Lissa.Solve(BatchProduct(job, objective, theta, report.Damping), g, objective.RowCount, settings);
        int len = (int)g.shape[1];
        return (Network.WithoutFlat(estimate, flat), new SelfSolveStats(len, 0, 0, 0, lissa.Diverged, lissa.Diverged == lissa.Repeats ? len : 0, lissa.Products));
    }

    protected override void ReportSolves(SelfSolveStats total, JsonObject json, MethodReport report)
    {
        json["diverged_repeats"] = total.DivergedRepeats;
        if (total.AllDiverged > 0)
            report.Warnings.Add($"self-influence: every LiSSA repeat diverged for {total.AllDiverged} training examples, whose self-influence is NaN; raise --lissa-scale or --lissa-batch");
        else if (total.DivergedRepeats > 0)
            report.Warnings.Add($"self-influence: {total.DivergedRepeats} LiSSA repeats diverged and were left out of their blocks' means");
    }

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options)
    {
        base.ReportOptions(settings, spec, options);
        var o = settings.Options;
        options["lissa_depth"] = o.LissaDepth;
        options["lissa_repeats"] = o.LissaRepeats;
        options["lissa_batch"] = o.LissaBatch;
        options["lissa_scale"] = o.LissaScale == 0 ? "auto" : o.LissaScale;
    }

    public override string Describe(MethodReport report) =>
        $"{base.Describe(report)}, scale {report.Details["scale"]?.GetValue<double>():G3}, depth {report.Details["depth"]?.ToJsonString() ?? "?"} × {report.Details["repeats"]?.ToJsonString() ?? "?"}, {report.Details["diverged"]?.ToJsonString() ?? "?"} diverged";
}
