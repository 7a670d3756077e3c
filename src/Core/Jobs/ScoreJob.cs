using System.Diagnostics;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Storage;
using Influence.Core.Training;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// The steps of a score job, each an idempotent unit of work over the artifact store: a step
/// whose output already exists is not computed again. The coordinator grain runs
/// <see cref="Prepare"/>, <see cref="Factorize"/> and <see cref="WriteOutputs"/>; shard grains run
/// <see cref="PartialHessian"/> and <see cref="ScoreShard"/>. Tests run them in sequence in one process.
/// </summary>
public sealed class ScoreJob(IArtifactStore store, string jobId, ScoreSettings settings)
{
    public IArtifactStore Store { get; } = store;
    public string JobId { get; } = jobId;
    public ScoreSettings Settings { get; } = settings;
    public string Prefix => $"jobs/{JobId}";
    public string CheckpointKey => $"{Prefix}/checkpoint.json";
    public string InverseKey => $"{Prefix}/work/inverse.bin";
    public string QueriesKey => $"{Prefix}/work/queries.bin";
    public string PartialHessianKey(int shard) => $"{Prefix}/work/hessian-{shard:D4}.bin";
    public string ScoreBlockKey(int shard) => $"{Prefix}/work/scores-{shard:D4}.bin";

    /// <summary>The training set alone (a shard's rows come from it).</summary>
    public Dataset LoadTrain() => Settings.Train.Resolve(Store).Load();

    public TrainTestData LoadData()
    {
        var data = TrainTestData.Load(Settings.Train.Resolve(Store), Settings.Test.Resolve(Store));
        foreach (var i in Settings.TestIndices)
            if (i < 0 || i >= data.Test.Count)
                throw new ArgumentException($"test index {i} is outside the test set {Settings.Test.Path} (rows 0..{data.Test.Count - 1})");
        return data;
    }

    /// <summary>Trains the model (or loads the job's checkpoint if it exists).</summary>
    public Checkpoint Prepare(TrainTestData data, IProgress<string>? progress = null)
    {
        if (Store.Exists(CheckpointKey))
        {
            using var s = Store.OpenRead(CheckpointKey);
            return Checkpoint.Load(s);
        }
        var spec = Settings.BuildSpec(data);
        var device = Compute.Devices.Default;
        using var tensors = DataTensors.From(data.Train, spec, device);
        var objective = new Objective(spec, tensors, data.Train.Count, device);
        using var init = Network.Initialize(spec, device);
        var result = FullBatchTrainer.Train(objective, init, progress: progress);
        var checkpoint = new Checkpoint(spec, Checkpoint.ToArray(result.Theta), result.Objective, result.GradientNorm,
            result.LbfgsIterations, result.NewtonIterations, result.Seconds);
        result.Theta.Dispose();
        Store.Write(CheckpointKey, checkpoint.Save);
        return checkpoint;
    }

    /// <summary>Shard step 1: Σ ∇²L_i over rows [start, end), written to the store.</summary>
    public string PartialHessian(Checkpoint checkpoint, Dataset train, int shard, int start, int end)
    {
        var key = PartialHessianKey(shard);
        if (Store.Exists(key)) return key;
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        using var rows = DataTensors.From(train.Slice(start, end), checkpoint.Spec, device);
        var sum = ExactHessian.DataSum(checkpoint.Spec, checkpoint.Theta(device), rows).to(ScalarType.Float64);
        Store.Write(key, s => TensorIO.Write(s, sum));
        return key;
    }

    public sealed record FactorizationResult(double MinEigenvalue, double MaxEigenvalue, InverseKind Kind, int DroppedEigenvalues, double Seconds);

    /// <summary>
    /// Coordinator step: adds the shards' partial sums, divides by N, adds the regulariser,
    /// factorises H + δI once and preconditions the queries: H⁻¹∇L(test_q) for each test index.
    /// </summary>
    public FactorizationResult Factorize(Checkpoint checkpoint, TrainTestData data, IReadOnlyList<string> partialKeys)
    {
        var sw = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        var device = Compute.Devices.Default;
        var spec = checkpoint.Spec;
        Tensor? sum = null;
        foreach (var key in partialKeys)
        {
            using var s = Store.OpenRead(key);
            using var r = new BinaryReader(s);
            var part = TensorIO.Read(r, device);
            if (sum is null) sum = part; else { sum.add_(part); part.Dispose(); }
        }
        var mask = Objective.RegularizerHessianDiagonal(spec, device).to(ScalarType.Float64);
        var h = ExactHessian.Assemble(sum!, data.Train.Count, mask);
        var flat = Network.FlatDirections(spec, device)?.to(ScalarType.Float64);
        using var inverse = HessianInverse.Factorize(h, Settings.Damping, flat);
        Store.Write(InverseKey, inverse.Save);

        var theta = checkpoint.Theta(device);
        using var test = DataTensors.From(data.Test.Select(Settings.TestIndices), spec, device);
        var grads = ShardScorer.Gradients(spec, theta, test).to(ScalarType.Float64);
        var queries = inverse.Solve(grads.t()).t().contiguous();
        Store.Write(QueriesKey, s => TensorIO.Write(s, queries));
        return new FactorizationResult(inverse.MinEigenvalue, inverse.MaxEigenvalue, inverse.Kind, inverse.DroppedEigenvalues, sw.Elapsed.TotalSeconds);
    }

    public HessianInverse LoadInverse() { using var s = Store.OpenRead(InverseKey); return HessianInverse.Load(s, Compute.Devices.Default); }

    public Tensor LoadQueries() { using var s = Store.OpenRead(QueriesKey); using var r = new BinaryReader(s); return TensorIO.Read(r, Compute.Devices.Default); }

    /// <summary>
    /// Shard step 2: influence of rows [start, end) on every query and their self-influence,
    /// written as a block (Q×n influence, then n self-influence, float64); returns the local top-k.
    /// </summary>
    public TopKLists ScoreShard(Checkpoint checkpoint, Dataset train, HessianInverse inverse, Tensor queries, int shard, int start, int end, IProgress<long>? progress = null)
    {
        var key = ScoreBlockKey(shard);
        if (Store.Exists(key))
        {
            var existing = ReadBlock(shard, end - start, queries.shape[0]);
            return TopKLists.FromBlock(existing.Influence, existing.QueryCount, existing.Count, start, Settings.TopK);
        }
        var device = Compute.Devices.Default;
        using var rows = DataTensors.From(train.Slice(start, end), checkpoint.Spec, device);
        using var theta = checkpoint.Theta(device);
        var scores = ShardScorer.Score(checkpoint.Spec, theta, rows, start, queries, inverse, Settings.TopK, Settings.BatchSize, progress);
        Store.Write(key, s =>
        {
            using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
            w.Write(scores.QueryCount);
            w.Write(scores.Count);
            foreach (var v in scores.Influence) w.Write(v);
            foreach (var v in scores.SelfInfluence!) w.Write(v);
        });
        return scores.TopK;
    }

    public sealed record Block(int QueryCount, int Count, double[] Influence, double[] SelfInfluence);

    public Block ReadBlock(int shard, int expectedCount, long expectedQueries)
    {
        using var s = Store.OpenRead(ScoreBlockKey(shard));
        using var r = new BinaryReader(s);
        int q = r.ReadInt32(), n = r.ReadInt32();
        if (n != expectedCount || q != expectedQueries)
            throw new InvalidDataException($"score block of shard {shard} holds {q}×{n}, expected {expectedQueries}×{expectedCount}");
        var inf = new double[(long)q * n];
        for (long i = 0; i < inf.LongLength; i++) inf[i] = r.ReadDouble();
        var self = new double[n];
        for (int i = 0; i < n; i++) self[i] = r.ReadDouble();
        return new Block(q, n, inf, self);
    }

    /// <summary>Deletes the large intermediate artifacts (partial Hessians, factorisation, blocks).</summary>
    public void DeleteWork() => Store.DeletePrefix($"{Prefix}/work");
}
