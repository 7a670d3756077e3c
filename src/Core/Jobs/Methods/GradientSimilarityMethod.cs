using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// The Hessian-free methods: scores are gradient dot products with no preconditioner — at θ̂
/// (grad-dot), their cosines (grad-cos), or summed over the training run's checkpoints with each
/// checkpoint's learning rate (TracIn, Pruthi et al.).
/// </summary>
public sealed class GradientSimilarityMethod(GradientSimilarityMethod.Kind kind) : InfluenceMethod
{
    public enum Kind { TracIn, Dot, Cosine }

    public override string Name => kind switch { Kind.TracIn => Methods.TracIn, Kind.Dot => Methods.GradDot, _ => Methods.GradCos };

    public override string Summary => kind switch
    {
        Kind.TracIn => "TracIn: learning-rate-weighted gradient dot products summed over the checkpoints of minibatch training",
        Kind.Dot => "the gradient dot product at θ̂, no curvature",
        _ => "the cosine of the test and training gradients at θ̂",
    };

    public override SelfInfluenceSource SelfInfluenceSource => kind == Kind.Cosine ? SelfInfluenceSource.None : SelfInfluenceSource.Preconditioner;
    public override string NoSelfInfluenceReason => "the cosine of a gradient with itself is 1";
    public override bool NeedsCheckpoints => kind == Kind.TracIn;
    public override bool IsSeeded => false;
    public override bool Cosine => kind == Kind.Cosine;

    public override Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress) =>
        stages.Compute(() => QueryTerms(job, checkpoint, data));

    /// <summary>Coordinator step: the query gradients at θ̂, or at each TracIn checkpoint.</summary>
    private MethodReport QueryTerms(ScoreJob job, Checkpoint checkpoint, TrainTestData data)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var report = new MethodReport(0);
        var terms = new List<ScoreTerm>();
        if (kind == Kind.TracIn)
        {
            foreach (var (learningRate, theta) in job.ReadTrajectory())
                terms.Add(new ScoreTerm(theta, job.QueryGradients(checkpoint, data, theta), learningRate));
            report.Details["checkpoints"] = terms.Count;
            report.Details["learning_rates"] = new JsonArray(terms.Select(t => (JsonNode)t.Weight).ToArray());
            report.Details["optimizer"] = job.Settings.Training.Describe();
        }
        else
        {
            var theta = checkpoint.Theta(Compute.Devices.Default);
            var g = job.QueryGradients(checkpoint, data, theta);
            if (kind == Kind.Cosine) g = g.div(g.norm(1, keepdim: true).clamp_min(1e-300));
            terms.Add(new ScoreTerm(theta, g, 1.0));
        }
        report.Details["hessian"] = "none (gradient similarity)";
        return job.FinishTerms(terms, report);
    }

    /// <summary>weight · ‖g‖² (TracIn: Σ_t η_t ‖∇L(z; θ_t)‖²; grad-dot: ‖∇L(z)‖²); none for cosines.</summary>
    public override SelfInfluence? SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report) =>
        kind == Kind.Cosine ? null : new SelfInfluence.SquaredNorm();

    public override string Describe(MethodReport report) =>
        kind == Kind.TracIn ? $"{report.Details["checkpoints"]?.ToJsonString() ?? "?"} checkpoints" : "at θ̂";
}
