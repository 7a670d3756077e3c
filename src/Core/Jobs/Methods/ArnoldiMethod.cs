using Influence.Core.Storage;
using System.Text.Json.Nodes;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// Schioppa et al.'s low-rank inverse: an n-step Arnoldi run (one distributed round of products
/// per step) keeps the top k eigenpairs of the curvature; the queries are preconditioned in that
/// eigenbasis, and self-influence is Σ (uᵢᵀg)² / (λᵢ + δ) over the kept pairs.
/// </summary>
public sealed class ArnoldiMethod : CurvatureProductMethod
{
    public override string Name => Methods.Arnoldi;
    public override string Summary => "the top eigenpairs of the curvature from an Arnoldi run of distributed products; the inverse on their span";
    public override SelfInfluenceSource SelfInfluenceSource => SelfInfluenceSource.Preconditioner;

    private static string EigenKey(ScoreJob job) => job.WorkKey("eigen.safetensors");

    protected override MethodReport Precondition(ScoreJob job, ProductContext context, MethodReport report, IProgress<string>? progress)
    {
        var options = job.Settings.Options;
        double damping = report.Damping;
        var spec = context.Spec;
        progress?.Report($"Arnoldi: {options.ArnoldiIterations} distributed products, keeping the top {options.ArnoldiTop} eigenpairs");
        using var result = Arnoldi.Run(context.Operator(0).Apply, spec.ParameterCount, options.ArnoldiIterations, options.ArnoldiTop, options.MethodSeed, spec.ScalarType, Compute.Devices.Default, context.Flat);
        var denominators = result.Eigenvalues.to(ScalarType.Float64).add(damping);
        var kept = result.Eigenvalues.to(ScalarType.Float64).cpu().data<double>().ToArray();
        report.Details["krylov_dimension"] = result.Iterations;
        report.Details["kept"] = kept.Length;
        report.Details["eigenvalues"] = new JsonArray(kept.Select(v => MethodReport.Number(v)).ToArray());
        report.Details["products"] = result.Products;
        report.LargestEigenvalue ??= kept.Max();
        if (kept.Any(v => v + damping <= 0))
            report.Warnings.Add($"{kept.Count(v => v + damping <= 0)} kept eigenvalues have λ + δ ≤ 0 (H is indefinite at θ̂): their directions flip sign; use --damping auto");
        TensorArchive.Write(job.Store, EigenKey(job), [new("eigenvectors", result.Eigenvectors), new("denominators", denominators)]);
        return job.FinishPreconditioning(context.Theta, result.Solve(context.Rhs, damping).t().contiguous(), report);
    }

    public override SelfInfluence SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report)
    {
        using var a = TensorArchive.Read(job.Store, EigenKey(job), Compute.Devices.Default);
        return new SelfInfluence.LowRank(checkpoint.Spec, a.Take("eigenvectors"), a.Take("denominators"));
    }

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options)
    {
        base.ReportOptions(settings, spec, options);
        options["arnoldi_iterations"] = settings.Options.ArnoldiIterations;
        options["arnoldi_top"] = settings.Options.ArnoldiTop;
    }

    public override string Describe(MethodReport report) => $"{base.Describe(report)}, n = {report.Details["krylov_dimension"]?.ToJsonString() ?? "?"}, top {report.Details["kept"]?.ToJsonString() ?? "?"}";
}
