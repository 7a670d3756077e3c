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
    public SelfSolveStats Add(SelfSolveStats o) => new(Solves + o.Solves, Unconverged + o.Unconverged, NegativeCurvature + o.NegativeCurvature,
        Math.Max(LargestResidual, o.LargestResidual), DivergedRepeats + o.DivergedRepeats, AllDiverged + o.AllDiverged, Products + o.Products);
}

/// <summary>
/// Self-influence for cg and lissa, whose preconditioner is a solver rather than a matrix:
/// s(z) = ∇L(z)ᵀ(H + δI)⁻¹∇L(z) needs one solve per training example. Each shard solves for its
/// own rows with the method's solver and settings, the curvature products taken over its silo's
/// copy of the whole training set (the rows are the parallel unit here, not the products: N
/// independent solves need no rounds between silos).
/// </summary>
public sealed partial class ScoreJob
{
    public string SelfInfluenceKey(int shard) => $"{Prefix}/work/self-{shard:D4}.bin";

    /// <summary>Shard step: the self-influence of rows [start, end), solved in blocks of columns that fit the memory budget.</summary>
    public void SelfInfluenceSolves(Checkpoint checkpoint, Dataset train, int shard, int start, int end, IProgress<long>? progress = null)
    {
        var key = SelfInfluenceKey(shard);
        if (Store.Exists(key)) return;
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        var report = LoadMethodReport();
        var o = Settings.Options;
        var theta = checkpoint.Theta(Device);
        using var rows = DataTensors.From(train, spec, Device);
        var objective = new Objective(spec, rows, train.Count, Device);
        var flat = Network.FlatDirections(spec, Device)?.to(spec.ScalarType);
        var cg = CurvatureOperator.Of(objective, theta, report.Damping, o.Curvature);
        int block = SelfSolveColumns(spec, end - start);
        var values = new double[end - start];
        var stats = new SelfSolveStats(0, 0, 0, 0, 0, 0, 0);
        for (int b0 = start; b0 < end; b0 += block)
        {
            using var step = NewDisposeScope();
            int len = Math.Min(block, end - b0);
            using var blockRows = rows.Rows(b0, len);
            var g = ShardScorer.Gradients(spec, theta, blockRows).t().contiguous(); // P × len
            Tensor x;
            if (Method == Methods.Cg)
            {
                long before = cg.Products;
                var (solution, solves) = ConjugateGradient.Solve(Checked(cg.Apply), g, o.Tolerance, o.MaxIterations, flat);
                x = solution;
                stats = stats.Add(new SelfSolveStats(len, solves.Count(r => !r.Converged), solves.Count(r => r.NegativeCurvature),
                    solves.Max(r => r.RelativeResidual), 0, 0, cg.Products - before));
            }
            else
            {
                double scale = report.Details["scale"]!.GetValue<double>();
                var settings = new LissaSettings(report.Damping, scale, o.LissaDepth, o.LissaRepeats, o.LissaBatch, Seed: Seeds.LissaSelfInfluence(o.Seed, b0));
                var (estimate, lissa) = Lissa.Solve(Checked<long[]>((v, batch) => CurvatureOperator.OnRows(objective, theta, batch, report.Damping, v, o.Curvature)), g, train.Count, settings);
                x = Network.WithoutFlat(estimate, flat);
                stats = stats.Add(new SelfSolveStats(len, 0, 0, 0, lissa.Diverged, lissa.Diverged == lissa.Repeats ? len : 0, lissa.Products));
            }
            var s = g.mul(x).sum(0L, false).to(ScalarType.Float64).cpu().data<double>().ToArray();
            Array.Copy(s, 0, values, b0 - start, len);
            progress?.Report(len);
        }
        Store.Write(key, s =>
        {
            using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
            w.Write(values.Length);
            foreach (var v in values) w.Write(v);
            w.Write(stats.Solves); w.Write(stats.Unconverged); w.Write(stats.NegativeCurvature); w.Write(stats.LargestResidual);
            w.Write(stats.DivergedRepeats); w.Write(stats.AllDiverged); w.Write(stats.Products);
        });
    }

    private (double[] Values, SelfSolveStats Stats) ReadSelfInfluence(int shard)
    {
        using var s = Store.OpenRead(SelfInfluenceKey(shard));
        using var r = new BinaryReader(s);
        var values = new double[r.ReadInt32()];
        for (int i = 0; i < values.Length; i++) values[i] = r.ReadDouble();
        var stats = new SelfSolveStats(r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadDouble(), r.ReadInt32(), r.ReadInt32(), r.ReadInt64());
        return (values, stats);
    }

    /// <summary>The solved self-influence of a shard's rows, for its score block.</summary>
    private double[] SolvedSelfInfluence(int shard, int count)
    {
        var values = ReadSelfInfluence(shard).Values;
        if (values.Length != count) throw new InvalidDataException($"{SelfInfluenceKey(shard)} holds {values.Length} values, not the shard's {count} rows");
        return values;
    }

    /// <summary>Coordinator step after the solves: their totals and warnings join the method's report.</summary>
    public MethodReport FinishSelfInfluenceSolves(int shards)
    {
        var report = LoadMethodReport();
        if (report.Details.ContainsKey("self_influence_solves")) return report;
        var total = Enumerable.Range(0, shards).Select(k => ReadSelfInfluence(k).Stats).Aggregate((a, b) => a.Add(b));
        var json = new JsonObject { ["solves"] = total.Solves, ["products"] = total.Products };
        if (Method == Methods.Cg)
        {
            json["converged"] = total.Solves - total.Unconverged;
            json["largest_relative_residual"] = MethodReport.Number(total.LargestResidual);
            if (total.NegativeCurvature > 0)
                report.Warnings.Add($"self-influence: CG met negative curvature on {total.NegativeCurvature} of {total.Solves} training examples: H + δI is not positive definite; use --damping auto or a larger δ");
            if (total.Unconverged > 0)
                report.Warnings.Add($"self-influence: CG did not converge on {total.Unconverged} of {total.Solves} training examples (largest relative residual {total.LargestResidual:E2}); raise --cg-max-iterations or the damping");
        }
        else
        {
            json["diverged_repeats"] = total.DivergedRepeats;
            if (total.AllDiverged > 0)
                report.Warnings.Add($"self-influence: every LiSSA repeat diverged for {total.AllDiverged} training examples, whose self-influence is NaN; raise --lissa-scale or --lissa-batch");
            else if (total.DivergedRepeats > 0)
                report.Warnings.Add($"self-influence: {total.DivergedRepeats} LiSSA repeats diverged and were left out of their blocks' means");
        }
        report.Details["self_influence_solves"] = json;
        Store.Write(MethodReportKey, report.Save);
        return report;
    }

    /// <summary>
    /// Columns per self-influence solve: a solver holds about six P×K tensors (iterate, residual,
    /// direction, product, right-hand side and their temporaries), within the memory budget.
    /// </summary>
    public int SelfSolveColumns(ModelSpec spec, int rows)
    {
        long element = spec.Precision == Precision.Float64 ? 8 : 4;
        long perColumn = 6 * element * spec.ParameterCount;
        return (int)Math.Clamp((Settings.MemoryBudgetMb << 20) / perColumn, 1, Math.Max(1, rows));
    }

    /// <summary>A product function that gives up when the silo is stopping (solvers call it once per iteration).</summary>
    private Func<Tensor, Tensor> Checked(Func<Tensor, Tensor> product) => v =>
    {
        Stopping.ThrowIfCancellationRequested();
        return product(v);
    };

    private Func<Tensor, T, Tensor> Checked<T>(Func<Tensor, T, Tensor> product) => (v, a) =>
    {
        Stopping.ThrowIfCancellationRequested();
        return product(v, a);
    };
}
