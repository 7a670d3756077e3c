using System.Diagnostics;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Storage;
using Influence.Core.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// A score job's artifacts and the steps every method shares, each an idempotent unit of work over
/// the artifact store: a step whose output already exists is not computed again. The coordinator
/// trains (<see cref="TrainOrLoad"/>), runs the method's preparation (<see cref="ScorePipeline"/>,
/// <see cref="InfluenceMethod.PrepareAsync"/>) and writes the outputs (<see cref="ScoreOutputs"/>);
/// shards run the method's stages (<see cref="RunStage"/>) and <see cref="ScoreShard"/>. Tests
/// run them in sequence in one process (<see cref="InProcessStages"/>).
/// </summary>
public sealed partial class ScoreJob(IArtifactStore store, string jobId, ScoreSettings settings)
{
    public IArtifactStore Store { get; } = store;
    /// <summary>Whether the request's input files may be local paths (the embedded mode); else only store:KEY.</summary>
    public bool AllowLocalFiles { get; init; }
    public string JobId { get; } = jobId;
    public ScoreSettings Settings { get; } = settings;
    /// <summary>Shards this process scores at once: they share --memory-budget-mb (<see cref="ShardMemoryBudgetBytes"/>).</summary>
    public int ConcurrentShards { get; init; } = 1;
    /// <summary>What one shard's query passes may hold: the job's budget shared by the shards scored at once.</summary>
    public long ShardMemoryBudgetBytes => (Settings.MemoryBudgetMb << 20) / Math.Max(1, ConcurrentShards);
    /// <summary>Cancelled when the silo stops: training gives up at its next iteration.</summary>
    public CancellationToken Stopping { get; init; }
    public string Prefix => JobKeys.Prefix(JobId);
    public string CheckpointKey => JobKeys.Checkpoint(JobId);
    /// <summary>The method of the settings (<see cref="Methods.All"/>).</summary>
    public InfluenceMethod Method => Settings.Estimator;

    /// <summary>An intermediate artifact of the job, under jobs/ID/work/ (deleted when the job has written its outputs).</summary>
    public string WorkKey(string name) => JobKeys.Work(JobId, name);
    /// <summary>The score terms every shard scores against (θ, queries, weight each).</summary>
    public string TermsKey => WorkKey("terms.safetensors");
    /// <summary>The method's report (damping used, solver residuals, warnings), written with the terms.</summary>
    public string MethodReportKey => WorkKey("method.json");
    /// <summary>Minibatch training's checkpoints (TracIn's).</summary>
    public string TrajectoryKey => WorkKey("trajectory.safetensors");
    public string ScoreBlockKey(int shard) => WorkKey($"scores-{shard:D4}.safetensors");

    /// <summary>Records the settings for the shards (jobs/ID/settings.json); a restart of the same id must bring the same.</summary>
    public void ClaimSettings() => SettingsJson.Claim(Store, JobKeys.ScoreSettings(JobId), Settings, JobId);

    /// <summary>The settings job <paramref name="jobId"/>'s coordinator recorded (what its shards run under).</summary>
    public static ScoreSettings LoadSettings(IArtifactStore store, string jobId) => SettingsJson.Load<ScoreSettings>(store, JobKeys.ScoreSettings(jobId));

    /// <summary>The training set alone (a shard's rows come from it).</summary>
    public Dataset LoadTrain() => Settings.Train.Resolve(Store, AllowLocalFiles).Load();

    /// <summary>The finished job's summary.json.</summary>
    public ScoreSummary LoadSummary()
    {
        var key = JobKeys.Output(JobId, "summary.json");
        using var s = Store.OpenRead(key);
        return ScoreSummary.Read(s, key);
    }

    public TrainTestData LoadData()
    {
        var data = TrainTestData.Load(Settings.Train.Resolve(Store, AllowLocalFiles), Settings.Test.Resolve(Store, AllowLocalFiles));
        foreach (var i in Settings.TestIndices)
            if (i < 0 || i >= data.Test.Count)
                throw new ArgumentException($"test index {i} is outside the test set {Settings.Test.Path} (rows 0..{data.Test.Count - 1})");
        return data;
    }

    /// <summary>Trains the model (or loads the job's checkpoint if it exists).</summary>
    public Checkpoint TrainOrLoad(TrainTestData data, IProgress<string>? progress = null)
    {
        if (Store.Exists(CheckpointKey))
        {
            using var s = Store.OpenRead(CheckpointKey);
            return Checkpoint.Load(s);
        }
        var spec = Settings.BuildSpec(data);
        Settings.CheckSize(spec);
        if (Settings.Checkpoint is not null) return AdoptCheckpoint(spec);
        var device = Compute.Devices.Default;
        using var tensors = DataTensors.From(data.Train, spec, device);
        var objective = new Objective(spec, tensors, data.Train.Count, device);
        using var init = Settings.Weights is null ? Network.Initialize(spec, device) : LoadWeights(spec, device, progress);
        Checkpoint checkpoint;
        if (Settings.Weights is not null && !Settings.TrainFromWeights)
        {
            // Scored as given: the checkpoint records how far from an optimum they are (influence assumes one).
            var (value, gradient) = objective.ValueAndGradient(init);
            double norm = gradient.norm().ToDouble();
            gradient.Dispose();
            progress?.Report(FormattableString.Invariant($"scoring the weights as given: objective {value:G6}, ‖∇F‖ = {norm:E2} (--train-from-weights trains on to an optimum first)"));
            checkpoint = new Checkpoint(spec, Checkpoint.ToArray(init), value, norm, 0, 0, 0);
        }
        else if (Settings.Training.Optimizer is null)
        {
            var result = FullBatchTrainer.Train(objective, init, new TrainingOptions { Cancel = Stopping }, progress);
            checkpoint = new Checkpoint(spec, Checkpoint.ToArray(result.Theta), result.Objective, result.GradientNorm,
                result.LbfgsIterations, result.NewtonIterations, result.Seconds);
            result.Theta.Dispose();
        }
        else
        {
            var sw = Stopwatch.StartNew();
            progress?.Report($"training with {Settings.Training.Describe()}");
            var (theta, trajectory) = MinibatchTrainer.Train(objective, init, Settings.Training.ToMinibatch(Settings.Seed), Stopping);
            // TracIn's checkpoints go first: a checkpoint.json without them would be taken as finished training.
            WriteTrajectory(trajectory);
            var (value, gradient) = objective.ValueAndGradient(theta);
            checkpoint = new Checkpoint(spec, Checkpoint.ToArray(theta), value, gradient.norm().ToDouble(), 0, 0, sw.Elapsed.TotalSeconds);
            foreach (var c in trajectory) c.Theta.Dispose();
            theta.Dispose();
            gradient.Dispose();
        }
        Store.Write(CheckpointKey, checkpoint.Save);
        return checkpoint;
    }

    /// <summary>
    /// The settings in which two models differ ("L2 0.01 against 0.02"), or null when they are the
    /// same model. The seed is left out: it only chose the starting point of training.
    /// </summary>
    private static string? SpecDifference(ModelSpec stored, ModelSpec wanted)
    {
        var a = System.Text.Json.JsonSerializer.SerializeToElement(stored);
        var b = System.Text.Json.JsonSerializer.SerializeToElement(wanted);
        var differing = a.EnumerateObject()
            .Where(p => p.Name != nameof(ModelSpec.Seed) && (!b.TryGetProperty(p.Name, out var q) || q.GetRawText() != p.Value.GetRawText()))
            .Select(p => $"{p.Name} {Safety.Echo.Cap(p.Value.GetRawText(), 40)} against {(b.TryGetProperty(p.Name, out var q) ? Safety.Echo.Cap(q.GetRawText(), 40) : "none")}")
            .ToList();
        return differing.Count == 0 ? null : string.Join(", ", differing);
    }

    /// <summary>θ from the PyTorch state_dict of --weights, every tensor checked against the model the settings describe.</summary>
    private Tensor LoadWeights(ModelSpec spec, Device device, IProgress<string>? progress)
    {
        if (Method.NeedsCheckpoints && !Settings.TrainFromWeights)
            throw new ArgumentException($"--method {Settings.Method} needs the training run's checkpoints, which --weights does not carry: add --train-from-weights with --optimizer sgd or adam");
        var path = StoredFiles.LocalPath(Store, Settings.Weights!, AllowLocalFiles);
        var theta = PyTorchWeights.Load(path, Settings.Weights!, spec, Settings.WeightsMap);
        progress?.Report($"loaded {spec.ParameterCount:N0} parameters of {spec.Describe()} from --weights");
        return tensor(theta, dtype: ScalarType.Float64).to(spec.ScalarType).to(device);
    }

    /// <summary>Takes a trained model from an earlier job, after checking it is the model the settings describe.</summary>
    private Checkpoint AdoptCheckpoint(ModelSpec spec)
    {
        var path = StoredFiles.LocalPath(Store, Settings.Checkpoint!, AllowLocalFiles);
        if (!File.Exists(path)) throw new FileNotFoundException($"--checkpoint {Settings.Checkpoint}: file not found");
        Checkpoint checkpoint;
        try { using var s = File.OpenRead(path); checkpoint = Checkpoint.Load(s); }
        catch (InvalidDataException e) { throw new InvalidDataException($"--checkpoint {Settings.Checkpoint}: {e.Message}"); }
        if (SpecDifference(checkpoint.Spec, spec) is { } difference)
            throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"--checkpoint {Settings.Checkpoint} holds {checkpoint.Spec.Describe()} ({checkpoint.Parameters.Length:N0} parameters), but the options and data describe {spec.Describe()} ({spec.ParameterCount:N0} parameters): they differ in {difference}"));
        if (Method.NeedsCheckpoints)
            throw new ArgumentException($"--method {Settings.Method} needs the training run's checkpoints, which --checkpoint does not carry: let the job train with --optimizer sgd or adam");
        Store.Write(CheckpointKey, checkpoint.Save);
        return checkpoint;
    }

    /// <summary>
    /// Shard scoring step: influence of rows [start, end) on every query and their self-influence (NaN
    /// where the method has none), written as a block (Q×n influence, then n self-influence,
    /// float64); returns the local top-k.
    /// </summary>
    public TopKLists ScoreShard(Checkpoint checkpoint, Dataset train, ScorePlan plan, int shard, int start, int end, IProgress<long>? progress = null)
    {
        var key = ScoreBlockKey(shard);
        if (Store.Exists(key))
        {
            using var existing = OpenBlock(shard, end - start, plan.QueryCount);
            return TopKLists.FromBlock(existing.ReadAllInfluence(), existing.QueryCount, existing.Count, start, Settings.TopK);
        }
        var device = Compute.Devices.Default;
        using var rows = DataTensors.From(train, start, end, checkpoint.Spec, device);
        var sw = Stopwatch.StartNew();
        var scores = Method.ScoreRows(this, checkpoint, train, rows, plan, shard, start, end, progress);
        double seconds = sw.Elapsed.TotalSeconds;
        double floor, gemm = ShardScorer.GemmSeconds(checkpoint.Spec, plan, rows.Count, Settings.BatchSize);
        using (var theta = checkpoint.Theta(device)) floor = rows.Count / ShardScorer.ForwardBackwardRate(checkpoint.Spec, theta, rows, Settings.BatchSize);
        Store.Write(key, s => ScoreBlock.Write(s, scores.QueryCount, scores.Count, scores.Influence, scores.SelfInfluence,
            new BlockTimings(seconds, floor, scores.Passes, scores.SelfInfluenceSeconds, gemm)));
        return scores.TopK;
    }

    /// <param name="Seconds">The scoring's wall time on its silo.</param>
    /// <param name="ForwardBackwardSeconds">A plain batched forward+backward over the same rows at the rate timed on one of its batches, after it on the same silo.</param>
    /// <param name="SelfInfluenceSeconds">The part of <paramref name="Seconds"/> spent on self-influence.</param>
    /// <param name="GemmSeconds">The same-shape matrix product (rows × P times P × queries, per term) at the rate timed on one batch (<see cref="ShardScorer.GemmSeconds"/>).</param>
    public sealed record BlockTimings(double Seconds, double ForwardBackwardSeconds, int Passes, double SelfInfluenceSeconds = 0, double GemmSeconds = double.NaN);

    /// <summary>Opens a shard's score block for reading in its stored order (influence query by query, self-influence, timings).</summary>
    public ScoreBlock OpenBlock(int shard, int expectedCount, long expectedQueries) =>
        new(Store.OpenRead(ScoreBlockKey(shard)), $"score block of shard {shard}", expectedCount, expectedQueries);

    /// <summary>Deletes the large intermediate artifacts (partial Hessians, factorisation, blocks).</summary>
    public void DeleteWork() => Store.DeletePrefix(JobKeys.WorkPrefix(JobId));

    /// <summary>TracIn's checkpoints: the learning rates, and θ of each as checkpoint{k}.theta.</summary>
    private void WriteTrajectory(IReadOnlyList<TrainingCheckpoint> trajectory)
    {
        using var rates = tensor(trajectory.Select(c => c.LearningRate).ToArray(), dtype: ScalarType.Float64);
        TensorArchive.Write(Store, TrajectoryKey, trajectory.Select((c, k) => new KeyValuePair<string, Tensor>($"checkpoint{k}.theta", c.Theta))
            .Prepend(new("learning_rates", rates)));
    }

    /// <summary>The checkpoints <see cref="TrainOrLoad"/> kept of minibatch training (learning rate and θ each).</summary>
    public IReadOnlyList<(double LearningRate, Tensor Theta)> ReadTrajectory()
    {
        using var a = TensorArchive.Read(Store, TrajectoryKey, Compute.Devices.Default);
        return a["learning_rates"].data<double>().ToArray().Select((rate, k) => (rate, a.Take($"checkpoint{k}.theta"))).ToList();
    }
}
