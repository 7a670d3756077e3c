using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Influence.Core.Compute;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// The TRAK-style method (<see cref="ProjectedFeatures"/>): shards store their rows' projected
/// gradients Φ_b with the Gram Φ_bᵀΦ_b under a key made of the model, the rows and the projection,
/// outside the job's folder, so a later job on the same checkpoint and data (another query set)
/// reuses them; the coordinator adds the Grams and preconditions the projected queries; scoring is
/// one n_b × k by k × Q product per shard, with no backward pass.
/// </summary>
public sealed partial class ScoreJob
{
    public string ProjectedCurvatureKey => $"{Prefix}/work/trak-curvature.bin";

    private GradientProjector Projector(ModelSpec spec) =>
        new(spec.ParameterCount, Settings.Options.ProjectionDim, Settings.Options.Projection, Settings.Options.Seed);

    /// <summary>Where rows [start, end)'s features live: a digest of the model (θ included), the rows' values and labels, and the projection.</summary>
    public string FeaturesKey(Checkpoint checkpoint, Dataset train, int start, int end)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var o = Settings.Options;
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes($"influence-trak-features-v1|{checkpoint.Spec.Describe()}|{o.Projection}|{o.ProjectionDim}|{o.Seed}|{start}|{end}"));
        hash.AppendData(MemoryMarshal.AsBytes(checkpoint.Parameters.AsSpan()));
        var rows = train.Slice(start, end);
        hash.AppendData(MemoryMarshal.AsBytes(rows.Features.AsSpan()));
        hash.AppendData(MemoryMarshal.AsBytes(rows.Labels.AsSpan()));
        return $"features/{Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant()}.bin";
    }

    /// <summary>Shard step: Φ_b and Φ_bᵀΦ_b of rows [start, end); returns false when another job already stored them.</summary>
    public bool ProjectFeatures(Checkpoint checkpoint, Dataset train, int start, int end)
    {
        var key = FeaturesKey(checkpoint, train, start, end);
        if (Store.Exists(key)) return false;
        using var scope = NewDisposeScope();
        using var rows = DataTensors.From(train.Slice(start, end), checkpoint.Spec, Device);
        var features = ProjectedFeatures.Of(checkpoint.Spec, checkpoint.Theta(Device), rows, Projector(checkpoint.Spec), Settings.BatchSize);
        // The Gram first: the coordinator reads only it.
        Store.Write(key, s => TensorIO.WriteList(s, "influence-trak-features-v1", [features.t().matmul(features), features]));
        return true;
    }

    private Tensor[] ReadFeatures(Checkpoint checkpoint, Dataset train, int start, int end, int count)
    {
        using var s = Store.OpenRead(FeaturesKey(checkpoint, train, start, end));
        return TensorIO.ReadList(s, "influence-trak-features-v1", count, Device);
    }

    /// <summary>Coordinator step: ΣΦ_bᵀΦ_b/N + δI, factorised; the projected query gradients preconditioned by it.</summary>
    public MethodReport FinishTrak(Checkpoint checkpoint, TrainTestData data, IReadOnlyList<(int Start, int End)> ranges, int reused)
    {
        if (HasScoreTerms) return LoadMethodReport();
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        var gram = ranges.Select(r => ReadFeatures(checkpoint, data.Train, r.Start, r.End, 1)[0]).Aggregate((a, b) => a.add(b));
        long n = data.Train.Count;
        double damping = Settings.AutoDamping ? ProjectedCurvature.AutoDamping(gram, n) : Settings.Damping;
        using var curvature = new ProjectedCurvature(gram, n, damping);
        Store.Write(ProjectedCurvatureKey, curvature.Save);

        var theta = checkpoint.Theta(Device);
        var queries = curvature.Precondition(Projector(spec).Project(QueryGradients(checkpoint, data, theta)));
        var o = Settings.Options;
        var report = new MethodReport(damping) { LargestEigenvalue = curvature.LargestEigenvalue, SmallestEigenvalue = curvature.SmallestEigenvalue };
        report.Details["projection"] = o.Projection.ToString().ToLowerInvariant();
        report.Details["projection_dim"] = o.ProjectionDim;
        report.Details["eigenvalues_of"] = "Phi^T Phi / N (the projected features' Gauss-Newton)";
        report.Details["damping_rule"] = Settings.AutoDamping ? $"{Hessians.DampingChoice.MeanEigenvalueRule}, of Phi^T Phi / N" : "given";
        report.Details["shards_reusing_features"] = reused;
        if (o.ProjectionDim >= spec.ParameterCount)
            report.Warnings.Add($"the projection ({o.ProjectionDim}) is not smaller than P ({spec.ParameterCount}): nothing is saved over per-example gradients");
        return FinishTerms([new ScoreTerm(theta, queries, 1.0)], report);
    }

    /// <summary>Shard scoring for TRAK: −Φ_b q̃ from the stored features (no backward pass), self-influence φᵀ(F̃ + δI)⁻¹φ.</summary>
    private ShardScores ScoreProjected(Checkpoint checkpoint, Dataset train, ScorePlan plan, int start, int end, IProgress<long>? progress)
    {
        using var scope = NewDisposeScope();
        var features = ReadFeatures(checkpoint, train, start, end, 2)[1];
        ProjectedCurvature curvature;
        using (var s = Store.OpenRead(ProjectedCurvatureKey)) curvature = ProjectedCurvature.Load(s, Device);
        using var _ = curvature;
        var queries = plan.Terms[0].Queries.to(ScalarType.Float64); // Q × k
        int n = end - start, q = (int)queries.shape[0];
        var influence = queries.matmul(features.t()).neg().contiguous().cpu().data<double>().ToArray(); // Q × n
        var self = curvature.QuadraticForms(features).cpu().data<double>().ToArray();
        progress?.Report(n);
        return new ShardScores(start, n, q, influence, self, TopKLists.FromBlock(influence, q, n, start, Settings.TopK));
    }
}
