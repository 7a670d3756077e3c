using Influence.Core.Storage;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Influence.Core.Compute;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// The TRAK-style method (<see cref="ProjectedFeatures"/>): shards store their rows' projected
/// gradients Φ_b with the Gram Φ_bᵀΦ_b under a key made of the model, the rows and the projection,
/// outside the job's folder, so a later job on the same checkpoint and data (another query set)
/// reuses them; the coordinator adds the Grams and preconditions the projected queries; scoring is
/// one n_b × k by k × Q product per shard, with no backward pass.
/// </summary>
public sealed class TrakMethod : InfluenceMethod
{
    public const string ProjectedFeaturesStage = "projected_features";
    private const string FeaturesFormat = "influence-trak-features-v2"; // in the key: a new format never reads an old one
    private const string Gram = "gram", Features = "features";

    public override string Name => Methods.Trak;
    public override string Summary => "TRAK: per-example gradients randomly projected to k dimensions, with the projected Gauss-Newton as curvature; features reused across jobs";
    public override SelfInfluenceSource SelfInfluenceSource => SelfInfluenceSource.Preconditioner;
    public override bool ScoresWithGradients => false;
    /// <summary>ΦᵀΦ/N is singular when k exceeds its rank: it needs a damping, which the default of 0 is not.</summary>
    public override bool InDefaultComparison => false;

    private static string ProjectedCurvatureKey(ScoreJob job) => job.WorkKey("trak-curvature.safetensors");

    private static GradientProjector Projector(ScoreJob job, ModelSpec spec) =>
        new(spec.ParameterCount, job.Settings.Options.ProjectionDim, job.Settings.Options.Projection, job.Settings.Options.MethodSeed);

    /// <summary>Where rows [start, end)'s features live: a digest of the model (θ included), the rows' values and labels, and the projection.</summary>
    public static string FeaturesKey(ScoreJob job, Checkpoint checkpoint, Dataset train, int start, int end)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var o = job.Settings.Options;
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"{FeaturesFormat}|{checkpoint.Spec.Describe()}|{o.Projection}|{o.ProjectionDim}|{o.MethodSeed}|{start}|{end}"));
        hash.AppendData(MemoryMarshal.AsBytes(checkpoint.Parameters.AsSpan()));
        int width = train.FeatureCount;
        hash.AppendData(MemoryMarshal.AsBytes(train.Features.AsSpan(start * width, (end - start) * width)));
        hash.AppendData(MemoryMarshal.AsBytes(train.Labels.AsSpan(start, end - start)));
        return $"features/{Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant()}.safetensors";
    }

    public override async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress)
    {
        var ranges = stages.Ranges;
        // Shards whose features exist (an earlier job on the same model and rows) skip the work.
        int reused = ranges.Count(r => job.Store.Exists(FeaturesKey(job, checkpoint, data.Train, r.Start, r.End)));
        await stages.RunShards(ProjectedFeaturesStage, 0, ranges);
        int k = job.Settings.Options.ProjectionDim;
        progress?.Report($"factorising the {k}×{k} projected curvature");
        return await stages.Compute(() => Finish(job, checkpoint, data, ranges, reused));
    }

    /// <summary>Shard step: Φ_b and Φ_bᵀΦ_b of the unit's rows, unless another job already stored them.</summary>
    public override long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress)
    {
        if (stage != ProjectedFeaturesStage) return base.RunStage(stage, job, checkpoint, train, unit, progress);
        var key = FeaturesKey(job, checkpoint, train, unit.Start, unit.End);
        if (job.Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        using var rows = DataTensors.From(train, unit.Start, unit.End, checkpoint.Spec, Devices.Default);
        var features = ProjectedFeatures.Of(checkpoint.Spec, checkpoint.Theta(Devices.Default), rows, Projector(job, checkpoint.Spec), job.Settings.BatchSize);
        // The Gram first: the coordinator reads only it.
        TensorArchive.Write(job.Store, key, [new(Gram, features.t().matmul(features)), new(Features, features)]);
        return 0;
    }

    private static Tensor ReadFeatures(ScoreJob job, Checkpoint checkpoint, Dataset train, int start, int end, string name)
    {
        using var a = TensorArchive.Read(job.Store, FeaturesKey(job, checkpoint, train, start, end), Devices.Default, [name]);
        return a.Take(name);
    }

    /// <summary>Coordinator step: ΣΦ_bᵀΦ_b/N + δI, factorised; the projected query gradients preconditioned by it.</summary>
    private static MethodReport Finish(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IReadOnlyList<(int Start, int End)> ranges, int reused)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        var settings = job.Settings;
        var gram = ranges.Select(r => ReadFeatures(job, checkpoint, data.Train, r.Start, r.End, Gram)).Aggregate((a, b) => a.add(b));
        long n = data.Train.Count;
        double damping = settings.AutoDamping ? ProjectedCurvature.AutoDamping(gram, n) : settings.Damping;
        using var curvature = new ProjectedCurvature(gram, n, damping);
        curvature.Save(job.Store, ProjectedCurvatureKey(job));

        var theta = checkpoint.Theta(Devices.Default);
        var projector = Projector(job, spec);
        var queries = curvature.Precondition(job.QueryGradients(checkpoint, data, theta, projector.Project));
        var o = settings.Options;
        var report = new MethodReport(damping) { LargestEigenvalue = curvature.LargestEigenvalue, SmallestEigenvalue = curvature.SmallestEigenvalue };
        report.Details["projection"] = o.Projection.ToString().ToLowerInvariant();
        report.Details["projection_dim"] = o.ProjectionDim;
        report.Details["eigenvalues_of"] = "Phi^T Phi / N (the projected features' Gauss-Newton)";
        report.Details["damping_rule"] = settings.AutoDamping ? $"{Hessians.DampingChoice.MeanEigenvalueRule}, of Phi^T Phi / N" : "given";
        report.Details["shards_reusing_features"] = reused;
        if (o.ProjectionDim >= spec.ParameterCount)
            report.Warnings.Add($"the projection ({o.ProjectionDim}) is not smaller than P ({spec.ParameterCount}): nothing is saved over per-example gradients");
        return job.FinishPreconditioning(theta, queries, report);
    }

    /// <summary>The self-influence comes with the features (<see cref="ScoreRows"/>), not from the scoring pass.</summary>
    public override SelfInfluence? SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report) => null;

    /// <summary>Shard scoring for TRAK: −Φ_b q̃ from the stored features (no backward pass), self-influence φᵀ(F̃ + δI)⁻¹φ.</summary>
    public override ShardScores ScoreRows(ScoreJob job, Checkpoint checkpoint, Dataset train, DataTensors rows, ScorePlan plan, int shard, int start, int end, IProgress<long>? progress)
    {
        using var scope = NewDisposeScope();
        var features = ReadFeatures(job, checkpoint, train, start, end, Features);
        ProjectedCurvature curvature;
        curvature = ProjectedCurvature.Load(job.Store, ProjectedCurvatureKey(job), Devices.Default);
        using var _ = curvature;
        var queries = plan.Terms[0].DenseQueries.to(ScalarType.Float64); // Q × k
        int n = end - start, q = (int)queries.shape[0];
        var influence = queries.matmul(features.t()).neg().contiguous().cpu().data<double>().ToArray(); // Q × n
        var self = curvature.QuadraticForms(features).cpu().data<double>().ToArray();
        progress?.Report(n);
        return new ShardScores(start, n, q, influence, self, TopKLists.FromBlock(influence, q, n, start, job.Settings.TopK));
    }

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options)
    {
        options["projection"] = settings.Options.Projection.ToString().ToLowerInvariant();
        options["projection_dim"] = settings.Options.ProjectionDim;
    }

    public override string Describe(MethodReport report) =>
        $"{base.Describe(report)}, k = {report.Details["projection_dim"]?.ToJsonString() ?? "?"} ({report.Details["projection"]?.GetValue<string>()})";
}
