using System.Text.Json.Nodes;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>Conjugate gradient on (H + δI)x = ∇L(test) for every query at once, one distributed round of products per iteration.</summary>
public sealed class CgMethod : SelfSolvingMethod
{
    public override string Name => Methods.Cg;
    public override string Summary => "conjugate gradient on (H + δI)x = ∇L(test), one round of distributed Hessian-vector products per iteration";

    protected override MethodReport Precondition(ScoreJob job, ProductContext context, MethodReport report, IProgress<string>? progress)
    {
        var options = job.Settings.Options;
        progress?.Report($"conjugate gradient on {context.Rhs.shape[1]} right-hand sides (tolerance {options.CgTolerance:G3}, at most {options.CgMaxIterations} rounds)");
        var op = context.Operator(report.Damping);
        var (x, solves) = ConjugateGradient.Solve(op.Apply, context.Rhs, options.CgTolerance, options.CgMaxIterations, context.Flat);
        report.Details["tolerance"] = options.CgTolerance;
        report.Details["max_iterations"] = options.CgMaxIterations;
        report.Details["products"] = op.Products;
        report.Details["iterations"] = new JsonArray(solves.Select(r => (JsonNode)r.Iterations).ToArray());
        report.Details["relative_residuals"] = new JsonArray(solves.Select(r => MethodReport.Number(r.RelativeResidual)).ToArray());
        report.Details["converged"] = solves.Count(r => r.Converged);
        report.Details["negative_curvature"] = solves.Count(r => r.NegativeCurvature);
        int unconverged = solves.Count(r => !r.Converged);
        if (solves.Any(r => r.NegativeCurvature))
            report.Warnings.Add($"CG met negative curvature (pᵀ(H + δI)p ≤ 0) on {solves.Count(r => r.NegativeCurvature)} of {solves.Length} queries: H + δI is not positive definite; use --damping auto or a larger δ");
        if (unconverged > 0)
            report.Warnings.Add($"CG did not converge on {unconverged} of {solves.Length} queries (largest relative residual {solves.Max(r => r.RelativeResidual):E2}); raise --cg-max-iterations or the damping");
        return job.FinishPreconditioning(context.Theta, x.t().contiguous(), report);
    }

    protected override (Tensor X, SelfSolveStats Stats) SolveColumns(ScoreJob job, MethodReport report, Objective objective, Tensor theta, Tensor? flat, Tensor g, int firstColumn)
    {
        var o = job.Settings.Options;
        var op = CurvatureOperator.Of(objective, theta, report.Damping, o.Curvature);
        var (x, solves) = ConjugateGradient.Solve(job.Checked(op.Apply), g, o.CgTolerance, o.CgMaxIterations, flat);
        return (x, new SelfSolveStats((int)g.shape[1], solves.Count(r => !r.Converged), solves.Count(r => r.NegativeCurvature),
            solves.Max(r => r.RelativeResidual), 0, 0, op.Products));
    }

    protected override void ReportSolves(SelfSolveStats total, JsonObject json, MethodReport report)
    {
        json["converged"] = total.Solves - total.Unconverged;
        json["largest_relative_residual"] = MethodReport.Number(total.LargestResidual);
        if (total.NegativeCurvature > 0)
            report.Warnings.Add($"self-influence: CG met negative curvature on {total.NegativeCurvature} of {total.Solves} training examples: H + δI is not positive definite; use --damping auto or a larger δ");
        if (total.Unconverged > 0)
            report.Warnings.Add($"self-influence: CG did not converge on {total.Unconverged} of {total.Solves} training examples (largest relative residual {total.LargestResidual:E2}); raise --cg-max-iterations or the damping");
    }

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options)
    {
        base.ReportOptions(settings, spec, options);
        options["cg_tolerance"] = settings.Options.CgTolerance;
        options["cg_max_iterations"] = settings.Options.CgMaxIterations;
    }

    public override string Describe(MethodReport report) => $"{base.Describe(report)}, {report.Details["converged"]?.ToJsonString() ?? "?"} converged, {report.Details["products"]?.ToJsonString() ?? "?"} products";
}
