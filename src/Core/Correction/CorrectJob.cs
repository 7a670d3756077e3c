using System.Globalization;
using System.Text;
using System.Text.Json;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Storage;
using static TorchSharp.torch;

namespace Influence.Core.Correction;

/// <summary>
/// One fine-tuning run's outcome after <see cref="Steps"/> steps (a row of correct.csv).
/// <see cref="OtherAccuracyChange"/> and <see cref="OtherLossChange"/> are over every other test row
/// (the whole test file less the target), after minus before.
/// </summary>
public sealed record CorrectRow(int TestIndex, string Selection, int K, int Steps, double Lr, int Seed, bool Fixed,
    double TargetLossBefore, double TargetLossAfter, double OtherAccuracyChange, double OtherLossChange);

/// <summary>
/// `influence correct` (Schioppa et al. 2023): for each test point θ̂ mispredicts, rank the training
/// examples by their influence on its loss at the true label, fine-tune from θ̂ on the top k for a
/// few SGD steps, and record whether the prediction became right and what it cost the rest of the
/// test set; the same for the skeptic's selections (<see cref="Selections"/>). Units of work are a
/// few targets each; a unit's rows are written once under its id (resumes and retries redo nothing).
/// </summary>
public sealed class CorrectJob(IArtifactStore store, string jobId, CorrectSettings settings)
    : UnitJob<CorrectSettings, CorrectPlan>(store, jobId, settings, Folder)
{
    private const string Folder = "correct";
    public const string CsvHeader = "test_index,selection,k,steps,lr,fixed,target_loss_before,target_loss_after,other_accuracy_change,other_loss_change,seed";

    protected override ScoreSettings ScoreSettings => Settings.ScoreJob;
    public string GradDotJobId => $"{JobId}-grad-dot";
    public string GradDotKey => Settings.Score.Method == Methods.GradDot ? InfluenceKey : JobKeys.Output(GradDotJobId, "influence.npy");
    /// <summary>The main score job's θ̂, for the grad-dot job (it scores the same model).</summary>
    public string CheckpointInput => StoredFiles.Scheme + JobKeys.Checkpoint(JobId);

    public static string SettingsKeyOf(string jobId) => SettingsKeyOf(jobId, Folder);
    public static CorrectSettings LoadSettings(IArtifactStore store, string jobId) => SettingsJson.Load<CorrectSettings>(store, SettingsKeyOf(jobId));

    /// <summary>Runs per target: one per selection × k × learning rate, × seeds for the random ones; self once per rate.</summary>
    public int RunsPerTarget => Settings.Selections.Sum(s => s == Selections.Self ? Settings.LearningRates.Length
        : Settings.K.Length * Settings.LearningRates.Length * (Selections.IsSeeded(s) ? Settings.Seeds : 1));

    /// <summary>The mispredicted test points among --test-indices, in units; persisted once (a resume reads it back).</summary>
    public CorrectPlan Plan(TrainTestData data, Checkpoint checkpoint)
    {
        if (LoadPlan() is { } existing) return existing;
        var indices = Settings.Score.TestIndices;
        var spec = checkpoint.Spec;
        var device = Compute.Devices.Default;
        int[] predicted;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            using var test = DataTensors.From(data.Test.Select(indices), spec, device);
            predicted = Predictions(spec, Network.Logits(spec, checkpoint.Theta(device), test.X));
        }
        var positions = Enumerable.Range(0, indices.Length).Where(q => predicted[q] != data.Test.Labels[indices[q]]).ToArray();
        var targets = positions.Select(q => indices[q]).ToArray();
        var units = new List<CorrectUnit>();
        for (int start = 0; start < targets.Length; start += Settings.TargetsPerUnit)
            units.Add(new CorrectUnit(units.Count, Enumerable.Range(start, Math.Min(Settings.TargetsPerUnit, targets.Length - start)).ToArray()));
        return SavePlan(new CorrectPlan(data.Train.Count, data.Test.Count, targets, positions, RunsPerTarget, units.ToArray()));
    }

    /// <summary>Class predictions from logits (one logit: its sign).</summary>
    public static int[] Predictions(ModelSpec spec, Tensor logits) =>
        (spec.IsBinary ? logits.squeeze(1).gt(0).to(ScalarType.Int64) : logits.argmax(1)).cpu().data<long>().Select(v => (int)v).ToArray();

    /// <summary>A score job's dense influence (test points in --test-indices order × training rows).</summary>
    public double[][] ReadScores(string key, int trainCount) => ReadMatrix(key, Settings.Score.TestIndices.Length, trainCount);

    public bool IsDone(CorrectUnit unit) => IsDone(unit.Id);

    /// <summary>A silo's context: the data, θ̂ and the score rows (after the score jobs and the plan).</summary>
    public CorrectContext LoadContext(CorrectPlan plan)
    {
        var data = Score.LoadData();
        Checkpoint checkpoint;
        using (var s = Store.OpenRead(Score.CheckpointKey)) checkpoint = Checkpoint.Load(s);
        var influence = ReadScores(InfluenceKey, plan.TrainCount);
        var gradDot = Settings.Selections.Contains(Selections.GradDot) ? ReadScores(GradDotKey, plan.TrainCount) : null;
        return new CorrectContext(data, checkpoint, influence, gradDot);
    }

    /// <summary>Runs one unit's fine-tunings (unless its rows exist) and writes its rows.</summary>
    /// <param name="cancel">Checked between runs (a stopping silo): the unit then ends without writing anything.</param>
    public IReadOnlyList<CorrectRow> RunUnit(CorrectUnit unit, CorrectContext context, CorrectPlan plan, IProgress<int>? progress = null, CancellationToken cancel = default)
    {
        if (IsDone(unit)) return ReadUnit(unit);
        var rows = new List<CorrectRow>();
        foreach (int t in unit.Targets)
        {
            int testIndex = plan.Targets[t], position = plan.Positions[t];
            foreach (var selection in Settings.Selections)
            {
                var seeds = Selections.IsSeeded(selection) ? Enumerable.Range(0, Settings.Seeds) : [0];
                var ks = selection == Selections.Self ? [1] : Settings.K;
                foreach (int seed in seeds)
                    foreach (int k in ks)
                    {
                        var chosen = context.Choose(selection, testIndex, position, k, seed, Settings.Direction);
                        foreach (double lr in Settings.LearningRates)
                        {
                            cancel.ThrowIfCancellationRequested();
                            foreach (var outcome in context.FineTune(testIndex, chosen, lr, Settings.Steps))
                            {
                                // Self is the same for every k: one run, a row per k so the tables line up.
                                foreach (int kk in selection == Selections.Self ? Settings.K : [k])
                                    rows.Add(new CorrectRow(testIndex, selection, kk, outcome.Steps, lr, seed, outcome.Fixed, outcome.TargetLossBefore,
                                        outcome.TargetLossAfter, outcome.OtherAccuracyChange, outcome.OtherLossChange));
                            }
                            progress?.Report(1);
                        }
                    }
            }
        }
        Store.Write(UnitKey(unit.Id), s => WriteRows(s, rows));
        return rows;
    }

    public static void WriteRows(Stream stream, IEnumerable<CorrectRow> rows) => WriteCsv(stream, CsvHeader, rows, r =>
        $"{r.TestIndex},{r.Selection},{r.K},{r.Steps},{F(r.Lr)},{(r.Fixed ? 1 : 0)},{F(r.TargetLossBefore)},{F(r.TargetLossAfter)},{F(r.OtherAccuracyChange)},{F(r.OtherLossChange)},{r.Seed}");

    /// <summary>A finished unit's rows.</summary>
    public IReadOnlyList<CorrectRow> ReadUnit(CorrectUnit unit) => ReadRows(Store, UnitKey(unit.Id));

    public static IReadOnlyList<CorrectRow> ReadRows(IArtifactStore store, string key)
    {
        using var s = store.OpenRead(key);
        return ReadRows(s, key);
    }

    /// <param name="key">Names the source in errors.</param>
    public static IReadOnlyList<CorrectRow> ReadRows(Stream s, string key) => ReadCsv(s, key, CsvHeader, f =>
    {
        var inv = CultureInfo.InvariantCulture;
        return f.Length == 11 && Selections.All.Contains(f[1])
            && int.TryParse(f[0], NumberStyles.None, inv, out int test) && int.TryParse(f[2], NumberStyles.None, inv, out int k)
            && int.TryParse(f[3], NumberStyles.None, inv, out int steps) && double.TryParse(f[4], NumberStyles.Float, inv, out double lr)
            && f[5] is "0" or "1" && double.TryParse(f[6], NumberStyles.Float, inv, out double before) && double.TryParse(f[7], NumberStyles.Float, inv, out double after)
            && double.TryParse(f[8], NumberStyles.Float, inv, out double accuracy) && double.TryParse(f[9], NumberStyles.Float, inv, out double loss)
            && int.TryParse(f[10], NumberStyles.None, inv, out int seed)
            ? new CorrectRow(test, f[1], k, steps, lr, seed, f[5] == "1", before, after, accuracy, loss)
            : null;
    });
}

/// <summary>What a run fine-tuned on: training rows with weights (+1/|descent set|, −1/|ascent set|), or the target itself.</summary>
public sealed record FineTuneSet(int[] Rows, double[] Weights, bool Target);

/// <summary>A run's state after some of its steps.</summary>
public sealed record FineTuneOutcome(int Steps, bool Fixed, double TargetLossBefore, double TargetLossAfter, double OtherAccuracyChange, double OtherLossChange);

/// <summary>
/// What every unit of one correct job needs on a silo, loaded once: θ̂, the training and test
/// tensors, the test set's losses and predictions under θ̂, and the score rows the selections rank by.
/// </summary>
public sealed class CorrectContext : IDisposable
{
    private readonly TrainTestData data;
    private readonly double[][] influence;
    private readonly double[][]? gradDot;
    private readonly bool[] baseCorrect;
    private readonly double[] baseLoss;

    public CorrectContext(TrainTestData data, Checkpoint checkpoint, double[][] influence, double[][]? gradDot)
    {
        this.data = data;
        this.influence = influence;
        this.gradDot = gradDot;
        Spec = checkpoint.Spec;
        var device = Compute.Devices.Default;
        ThetaHat = checkpoint.Theta(device);
        Train = DataTensors.From(data.Train, Spec, device);
        Test = DataTensors.From(data.Test, Spec, device);
        (baseCorrect, baseLoss) = Evaluate(ThetaHat);
    }

    public ModelSpec Spec { get; }
    public Tensor ThetaHat { get; }
    public DataTensors Train { get; }
    /// <summary>The whole test file (the collateral is measured on all of it but the target).</summary>
    public DataTensors Test { get; }

    /// <summary>Whether each test row is predicted right under θ, and its loss.</summary>
    private (bool[] Correct, double[] Loss) Evaluate(Tensor theta)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = Network.Logits(Spec, theta, Test.X);
        var predicted = CorrectJob.Predictions(Spec, logits);
        var loss = Objective.PerExampleLoss(Spec, logits, Test.Y).to(ScalarType.Float64).cpu().data<double>().ToArray();
        return (predicted.Select((p, i) => p == data.Test.Labels[i]).ToArray(), loss);
    }

    /// <summary>The examples a selection gives for the target (k of them; both directions: k each way).</summary>
    public FineTuneSet Choose(string selection, int testIndex, int position, int k, int seed, CorrectDirection direction)
    {
        int n = data.Train.Count, label = data.Test.Labels[testIndex];
        switch (selection)
        {
            case Selections.Influence:
            case Selections.GradDot:
            {
                var scores = selection == Selections.Influence ? influence[position]
                    : (gradDot ?? throw new InvalidOperationException("grad-dot scores were not computed"))[position];
                // I = −∇L(test)ᵀ(H + δI)⁻¹∇L(z) (docs/conventions.md; grad-dot the same with H = I):
                // the most negative are the proponents, whose removal would raise the target's loss.
                var order = Enumerable.Range(0, n).OrderBy(i => scores[i]).ThenBy(i => i).ToArray();
                int take = Math.Min(k, n);
                var proponents = order.Take(take).ToArray();
                var opponents = order.Reverse().Take(take).ToArray();
                return direction switch
                {
                    CorrectDirection.Proponents => Weighted(proponents, []),
                    CorrectDirection.Opponents => Weighted([], opponents),
                    _ => Weighted(proponents, opponents),
                };
            }
            case Selections.Random:
                return Weighted(Draw(Enumerable.Range(0, n).ToArray(), k, seed, testIndex, 0), []);
            case Selections.RandomClass:
                return Weighted(Draw(ClassRows(label), k, seed, testIndex, 1), []);
            case Selections.NearestClass:
            {
                var rows = ClassRows(label);
                int d = data.Test.FeatureCount;
                var x = data.Test.Features.AsSpan(testIndex * d, d).ToArray();
                double Distance(int i)
                {
                    var row = data.Train.Features.AsSpan(i * d, d);
                    double s = 0;
                    for (int c = 0; c < d; c++) { double e = row[c] - x[c]; s += e * e; }
                    return s;
                }
                return Weighted(rows.OrderBy(Distance).ThenBy(i => i).Take(k).ToArray(), []);
            }
            case Selections.Self:
                return new FineTuneSet([testIndex], [1.0], Target: true);
            default:
                throw new ArgumentException($"unknown selection '{Safety.Echo.Cap(selection)}'");
        }

        int[] ClassRows(int c)
        {
            var rows = Enumerable.Range(0, n).Where(i => data.Train.Labels[i] == c).ToArray();
            return rows.Length > 0 ? rows : throw new InvalidOperationException($"no training example has the class {c} of test row {testIndex}");
        }
    }

    private static int[] Draw(int[] from, int k, int seed, int testIndex, int stream)
    {
        var random = new Random(Seeds.CorrectSelection(seed, testIndex, stream));
        var copy = (int[])from.Clone();
        random.Shuffle(copy);
        return copy.Take(Math.Min(k, copy.Length)).ToArray();
    }

    private static FineTuneSet Weighted(int[] descent, int[] ascent) =>
        new([.. descent, .. ascent], [.. descent.Select(_ => 1.0 / descent.Length), .. ascent.Select(_ => -1.0 / ascent.Length)], Target: false);

    /// <summary>
    /// Full-batch gradient steps from θ̂ on Σ w_i L(z_i, θ) (the chosen examples' weighted mean
    /// training loss; no regulariser), recorded after each of <paramref name="steps"/>.
    /// </summary>
    public IReadOnlyList<FineTuneOutcome> FineTune(int testIndex, FineTuneSet set, double lr, int[] steps)
    {
        using var scope = NewDisposeScope();
        var device = ThetaHat.device;
        using var index = tensor(set.Rows.Select(i => (long)i).ToArray(), device: device);
        var source = set.Target ? Test : Train;
        var x = source.X.index_select(0, index);
        var y = source.Y.index_select(0, index);
        var w = tensor(set.Weights, dtype: ThetaHat.dtype, device: device);
        var record = steps.ToHashSet();
        var outcomes = new List<FineTuneOutcome>();
        var theta = ThetaHat.clone();
        for (int step = 1; step <= steps.Max(); step++)
        {
            using (var inner = NewDisposeScope())
            {
                var t = theta.detach().requires_grad_(true);
                var loss = Objective.PerExampleLoss(Spec, Network.Logits(Spec, t, x), y).mul(w).sum();
                var grad = autograd.grad([loss], [t])[0];
                using (no_grad()) theta.sub_(grad.mul(lr));
            }
            if (!record.Contains(step)) continue;
            var (correct, losses) = Evaluate(theta);
            int others = correct.Length - 1;
            double accuracyChange = 0, lossChange = 0;
            for (int i = 0; i < correct.Length; i++)
            {
                if (i == testIndex) continue;
                accuracyChange += (correct[i] ? 1 : 0) - (baseCorrect[i] ? 1 : 0);
                lossChange += losses[i] - baseLoss[i];
            }
            outcomes.Add(new FineTuneOutcome(step, correct[testIndex], baseLoss[testIndex], losses[testIndex],
                others > 0 ? accuracyChange / others : 0, others > 0 ? lossChange / others : 0));
        }
        return outcomes;
    }

    public void Dispose()
    {
        ThetaHat.Dispose();
        Train.Dispose();
        Test.Dispose();
    }
}
