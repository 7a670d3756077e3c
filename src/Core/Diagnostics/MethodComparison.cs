using System.Diagnostics;
using Influence.Core.Jobs;
using Influence.Core.Storage;

namespace Influence.Core.Diagnostics;

/// <summary>One estimator's agreement with the exact influence, and its cost.</summary>
public sealed record MethodRow(string Method, string Settings, double MeanSpearman, double MinSpearman, double MeanPearson, double Seconds, long CurvatureProducts, string Note);

/// <summary>
/// Every influence estimator on one model and one process, each through the score job's own
/// steps (<see cref="InProcessStages"/>): the exact job trains the model, the others score its
/// checkpoint (TracIn trains its own minibatch run), and each is compared with the exact influence
/// at the same damping. `influence compare-methods` does the same through a cluster; this gives the
/// methods' bare cost.
/// </summary>
public static class MethodComparison
{
    /// <summary>The rows: the exact reference first, then every method compare-methods runs by default, in the registry's order.</summary>
    public static readonly string[] Order = [Methods.Exact, .. Methods.All.Where(m => m.InDefaultComparison).Select(m => m.Name)];

    /// <summary>
    /// The benchmark's setting: tanh MLP on Iris, λ = 1e-3 on all parameters, test points 0–4, one
    /// shard, CG to 1e-8 and LiSSA depth 2000 × 4 (so that both converge to the exact answer).
    /// </summary>
    public static ScoreSettings IrisSettings(string train, string test, int[] hidden, double damping) => new()
    {
        Train = new Data.DatasetSpec(train),
        Test = new Data.DatasetSpec(test),
        Model = Models.ModelKind.Mlp,
        Hidden = hidden,
        Activation = Models.Activation.Tanh,
        L2 = 1e-3,
        WeightDecayOn = Models.DecayOn.All,
        Damping = damping,
        TestIndices = [0, 1, 2, 3, 4],
        Shards = 1,
        Options = new MethodOptions { CgTolerance = 1e-8, CgMaxIterations = 1000, LissaDepth = 2000, LissaRepeats = 4 },
    };

    /// <summary>TracIn's run in the benchmark: SGD, 100 epochs of batches of 16, a checkpoint every 20.</summary>
    public static readonly TrainingChoice IrisTracInTraining = new() { Optimizer = Training.Optimizer.Sgd, LearningRate = 0.05, Epochs = 100, TrainBatch = 16, CheckpointEvery = 20 };

    /// <param name="settings">The model, data, damping and method options every job shares.</param>
    /// <param name="tracinTraining">TracIn's minibatch run (it needs its checkpoints).</param>
    public static IReadOnlyList<MethodRow> Run(ScoreSettings settings, TrainingChoice tracinTraining, IProgress<string>? progress = null)
    {
        var dir = Directory.CreateTempSubdirectory("influence-methods-").FullName;
        try
        {
            var store = new LocalArtifactStore(dir);
            int trainCount = Data.TrainTestData.Load(settings.Train, settings.Test).Train.Count;
            var rows = new List<MethodRow>();
            Dictionary<int, double[]>? exact = null;
            string? checkpoint = null;
            foreach (var method in Order)
            {
                progress?.Report(method);
                bool ownRun = Methods.Get(method).NeedsCheckpoints; // trains its own minibatch run
                var job = new ScoreJob(store, method, ownRun
                    ? settings with { Method = method, Training = tracinTraining, Checkpoint = null, Dense = DenseOutput.Float64 }
                    : settings with { Method = method, Checkpoint = checkpoint, Dense = DenseOutput.Float64 }) { AllowLocalFiles = true }; // a local benchmark
                var clock = Stopwatch.StartNew();
                var result = InProcessStages.Run(job);
                double seconds = clock.Elapsed.TotalSeconds;
                var scores = ScoreComparison.ReadInfluence(store.PathOf(JobKeys.Output(job.JobId, "influence.npy")), settings.TestIndices, trainCount);
                exact ??= scores;
                checkpoint ??= store.PathOf(job.CheckpointKey);
                var agreement = ScoreComparison.Against(scores, exact);
                var report = result.Report;
                rows.Add(new MethodRow(method, Methods.Get(method).Describe(report), agreement.MeanSpearman, agreement.MinSpearman, agreement.MeanPearson, seconds,
                    report.Details["products"] is { } products ? long.Parse(products.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture) : 0, ownRun ? "its own SGD run, not θ̂" : string.Join("; ", report.Warnings)));
            }
            return rows;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
