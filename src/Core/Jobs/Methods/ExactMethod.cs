using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Storage;
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

    /// <summary>A unit's partial Hessian, named by its rows: a resumed job whose silos changed cannot add a range twice.</summary>
    private static string PartialHessianKey(ScoreJob job, int start, int end) => job.WorkKey($"hessian-{start:D9}-{end:D9}.safetensors");

    /// <summary>Rows per step of a partial Hessian: bounds its temporaries (a few chunk × In matrices) whatever the unit's size.</summary>
    private const int HessianChunkRows = 8192;
    private static string InverseKey(ScoreJob job) => job.WorkKey("inverse.safetensors");
    /// <summary>Queries preconditioned per triangular solve: bounds the solve's temporaries whatever the number of test points.</summary>
    private const int QueriesPerSolve = 1024;

    public override void CheckSize(ModelSpec spec)
    {
        long p = spec.ParameterCount;
        if (p > ExactHessian.MaxParameters)
            throw new ArgumentException(FormattableString.Invariant($"--method exact holds a P×P Hessian, and {spec.Describe()} has {p:N0} parameters (the limit is {ExactHessian.MaxParameters:N0}): use cg, arnoldi, ekfac or another method"));
    }

    public override async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress)
    {
        // One unit per silo: each sums ∇²L_i over its rows in memory and writes one P×P partial sum.
        var units = await stages.PerSiloRanges();
        if (!job.HasScoreTerms) await stages.RunShards(PartialHessianStage, 0, units);
        progress?.Report($"factorising the {checkpoint.Spec.ParameterCount}×{checkpoint.Spec.ParameterCount} Hessian");
        return await stages.Compute(() => Factorize(job, checkpoint, data, units));
    }

    public override long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress)
    {
        if (stage != PartialHessianStage) return base.RunStage(stage, job, checkpoint, train, unit, progress);
        // Σ ∇²L_i over the unit's rows, a chunk at a time.
        var key = PartialHessianKey(job, unit.Start, unit.End);
        if (job.Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var theta = checkpoint.Theta(device);
        Tensor? sum = null;
        for (int start = unit.Start; start < unit.End; start += HessianChunkRows)
        {
            using var rows = DataTensors.From(train, start, Math.Min(unit.End, start + HessianChunkRows), checkpoint.Spec, device);
            sum = ExactHessian.DataSum(checkpoint.Spec, theta, rows, cancel: job.Stopping, into: sum); // in place: one P×P matrix
            progress?.Report(rows.Count);
        }
        var partial = sum!.to(ScalarType.Float64);
        job.WriteTensor(key, partial);
        // The coordinator sums the partials in place of the first: when it shares this process, it takes this one instead of reading it back.
        HandOff.Process.Keep(job.Store, key, partial);
        return 0;
    }

    /// <summary>
    /// Coordinator step: adds the silos' partial sums, divides by N, adds the regulariser,
    /// factorises H + δI once and preconditions the queries: H⁻¹∇L(test_q) for each test index.
    /// </summary>
    private static MethodReport Factorize(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IReadOnlyList<(int Start, int End)> units)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var (inverse, report) = FactorizeHessian(job, checkpoint, data, units);
        var theta = checkpoint.Theta(Compute.Devices.Default);
        Tensor queries;
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            inverse.Save(job.Store, InverseKey(job));
            report.Details["factor_write_seconds"] = MethodReport.Number(clock.Elapsed.TotalSeconds);
            queries = Precondition(job, checkpoint, data, theta, inverse);
        }
        catch
        {
            inverse.Dispose();
            throw;
        }
        // The shards' self-influence needs the factor: on this silo they take it instead of reading it back.
        HandOff.Process.Keep(job.Store, InverseKey(job), inverse);
        return job.FinishPreconditioning(theta, queries, report);
    }

    /// <summary>The queries H⁻¹∇L(test_q), Q × P.</summary>
    private static Tensor Precondition(ScoreJob job, Checkpoint checkpoint, TrainTestData data, Tensor theta, HessianInverse inverse)
    {
        var queries = job.QueryGradients(checkpoint, data, theta).to(ScalarType.Float64); // preconditioned in place
        // A block of queries at a time: the solve's copies of a 10,000 × 7,850 block are 0.6 GB each.
        for (long q0 = 0; q0 < queries.shape[0]; q0 += QueriesPerSolve)
        {
            using var block = NewDisposeScope();
            var rows = queries.narrow(0, q0, Math.Min(QueriesPerSolve, queries.shape[0] - q0));
            rows.copy_(inverse.Solve(rows.t()).t());
        }
        return queries;
    }

    /// <summary>
    /// The silos' partial Hessians added, the regulariser added, H + δI factorised (with --damping
    /// auto, δ from its spectrum), and the report of it: the exact Hessian's step that newton-step
    /// shares.
    /// </summary>
    internal static (HessianInverse Inverse, MethodReport Report) FactorizeHessian(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IReadOnlyList<(int Start, int End)> units)
    {
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var spec = checkpoint.Spec;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var sum = job.SumStored(units.Select(u => PartialHessianKey(job, u.Start, u.End)));
        double readSeconds = clock.Elapsed.TotalSeconds;
        var mask = Objective.RegularizerHessianDiagonal(spec, device).to(ScalarType.Float64);
        var h = ExactHessian.Assemble(sum, data.Train.Count, mask);
        var flat = Network.FlatDirections(spec, device)?.to(ScalarType.Float64);
        var settings = job.Settings;
        double damping = settings.AutoDamping ? 0 : settings.Damping;
        string dampingRule = "given";
        // H is factorised in its own memory: H, a copy and the factor would be three P×P matrices.
        var inverse = HessianInverse.Factorize(h, damping, flat, overwrite: true);
        var cost = inverse.Cost!;
        if (settings.AutoDamping)
        {
            // The undamped spectrum picks δ; refactorise only when δ is not 0.
            (damping, dampingRule) = DampingChoice.Decide(inverse.MinEigenvalue, inverse.MaxEigenvalue, smallestTrusted: true);
            if (damping != 0)
            {
                inverse.Unshift(h);
                inverse.Dispose();
                inverse = HessianInverse.Factorize(h, damping, flat, overwrite: true);
                cost = cost.Add(inverse.Cost);
            }
        }
        // The factorisation's eigenvalues are of H + δI (on the complement of the flat directions).
        double min = inverse.MinEigenvalue - damping, max = inverse.MaxEigenvalue - damping;
        var report = new MethodReport(damping) { LargestEigenvalue = max, SmallestEigenvalue = min };
        report.Details["factorization"] = inverse.Kind.ToString().ToLowerInvariant();
        report.Details["dropped_eigenvalues"] = inverse.DroppedEigenvalues;
        report.Details["eigenvalues_by"] = inverse.Kind == InverseKind.Cholesky
            ? FormattableString.Invariant($"Krylov iterations on H + δI and its inverse, Ritz relative residual {inverse.EigenvalueResidual:E1}")
            : "the full eigendecomposition (H + δI is not positive definite)";
        report.Details["damping_rule"] = dampingRule;
        report.Details["eigenvalues_of"] = spec.HasFlatDirection ? "H restricted to the complement of the flat direction" : "H";
        // Where the coordinator's time goes (docs/benchmarks.md): the silos' partials read or handed over, the factorisation, the eigenvalues.
        report.Details["partials_read_seconds"] = MethodReport.Number(readSeconds);
        report.Details["factorization_seconds"] = MethodReport.Number(cost.FactorSeconds);
        report.Details["eigenvalues_seconds"] = MethodReport.Number(cost.SpectrumSeconds);
        report.Details["eigenvalue_products"] = cost.SpectrumProducts;
        if (min + damping <= 0) report.Warnings.Add($"H + δI is not positive definite (λ_min + δ = {min + damping:E3}): the pseudo-inverse on its eigendecomposition was used; use --damping auto");
        inverse.DetachFromDisposeScope();
        return (inverse, report);
    }

    public override SelfInfluence SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report)
    {
        return new SelfInfluence.Exact(HessianInverse.Load(job.Store, InverseKey(job), Compute.Devices.Default));
    }
}
