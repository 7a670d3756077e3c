using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// Influence functions with the exact Hessian: shards sum ∇²L_i over their rows, the coordinator
/// adds the regulariser, factorises H + δI once (Cholesky, or the eigendecomposition's
/// pseudo-inverse where H is indefinite or has flat directions) and preconditions the queries.
/// </summary>
public sealed class ExactMethod : InfluenceMethod
{
    public const string PartialHessianStage = "partial_hessian";

    public override string Name => Methods.Exact;
    public override string Summary => FormattableString.Invariant($"the exact Hessian, factorised once (models of up to {ExactHessian.MaxParameters:N0} parameters): the reference the others are measured against");
    public override SelfInfluenceSource SelfInfluenceSource => SelfInfluenceSource.Preconditioner;
    public override bool IsSeeded => false;
    /// <summary>The reference the others are compared with (compare-methods' --exact).</summary>
    public override bool InDefaultComparison => false;

    private static string PartialHessianKey(ScoreJob job, int shard) => job.WorkKey($"hessian-{shard:D4}.safetensors");
    private static string InverseKey(ScoreJob job) => job.WorkKey("inverse.safetensors");

    public override void CheckSize(ModelSpec spec)
    {
        long p = spec.ParameterCount;
        if (p > ExactHessian.MaxParameters)
            throw new ArgumentException(FormattableString.Invariant($"--method exact holds a P×P Hessian, and {spec.Describe()} has {p:N0} parameters (the limit is {ExactHessian.MaxParameters:N0}): use cg, arnoldi, ekfac or another method"));
    }

    public override async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress)
    {
        var ranges = stages.Ranges;
        await stages.RunShards(PartialHessianStage, 0, ranges);
        progress?.Report($"factorising the {checkpoint.Spec.ParameterCount}×{checkpoint.Spec.ParameterCount} Hessian");
        return await stages.Compute(() => Factorize(job, checkpoint, data, ranges.Count));
    }

    public override long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress)
    {
        if (stage != PartialHessianStage) return base.RunStage(stage, job, checkpoint, train, unit, progress);
        // Σ ∇²L_i over the unit's rows.
        var key = PartialHessianKey(job, unit.Index);
        if (job.Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        using var rows = DataTensors.From(train.Slice(unit.Start, unit.End), checkpoint.Spec, device);
        job.WriteTensor(key, ExactHessian.DataSum(checkpoint.Spec, checkpoint.Theta(device), rows, cancel: job.Stopping).to(ScalarType.Float64));
        return 0;
    }

    /// <summary>
    /// Coordinator step: adds the shards' partial sums, divides by N, adds the regulariser,
    /// factorises H + δI once and preconditions the queries: H⁻¹∇L(test_q) for each test index.
    /// </summary>
    private static MethodReport Factorize(ScoreJob job, Checkpoint checkpoint, TrainTestData data, int shards)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var spec = checkpoint.Spec;
        var sum = job.SumStored(Enumerable.Range(0, shards).Select(k => PartialHessianKey(job, k)));
        var mask = Objective.RegularizerHessianDiagonal(spec, device).to(ScalarType.Float64);
        var h = ExactHessian.Assemble(sum, data.Train.Count, mask);
        var flat = Network.FlatDirections(spec, device)?.to(ScalarType.Float64);
        var settings = job.Settings;
        double damping = settings.AutoDamping ? 0 : settings.Damping;
        string dampingRule = "given";
        var inverse = HessianInverse.Factorize(h, damping, flat);
        if (settings.AutoDamping)
        {
            // The undamped spectrum picks δ; refactorise only when δ is not 0.
            (damping, dampingRule) = DampingChoice.Decide(inverse.MinEigenvalue, inverse.MaxEigenvalue, smallestTrusted: true);
            if (damping != 0)
            {
                inverse.Dispose();
                inverse = HessianInverse.Factorize(h, damping, flat);
            }
        }
        using var _ = inverse;
        inverse.Save(job.Store, InverseKey(job));

        var theta = checkpoint.Theta(device);
        var grads = job.TestGradients(checkpoint, data, theta).to(ScalarType.Float64);
        var queries = inverse.Solve(grads).t().contiguous();
        // The factorisation's eigenvalues are of H + δI (on the complement of the flat directions).
        double min = inverse.MinEigenvalue - damping, max = inverse.MaxEigenvalue - damping;
        var report = new MethodReport(damping) { LargestEigenvalue = max, SmallestEigenvalue = min };
        report.Details["factorization"] = inverse.Kind.ToString().ToLowerInvariant();
        report.Details["dropped_eigenvalues"] = inverse.DroppedEigenvalues;
        report.Details["damping_rule"] = dampingRule;
        report.Details["eigenvalues_of"] = spec.HasFlatDirection ? "H restricted to the complement of the flat direction" : "H";
        if (min + damping <= 0) report.Warnings.Add($"H + δI is not positive definite (λ_min + δ = {min + damping:E3}): the pseudo-inverse on its eigendecomposition was used; use --damping auto");
        return job.FinishPreconditioning(theta, queries, report);
    }

    public override SelfInfluence SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report)
    {
        return new SelfInfluence.Exact(HessianInverse.Load(job.Store, InverseKey(job), Compute.Devices.Default));
    }
}
