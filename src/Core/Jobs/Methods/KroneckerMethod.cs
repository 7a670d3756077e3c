using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// K-FAC and EK-FAC (George et al., Grosse et al.): shards sum each layer's Kronecker factors
/// A = Σāāᵀ and S = Σδδᵀ; the coordinator eigendecomposes every factor once; EK-FAC then has the
/// shards sum the corrected eigenvalues in that eigenbasis. The queries are preconditioned layer
/// by layer, and self-influence comes from the same factors.
/// </summary>
public sealed class KroneckerMethod(bool eigenvalueCorrected) : InfluenceMethod
{
    public const string FactorSumsStage = "factor_sums", CorrectionSumsStage = "correction_sums";

    public override string Name => eigenvalueCorrected ? Methods.Ekfac : Methods.Kfac;
    public override string Summary => eigenvalueCorrected
        ? "EK-FAC: K-FAC's eigenbasis with eigenvalues refitted to the Fisher (Kronfluence's default)"
        : "K-FAC: each layer's Fisher as a Kronecker product of input and output-gradient covariances";
    public override SelfInfluenceSource SelfInfluenceSource => SelfInfluenceSource.Preconditioner;

    private static string FactorsKey(ScoreJob job) => job.WorkKey("factors.safetensors");
    /// <summary>EK-FAC: the shards' correction sums added, and their row count (the factors stay as written once).</summary>
    private static string CorrectionsKey(ScoreJob job) => job.WorkKey("ekfac-corrections.safetensors");
    private static string FactorSumsKey(ScoreJob job, int shard) => job.WorkKey($"kfac-{shard:D4}.safetensors");
    private static string CorrectionSumsKey(ScoreJob job, int shard) => job.WorkKey($"ekfac-{shard:D4}.safetensors");
    private static int FisherSeed(ScoreJob job, int shard, int pass) => Seeds.FisherLabels(job.Settings.Options.MethodSeed, shard, pass);

    public override async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress)
    {
        await RunFactorStages(job, checkpoint, stages, progress);
        int rank = job.Settings.Options.QueryRank;
        progress?.Report($"preconditioning the {job.Settings.TestIndices.Length:N0} queries{(rank > 0 ? $" and truncating them to rank {rank}" : "")}");
        return await stages.Compute(() => Finish(job, checkpoint, data, stages.Ranges.Count));
    }

    /// <summary>The shards' factor sums, the coordinator's eigendecomposition, and EK-FAC's correction sums (each step skipped when done).</summary>
    internal async Task RunFactorStages(ScoreJob job, Checkpoint checkpoint, IScoreStages stages, IProgress<string>? progress)
    {
        int shards = stages.Ranges.Count;
        await stages.RunShards(FactorSumsStage, 0, stages.Ranges);
        progress?.Report("eigendecomposing the Kronecker factors");
        await stages.Compute(() => { CombineFactors(job, checkpoint, shards); return 0; });
        if (eigenvalueCorrected) await stages.RunShards(CorrectionSumsStage, 0, stages.Ranges);
    }

    /// <summary>Whether <paramref name="stage"/> is one of <see cref="RunFactorStages"/>'s shard stages.</summary>
    internal bool OwnsStage(string stage) => stage == FactorSumsStage || (eigenvalueCorrected && stage == CorrectionSumsStage);

    public override long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress)
    {
        if (!OwnsStage(stage)) return base.RunStage(stage, job, checkpoint, train, unit, progress);
        string key = stage == FactorSumsStage ? FactorSumsKey(job, unit.Index) : CorrectionSumsKey(job, unit.Index);
        if (job.Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var spec = checkpoint.Spec;
        var o = job.Settings.Options;
        using var rows = DataTensors.From(train, unit.Start, unit.End, spec, device);
        if (stage == FactorSumsStage)
        {
            // The Kronecker factor sums A = Σāāᵀ, S = Σδδᵀ per layer over the unit's rows.
            using var sums = KfacFactorSums.Accumulate(spec, checkpoint.Theta(device), rows, o.FisherLabels, FisherSeed(job, unit.Index, 0), job.Settings.BatchSize);
            KroneckerFactors.WriteSums(job.Store, key, sums.Count, [.. sums.A, .. sums.S]);
        }
        else
        {
            // EK-FAC: Σ (Q_Sᵀ δ)² (Q_Aᵀ ā)²ᵀ per layer over the unit's rows, in the factors' eigenbasis.
            using var factors = LoadFactors(job, spec);
            var sums = factors.CorrectionSums(checkpoint.Theta(device), rows, o.FisherLabels, FisherSeed(job, unit.Index, 1), job.Settings.BatchSize);
            KroneckerFactors.WriteSums(job.Store, key, unit.Count, sums);
        }
        return 0;
    }

    /// <summary>Coordinator step: adds the shards' factor sums and eigendecomposes each factor once.</summary>
    private static void CombineFactors(ScoreJob job, Checkpoint checkpoint, int shards)
    {
        if (job.Store.Exists(FactorsKey(job))) return;
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        int layers = spec.Layers.Count;
        KfacFactorSums? total = null;
        for (int k = 0; k < shards; k++)
        {
            var (count, t) = KroneckerFactors.ReadSums(job.Store, FactorSumsKey(job, k), Compute.Devices.Default);
            var part = new KfacFactorSums(t[..layers], t[layers..], count);
            total = total is null ? part : total.Add(part);
        }
        using var factors = KroneckerFactors.FromSums(spec, total!);
        factors.Save(job.Store, FactorsKey(job));
    }

    private static KroneckerFactors LoadFactors(ScoreJob job, ModelSpec spec)
    {
        return KroneckerFactors.Load(spec, job.Store, FactorsKey(job), Compute.Devices.Default);
    }

    /// <summary>The factors, with EK-FAC's corrected eigenvalues where this is EK-FAC.</summary>
    internal KroneckerFactors LoadPreconditioner(ScoreJob job, ModelSpec spec)
    {
        var factors = LoadFactors(job, spec);
        if (!eigenvalueCorrected) return factors;
        var (count, sums) = KroneckerFactors.ReadSums(job.Store, CorrectionsKey(job), Compute.Devices.Default);
        factors.SetCorrections(sums, count);
        foreach (var t in sums) t.Dispose();
        return factors;
    }

    /// <summary>
    /// Coordinator step: EK-FAC's corrected eigenvalues from the shards' sums, the damping (given,
    /// or Kronfluence's 0.1 × the mean eigenvalue), and the queries preconditioned layer by layer.
    /// </summary>
    private MethodReport Finish(ScoreJob job, Checkpoint checkpoint, TrainTestData data, int shards)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var (factors, report) = LoadWithReport(job, checkpoint.Spec, shards);
        using (factors)
        {
            // Block by block (and straight to rank-r factors with --query-rank): 10,000 queries of a
            // 200k-parameter MLP would be 8 GB as one Q×P matrix.
            var theta = checkpoint.Theta(Compute.Devices.Default);
            return job.FinishPreconditioning(checkpoint, data, theta, g => factors.PreconditionRows(g, report.Damping, eigenvalueCorrected), report);
        }
    }

    /// <summary>
    /// Coordinator step: EK-FAC's corrected eigenvalues added from the shards' sums (once), the
    /// preconditioner loaded, and its report: the damping (given, or Kronfluence's 0.1 × the mean
    /// eigenvalue), the eigenvalue range and the factors' details.
    /// </summary>
    internal (KroneckerFactors Factors, MethodReport Report) LoadWithReport(ScoreJob job, ModelSpec spec, int shards)
    {
        var device = Compute.Devices.Default;
        var settings = job.Settings;
        if (eigenvalueCorrected && !job.Store.Exists(CorrectionsKey(job)))
        {
            Tensor[]? sums = null;
            long count = 0;
            for (int k = 0; k < shards; k++)
            {
                var (c, t) = KroneckerFactors.ReadSums(job.Store, CorrectionSumsKey(job, k), device);
                count += c;
                sums = sums is null ? t : sums.Zip(t, (a, b) => a.add(b)).ToArray();
            }
            KroneckerFactors.WriteSums(job.Store, CorrectionsKey(job), count, sums!);
        }
        var factors = LoadPreconditioner(job, spec);
        using var eigenvalues = cat(spec.Layers.Select((_, l) => factors.Eigenvalues(l, eigenvalueCorrected).flatten()).ToArray());
        double mean = eigenvalues.mean().ToDouble();
        var report = new MethodReport(settings.AutoDamping ? DampingChoice.FromMeanEigenvalue(mean) : settings.Damping)
        {
            LargestEigenvalue = eigenvalues.max().ToDouble(),
            SmallestEigenvalue = eigenvalues.min().ToDouble(),
        };
        report.Details["fisher_labels"] = settings.Options.FisherLabels.ToString().ToLowerInvariant();
        report.Details["damping_rule"] = settings.AutoDamping ? $"{DampingChoice.MeanEigenvalueRule}, of the Fisher" : "given";
        report.Details["weight_decay_added"] = spec.L2;
        report.Details["eigenvalues_of"] = eigenvalueCorrected ? "EK-FAC's corrected eigenvalues" : "K-FAC's products of factor eigenvalues";
        report.Details["layers"] = new JsonArray(spec.Layers.Select(l => (JsonNode)$"{l.Out}x{l.In + 1}").ToArray());
        if (spec.DecayOn == DecayOn.Weights && spec.L2 > 0)
            report.Warnings.Add("the weight decay λ is added on every layer parameter, biases included (they are unpenalised in the objective): a small approximation");
        return (factors, report);
    }

    public override SelfInfluence SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report) =>
        new SelfInfluence.Kronecker(LoadPreconditioner(job, checkpoint.Spec), report.Damping, eigenvalueCorrected);

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options) =>
        options["fisher_labels"] = settings.Options.FisherLabels.ToString().ToLowerInvariant();

    public override string Describe(MethodReport report) => $"{base.Describe(report)}, {report.Details["fisher_labels"]?.GetValue<string>()} Fisher";
}
