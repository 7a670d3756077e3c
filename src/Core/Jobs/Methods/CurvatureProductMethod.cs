using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// The iterative methods (cg, arnoldi, lissa): every curvature product is one distributed round
/// of <see cref="ScorePipeline.CurvatureProductStage"/> over the shards, summed; the regulariser
/// and damping are added on the coordinator. This base chooses the damping when asked (Arnoldi
/// runs for the curvature's extreme eigenvalues); each method then solves, builds its eigenbasis
/// or fixes its scale (<see cref="Precondition"/>).
/// </summary>
public abstract class CurvatureProductMethod : InfluenceMethod
{
    /// <summary>Whether <see cref="Precondition"/> needs the curvature's largest eigenvalue even when the damping is given.</summary>
    protected virtual bool NeedsSpectrum(ScoreSettings settings) => false;

    /// <summary>
    /// The method's own step after the damping is known: ends in the score terms, or (lissa)
    /// in artifacts that later stages read. <paramref name="products"/> already counts the spectrum's products.
    /// </summary>
    protected abstract MethodReport Precondition(ScoreJob job, ProductContext context, MethodReport report, IProgress<string>? progress);

    /// <summary>What <see cref="Precondition"/> works with: the trained θ, the right-hand sides ∇L(test) (P×Q), the flat directions and the data term's product.</summary>
    protected sealed record ProductContext(Checkpoint Checkpoint, Tensor Theta, Tensor Rhs, Tensor? Flat, Tensor Regularizer, long Count, Func<Tensor, Tensor> DataSum)
    {
        public ModelSpec Spec => Checkpoint.Spec;
        public CurvatureOperator Operator(double damping) => new(DataSum, Count, Regularizer, damping);
    }

    public override async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress) =>
        await stages.Solve(products => SolveWithProducts(job, checkpoint, data, products, progress));

    /// <summary>Whether the coordinator's solve is done (the terms, or what lissa's repeats read, exist).</summary>
    protected virtual bool Solved(ScoreJob job) => job.HasScoreTerms;

    private MethodReport SolveWithProducts(ScoreJob job, Checkpoint checkpoint, TrainTestData data, Func<Tensor, Tensor> dataSum, IProgress<string>? progress)
    {
        if (Solved(job)) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var settings = job.Settings;
        var options = settings.Options;
        var spec = checkpoint.Spec;
        var dtype = spec.ScalarType;
        var theta = checkpoint.Theta(device);
        var context = new ProductContext(checkpoint, theta, job.TestGradients(checkpoint, data, theta), Network.FlatDirections(spec, device)?.to(dtype),
            Objective.RegularizerHessianDiagonal(spec, device).to(dtype), data.Train.Count, job.Checked(dataSum));
        var report = new MethodReport(settings.Damping);
        report.Details["curvature"] = options.Curvature == Curvature.Hessian ? "hessian" : "gauss-newton";

        if (settings.AutoDamping || NeedsSpectrum(settings))
        {
            progress?.Report($"estimating the curvature's extreme eigenvalues ({options.ArnoldiIterations}-step Arnoldi, twice)");
            var plain = context.Operator(0);
            var spectrum = DampingChoice.Choose(plain.Apply, spec.ParameterCount, options.ArnoldiIterations, options.MethodSeed, dtype, device, convex: spec.IsLogisticRegression, context.Flat);
            report.LargestEigenvalue = spectrum.LargestEigenvalue;
            report.SmallestEigenvalue = spectrum.SmallestEigenvalue;
            report.Details["spectrum_products"] = spectrum.Products;
            if (settings.AutoDamping) report.Damping = spectrum.Damping;
            report.Details["damping_rule"] = settings.AutoDamping ? spectrum.Rule : "given";
            if (spectrum.Indefinite)
                report.Warnings.Add($"the curvature is indefinite at θ̂ (λ_min ≈ {spectrum.SmallestEigenvalue:E3}); " +
                    (report.Damping > -spectrum.SmallestEigenvalue ? $"δ = {report.Damping:E3} makes H + δI positive definite" : $"δ = {report.Damping:E3} does not make H + δI positive definite: use --damping auto or a larger δ"));
        }
        return Precondition(job, context, report, progress);
    }

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, System.Text.Json.Nodes.JsonObject options)
    {
        options["curvature"] = settings.Options.Curvature.ToString().ToLowerInvariant();
        if (settings.AutoDamping || NeedsSpectrum(settings)) options["arnoldi_iterations"] = settings.Options.ArnoldiIterations;
    }
}
