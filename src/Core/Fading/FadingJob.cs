using System.Globalization;
using System.Text;
using System.Text.Json;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Fading;

/// <summary>
/// `influence fading`: how long influence predicts the effect of a perturbation as training goes on.
/// A unit runs the baseline trajectory once and, in lockstep on the same batches, each of its
/// examples' perturbed trajectories, TracIn's additive prediction and the linearised trajectory
/// δ_{s+1} = δ_s − η(H_{B_s}(θ_s) δ_s + 1[j ∈ B_s] (ε/|B|) ∇L(z_j; θ_s)) by Hessian-vector
/// products. A unit's rows are written once under its id (resumes and retries redo nothing).
/// </summary>
public sealed class FadingJob(IArtifactStore store, string jobId, FadingSettings settings)
    : UnitJob<FadingSettings, FadingPlan>(store, jobId, settings, Folder)
{
    private const string Folder = "fading";
    public const string CsvHeader = "train_index,test_index,step,actual_delta,predicted_if,predicted_tracin,predicted_linear,param_distance";

    protected override ScoreSettings ScoreSettings => Settings.ScoreJob;
    public static string SettingsKeyOf(string jobId) => SettingsKeyOf(jobId, Folder);
    public static FadingSettings LoadSettings(IArtifactStore store, string jobId) => SettingsJson.Load<FadingSettings>(store, SettingsKeyOf(jobId));

    /// <summary>The influence at θ₀, [test point][training row] (I = −∇L(test)ᵀH⁻¹∇L(z)).</summary>
    public double[][] ReadInfluence(int trainCount) => ReadMatrix(InfluenceKey, Settings.Score.TestIndices.Length, trainCount);

    public FadingPlan Plan(TrainTestData data)
    {
        if (LoadPlan() is { } existing) return existing;
        int n = data.Train.Count;
        var removal = Settings.Removal.WithFiles(path => StoredFiles.LocalPath(Store, path, AllowLocalFiles));
        var influence = ReadInfluence(n);
        var predictedRemoval = influence.Select(row => row.Select(v => -v / n).ToArray()).ToArray(); // top/bottom rank by the LOO prediction
        var removed = removal.Resolve(n, predictedRemoval);
        var units = new List<FadingUnit>();
        for (int start = 0; start < removed.Length; start += Settings.RemovalsPerUnit)
            units.Add(new FadingUnit(units.Count, removed.Skip(start).Take(Settings.RemovalsPerUnit).ToArray()));
        return SavePlan(new FadingPlan(n, Settings.Score.TestIndices, removed, FadingSettings.RecordedSteps(Settings.Steps), units.ToArray()));
    }

    public bool IsDone(FadingUnit unit) => IsDone(unit.Id);

    /// <summary>A silo's context: data, θ₀ and the influence rows.</summary>
    public FadingContext LoadContext(FadingPlan plan)
    {
        var data = Score.LoadData();
        Checkpoint checkpoint;
        using (var s = Store.OpenRead(Score.CheckpointKey)) checkpoint = Checkpoint.Load(s);
        return new FadingContext(data, checkpoint, plan.TestIndices, ReadInfluence(plan.TrainCount));
    }

    /// <summary>Runs a unit (unless its rows exist) and writes its rows.</summary>
    public IReadOnlyList<FadingRow> RunUnit(FadingUnit unit, FadingContext context, FadingPlan plan, IProgress<int>? progress = null, CancellationToken cancel = default)
    {
        if (IsDone(unit)) return ReadUnit(unit);
        // The runs go in lockstep, so progress is the items' share of the steps done (whole items).
        int reported = 0;
        var rows = context.Simulate(unit.Items, Settings, plan.RecordedSteps, cancel, fraction =>
        {
            int now = (int)(unit.Items.Length * fraction);
            if (now > reported) { progress?.Report(now - reported); reported = now; }
        });
        Store.Write(UnitKey(unit.Id), s => WriteRows(s, rows));
        if (unit.Items.Length > reported) progress?.Report(unit.Items.Length - reported);
        return rows;
    }

    public static void WriteRows(Stream stream, IEnumerable<FadingRow> rows) => WriteCsv(stream, CsvHeader, rows, r =>
        $"{r.TrainIndex},{r.TestIndex},{r.Step},{F(r.ActualDelta)},{F(r.PredictedIf)},{F(r.PredictedTracin)},{F(r.PredictedLinear)},{F(r.ParamDistance)}");

    public IReadOnlyList<FadingRow> ReadUnit(FadingUnit unit)
    {
        using var s = Store.OpenRead(UnitKey(unit.Id));
        return ReadRows(s, UnitKey(unit.Id));
    }

    public static IReadOnlyList<FadingRow> ReadRows(Stream s, string source) => ReadCsv(s, source, CsvHeader, f =>
    {
        var inv = CultureInfo.InvariantCulture;
        var v = new double[5];
        return f.Length == 8 && int.TryParse(f[0], NumberStyles.None, inv, out int train) && int.TryParse(f[1], NumberStyles.None, inv, out int test)
            && int.TryParse(f[2], NumberStyles.None, inv, out int step) && Enumerable.Range(0, 5).All(i => double.TryParse(f[3 + i], NumberStyles.Float, inv, out v[i]))
            ? new FadingRow(train, test, step, v[0], v[1], v[2], v[3], v[4])
            : null;
    });
}

/// <summary>What every unit of a fading job needs on a silo, loaded once.</summary>
public sealed class FadingContext : IDisposable
{
    private readonly double[][] influence;
    private readonly int[] testIndices;

    public FadingContext(TrainTestData data, Checkpoint checkpoint, int[] testIndices, double[][] influence)
    {
        this.influence = influence;
        this.testIndices = testIndices;
        Spec = checkpoint.Spec;
        var device = Compute.Devices.Default;
        Theta0 = checkpoint.Theta(device);
        Train = DataTensors.From(data.Train, Spec, device);
        Test = DataTensors.From(data.Test.Select(testIndices), Spec, device);
        Mask = Network.RegularizationMask(Spec, device);
    }

    public ModelSpec Spec { get; }
    public Tensor Theta0 { get; }
    public DataTensors Train { get; }
    /// <summary>The chosen test points, in --test-indices order.</summary>
    public DataTensors Test { get; }
    private Tensor Mask { get; }

    /// <summary>The rows of SGD step <paramref name="step"/> (0-based): epochs of a seeded permutation, the same in every run.</summary>
    public static IEnumerable<long[]> Batches(int n, int batchSize, int seed)
    {
        var random = new Random(Seeds.FadingBatches(seed));
        while (true)
        {
            var order = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
            random.Shuffle(order);
            for (int start = 0; start < n; start += batchSize) yield return order[start..Math.Min(n, start + batchSize)];
        }
    }

    /// <summary>(1/|B|) Σ_{i∈B} w_i L(z_i, θ) + R(θ): the minibatch objective with example weights.</summary>
    private Tensor BatchObjective(Tensor theta, DataTensors batch, Tensor weights) =>
        Objective.PerExampleLoss(Spec, Network.Logits(Spec, theta, batch.X), batch.Y).mul(weights).sum().div(batch.Count)
            .add(theta.mul(Mask).square().sum().mul(Spec.L2 / 2));

    /// <summary>∇L(z, θ) of each row of <paramref name="rows"/> (R × P), by one backward pass per row.</summary>
    private Tensor RowGradients(Tensor theta, DataTensors rows)
    {
        var grads = new List<Tensor>();
        for (long r = 0; r < rows.Count; r++)
        {
            var t = theta.detach().requires_grad_(true);
            var loss = Objective.PerExampleLoss(Spec, Network.Logits(Spec, t, rows.X.narrow(0, r, 1)), rows.Y.narrow(0, r, 1)).sum();
            grads.Add(autograd.grad([loss], [t])[0]);
        }
        return stack(grads);
    }

    private double[] TestLosses(Tensor theta)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return Objective.PerExampleLoss(Spec, Network.Logits(Spec, theta, Test.X), Test.Y).to(ScalarType.Float64).cpu().data<double>().ToArray();
    }

    /// <summary>The baseline and each item's perturbed trajectory, with the predictions, recorded at <paramref name="recorded"/>.</summary>
    /// <param name="stepsDone">Told the fraction of the steps done after each step.</param>
    public IReadOnlyList<FadingRow> Simulate(int[] items, FadingSettings settings, int[] recorded, CancellationToken cancel = default, Action<double>? stepsDone = null)
    {
        double eta = settings.LearningRate, epsilon = settings.Epsilon;
        int n = (int)Train.Count, q = (int)Test.Count, r = items.Length;
        var record = recorded.ToHashSet();
        var device = Theta0.device;
        var theta = Theta0.clone();
        var perturbed = items.Select(_ => Theta0.clone()).ToArray();
        var delta = items.Select(_ => zeros_like(Theta0)).ToArray();
        var tracin = new double[r, q];
        var rows = new List<FadingRow>();
        var batches = Batches(n, settings.BatchSize, settings.Score.Seed).GetEnumerator();
        for (int step = 1; step <= settings.Steps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            batches.MoveNext();
            var batchRows = batches.Current;
            using (var scope = NewDisposeScope())
            {
                using var index = tensor(batchRows, device: device);
                var batch = new DataTensors(Train.X.index_select(0, index), Train.Y.index_select(0, index));
                var unit = torch.ones(batchRows.Length, dtype: Theta0.dtype, device: device);
                var inBatch = items.Select(j => Array.IndexOf(batchRows, (long)j)).ToArray();

                // The baseline gradient with its graph: H_B(θ_s) δ for every item by double backward.
                var t = theta.detach().requires_grad_(true);
                var g = autograd.grad([BatchObjective(t, batch, unit)], [t], retain_graph: true, create_graph: true)[0];
                var hvp = new Tensor[r];
                for (int k = 0; k < r; k++)
                    hvp[k] = autograd.grad([g.mul(delta[k]).sum()], [t], retain_graph: true)[0].detach();
                var gradient = g.detach();

                Tensor? testGrads = null;
                for (int k = 0; k < r; k++)
                {
                    if (inBatch[k] < 0) continue;
                    // The perturbation's own push this step, −η (ε/|B|) ∇L(z_j; θ_s): TracIn adds its first-order effect on each test loss.
                    var gj = RowGradients(theta, new DataTensors(batch.X.narrow(0, inBatch[k], 1), batch.Y.narrow(0, inBatch[k], 1)))[0];
                    testGrads ??= RowGradients(theta, Test);
                    var dots = testGrads.matmul(gj).to(ScalarType.Float64).cpu().data<double>().ToArray();
                    for (int c = 0; c < q; c++) tracin[k, c] += -eta * epsilon / batchRows.Length * dots[c];
                    hvp[k].add_(gj, alpha: epsilon / batchRows.Length);
                }
                for (int k = 0; k < r; k++) delta[k].sub_(hvp[k].mul(eta));

                // The perturbed runs: the same batch, the item's weight 1 + ε (the same arithmetic as the baseline's when ε = 0).
                for (int k = 0; k < r; k++)
                {
                    var w = unit.clone();
                    if (inBatch[k] >= 0) w[inBatch[k]].fill_(1 + epsilon);
                    var tk = perturbed[k].detach().requires_grad_(true);
                    var gk = autograd.grad([BatchObjective(tk, batch, w)], [tk])[0];
                    using (no_grad()) perturbed[k].sub_(gk.mul(eta));
                }
                using (no_grad()) theta.sub_(gradient.mul(eta));
            }
            stepsDone?.Invoke((double)step / settings.Steps);
            if (!record.Contains(step)) continue;
            using (var scope = NewDisposeScope())
            {
                var baseLoss = TestLosses(theta);
                var testGrads = RowGradients(theta, Test);
                for (int k = 0; k < r; k++)
                {
                    var loss = TestLosses(perturbed[k]);
                    double distance = perturbed[k].sub(theta).to(ScalarType.Float64).norm().ToDouble();
                    var linear = testGrads.matmul(delta[k]).to(ScalarType.Float64).cpu().data<double>().ToArray();
                    for (int c = 0; c < q; c++)
                        rows.Add(new FadingRow(items[k], testIndices[c], step, loss[c] - baseLoss[c],
                            epsilon * influence[c][items[k]] / n, tracin[k, c], linear[c], distance));
                }
            }
        }
        theta.Dispose();
        foreach (var t in perturbed.Concat(delta)) t.Dispose();
        return rows;
    }

    public void Dispose()
    {
        Theta0.Dispose();
        Train.Dispose();
        Test.Dispose();
        Mask.Dispose();
    }
}
