using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Storage;
using Influence.Core.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Loo;

/// <summary>One retrain's record: for one test point, the actual change of its loss and how the retrain ended.</summary>
public sealed record UnitRow(RetrainMode Mode, UnitKind Kind, int Item, int TestIndex, double Delta,
    double GradientNorm, int Iterations, double Distance, double Seconds, bool Converged);

/// <summary>
/// The steps of a leave-one-out study over the artifact store. The score job (same id) supplies
/// θ̂ and the predicted deltas; <see cref="Plan"/> freezes the units of work; <see cref="RunUnit"/>
/// retrains one unit and writes its rows once, keyed by the unit's id; a unit whose rows exist
/// is never run again, so retries after a lost silo and <c>--resume</c> redo nothing finished.
/// </summary>
public sealed class LooJob(IArtifactStore store, string jobId, LooSettings settings)
{
    public IArtifactStore Store { get; } = store;
    /// <summary>Whether the request's index files may be local paths (the embedded mode); else only store:KEY.</summary>
    public bool AllowLocalFiles { get; init; }
    public string JobId { get; } = jobId;
    public LooSettings Settings { get; } = settings;
    private ScoreJob? score;
    /// <summary>The score job this LOO study checks (same id, same store, same file access).</summary>
    public ScoreJob Score => score ??= new(Store, JobId, Settings.ScoreJob) { AllowLocalFiles = AllowLocalFiles };
    public string Prefix => JobKeys.Prefix(JobId);
    public string PlanKey => JobKeys.LooPlan(JobId);
    public string UnitKey(int id) => JobKeys.LooUnit(JobId, id);
    /// <summary>The score job's dense influence matrix (test points × training rows, float64).</summary>
    public string InfluenceKey => JobKeys.Output(JobId, "influence.npy");

    private static JsonSerializerOptions Json => SettingsJson.Options;

    /// <summary>The score job's summary.json (written before any retrain is planned).</summary>
    public ScoreSummary InfluenceSummary() => Score.LoadSummary();

    /// <summary>
    /// The damping δ the influence used (with --damping auto, the one chosen from the spectrum, not
    /// the request's 0): PBRF retrains minimise the objective with that δ, the one the influence approximates.
    /// </summary>
    public double InfluenceDamping() => InfluenceSummary().Curvature.Damping;

    /// <summary>Predicted LOO deltas −I/N, [test point][train row], read from the score job's influence.npy.</summary>
    public double[][] PredictedDeltas(int trainCount)
    {
        using var s = Store.OpenRead(InfluenceKey);
        var result = Npy.ReadMatrix(s, $"artifact '{InfluenceKey}'", Settings.Score.TestIndices.Length, trainCount);
        foreach (var row in result)
            for (int i = 0; i < trainCount; i++) row[i] = -row[i] / trainCount;
        return result;
    }

    /// <summary>
    /// With newton-step and LDS subsets: each subset's own second-order
    /// prediction [subset][test point position] (<see cref="GroupNewtonStep"/>) instead of the sum
    /// of its rows' predictions; null for every other method. Kept as an artifact (a resumed job reads it).
    /// </summary>
    /// <param name="warn">Told how many subsets' leave-out curvature was not positive definite (a network's can be): their step is no descent step.</param>
    public Dictionary<int, double[]>? GroupPredictions(LooPlan plan, TrainTestData data, Checkpoint checkpoint, double damping, Action<string>? warn = null)
    {
        var method = Settings.Score.Method;
        if (plan.Subsets is not { } subsets || method is not (Jobs.Methods.NewtonStep or Jobs.Methods.NewtonStepLinear)) return null;
        var key = JobKeys.Work(JobId, "loo-group-newton-step.safetensors");
        if (!Store.Exists(key))
        {
            using var scope = torch.NewDisposeScope();
            var device = Compute.Devices.Default;
            var spec = checkpoint.Spec;
            if (Jobs.NewtonStepMethod.UsesEkfac(Settings.Score, spec))
                throw new ArgumentException("newton-step's group prediction (--remove subsets:…) updates the exact Hessian; with EK-FAC's inverse (--newton-inverse ekfac, or auto above 12,000 parameters) it has no group form: use --newton-inverse exact on a network of up to 12,000 parameters");
            using var train = DataTensors.From(data.Train, spec, device);
            using var test = DataTensors.From(data.Test.Select(plan.TestIndices), spec, device);
            using var group = new GroupNewtonStep(spec, checkpoint.Theta(device), train, damping);
            var predictions = new List<KeyValuePair<string, torch.Tensor>>();
            int indefinite = 0;
            for (int s = 0; s < subsets.Count; s++)
            {
                var kept = subsets.Kept(s, plan.TrainCount).ToHashSet();
                var removed = Enumerable.Range(0, plan.TrainCount).Where(i => !kept.Contains(i)).ToArray();
                var (change, report) = group.Predict(removed, test, method == Jobs.Methods.NewtonStepLinear);
                if (!report.Converged) throw new InvalidOperationException($"the group newton-step of subset {s} did not converge (relative residual {report.RelativeResidual:E2} after {report.Iterations} CG iterations; 0: a direct solve)");
                if (report.NegativeCurvature) indefinite++;
                predictions.Add(new($"subset{s}", torch.tensor(change, dtype: torch.ScalarType.Float64)));
            }
            if (indefinite > 0)
                warn?.Invoke($"for {indefinite} of {subsets.Count} subsets H + δI less the removed rows' curvature is not positive definite: their Newton step is no descent step (raise --damping)");
            TensorArchive.Write(Store, key, predictions);
        }
        using var archive = TensorArchive.Read(Store, key, torch.CPU);
        return Enumerable.Range(0, subsets.Count).ToDictionary(s => s, s => archive[$"subset{s}"].data<double>().ToArray());
    }

    /// <summary>The study's units, built once from the removal set and persisted (a resume reads them back).</summary>
    public LooPlan Plan(TrainTestData data, Checkpoint checkpoint)
    {
        if (LoadPlan() is { } existing) return existing;
        int n = data.Train.Count;
        // Index files the client put into the store are read through local copies.
        var removal = Settings.Removal.WithFiles(path => StoredFiles.LocalPath(Store, path, AllowLocalFiles));
        bool fast = checkpoint.Spec.IsLogisticRegression && checkpoint.Spec.Precision == Precision.Float64;
        var units = new List<LooUnit>();
        void Add(RetrainMode mode, UnitKind kind, IReadOnlyList<int> items, int size)
        {
            for (int start = 0; start < items.Count; start += size)
                units.Add(new LooUnit(units.Count, mode, kind, items.Skip(start).Take(size).ToArray()));
        }

        int[] removed = [];
        if (removal.Subsets is { } subsets)
        {
            foreach (var mode in Settings.Modes) Add(mode, UnitKind.Subset, Enumerable.Range(0, subsets.Count).ToArray(), Settings.UnitSize);
        }
        else
        {
            removed = removal.Resolve(n, PredictedDeltas(n));
            foreach (var mode in Settings.Modes)
                Add(mode, UnitKind.Removal, removed, fast && mode != RetrainMode.Cold ? Settings.WarmBatch : Settings.UnitSize);
        }
        if (Settings.NoiseSeeds > 0) Add(RetrainMode.Cold, UnitKind.Seed, Enumerable.Range(1, Settings.NoiseSeeds).ToArray(), Settings.UnitSize);

        var plan = new LooPlan(n, Settings.Score.TestIndices, removed, removal.Subsets, Settings.NoiseSeeds, units.ToArray());
        Store.Write(PlanKey, s => JsonSerializer.Serialize(s, plan, Json));
        return plan;
    }

    /// <summary>The persisted plan, or null before <see cref="Plan"/> ran.</summary>
    public LooPlan? LoadPlan()
    {
        if (!Store.Exists(PlanKey)) return null;
        using var s = Store.OpenRead(PlanKey);
        return JsonSerializer.Deserialize<LooPlan>(s, Json) ?? throw new InvalidDataException($"{PlanKey} is empty");
    }

    public string SettingsKey => JobKeys.LooSettings(JobId);

    /// <summary>Records the settings on the first start; a resume must bring the same (<see cref="SettingsJson.Claim"/>).</summary>
    public void CheckSettings() => SettingsJson.Claim(Store, SettingsKey, Settings, JobId);

    /// <summary>The settings job <paramref name="jobId"/>'s coordinator recorded (what its workers run under).</summary>
    public static LooSettings LoadSettings(IArtifactStore store, string jobId) => SettingsJson.Load<LooSettings>(store, JobKeys.LooSettings(jobId));

    public bool IsDone(LooUnit unit) => Store.Exists(UnitKey(unit.Id));

    /// <summary>Retrains one unit (unless its rows already exist) and writes its rows; returns them.</summary>
    /// <param name="cancel">Checked between retrains (a stopping silo): the unit then ends without writing anything.</param>
    public IReadOnlyList<UnitRow> RunUnit(LooUnit unit, LooContext context, LooPlan plan, IProgress<int>? progress = null, CancellationToken cancel = default)
    {
        if (IsDone(unit)) return ReadUnit(unit);
        var rows = new List<UnitRow>();
        if (unit.Kind == UnitKind.Removal && unit.Mode != RetrainMode.Cold && context.HasFastPath)
            RunBatched(unit, context, rows, progress);
        else
            foreach (var item in unit.Items)
            {
                cancel.ThrowIfCancellationRequested();
                var sw = Stopwatch.StartNew();
                var result = RetrainOne(unit.Mode, unit.Kind, item, context, plan);
                Record(rows, unit, item, context, result.Theta, result.GradientNorm, result.LbfgsIterations + result.NewtonIterations,
                    result.Converged, sw.Elapsed.TotalSeconds);
                result.Theta.Dispose();
                progress?.Report(1);
            }
        Store.Write(UnitKey(unit.Id), s => WriteRows(s, rows));
        return rows;
    }

    /// <summary>Warm LOO or PBRF of float64 logistic regression, all items at once; stragglers fall back to the general trainer.</summary>
    private void RunBatched(LooUnit unit, LooContext context, List<UnitRow> rows, IProgress<int>? progress)
    {
        var sw = Stopwatch.StartNew();
        var (thetas, outcomes) = context.Retrainer(unit.Mode).Retrain(unit.Items, Settings.Tolerance ?? LooContext.FastPathTolerance);
        double each = sw.Elapsed.TotalSeconds / unit.Items.Length; // amortised: the batch shares its matrix products
        using (thetas)
            for (int b = 0; b < outcomes.Length; b++)
            {
                var o = outcomes[b];
                if (o.Converged)
                {
                    using var theta = thetas[b];
                    Record(rows, unit, o.Removed, context, theta, o.GradientNorm, o.Iterations, true, each);
                }
                else
                {
                    var one = Stopwatch.StartNew();
                    var result = RetrainOne(unit.Mode, UnitKind.Removal, o.Removed, context, null);
                    Record(rows, unit, o.Removed, context, result.Theta, result.GradientNorm, o.Iterations + result.LbfgsIterations + result.NewtonIterations,
                        result.Converged, each + one.Elapsed.TotalSeconds);
                    result.Theta.Dispose();
                }
            }
        progress?.Report(unit.Items.Length);
    }

    /// <summary>One retrain by the general full-batch recipe (L-BFGS, then Newton on small models).</summary>
    private TrainingResult RetrainOne(RetrainMode mode, UnitKind kind, int item, LooContext context, LooPlan? plan)
    {
        var spec = context.Spec;
        var options = context.Options(Settings.Tolerance);
        var device = context.ThetaHat.device;
        switch (kind)
        {
            case UnitKind.Seed:
            {
                var seeded = spec with { Seed = spec.Seed + item };
                using var init = Network.Initialize(seeded, device);
                return LeaveOneOut.RetrainOn(spec, context.Data.Train, Enumerable.Range(0, context.Data.Train.Count).ToArray(), init, options);
            }
            case UnitKind.Subset:
            {
                var kept = plan!.Subsets!.Kept(item, context.Data.Train.Count);
                using var start = mode == RetrainMode.Cold ? Network.Initialize(spec, device) : context.ThetaHat.clone();
                return LeaveOneOut.RetrainOn(spec, context.Data.Train, kept, start, options);
            }
            default:
                if (mode == RetrainMode.Pbrf)
                {
                    using var pbrf = new PbrfObjective(spec, context.Train, item, context.ThetaHat, context.Damping);
                    return FullBatchTrainer.Train(pbrf, context.ThetaHat, options);
                }
                using (var start = mode == RetrainMode.Cold ? Network.Initialize(spec, device) : context.ThetaHat.clone())
                    return LeaveOneOut.Retrain(spec, context.Data.Train, item, start, options);
        }
    }

    private void Record(List<UnitRow> rows, LooUnit unit, int item, LooContext context, Tensor theta,
        double gradientNorm, int iterations, bool converged, double seconds)
    {
        var losses = context.TestLosses(theta);
        double distance;
        using (var d = theta.to(ScalarType.Float64).sub(context.ThetaHat.to(ScalarType.Float64))) distance = d.norm().ToDouble();
        var tests = Settings.Score.TestIndices; // the context holds these test points, in this order
        for (int q = 0; q < tests.Length; q++)
            rows.Add(new UnitRow(unit.Mode, unit.Kind, item, tests[q], losses[q] - context.BaseTestLoss[q], gradientNorm, iterations, distance, seconds, converged));
    }

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    private static void WriteRows(Stream stream, IReadOnlyList<UnitRow> rows)
    {
        using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        w.WriteLine("mode,kind,item,test_index,delta,gradient_norm,iterations,distance,seconds,converged");
        foreach (var r in rows)
            w.Write($"{r.Mode.ToString().ToLowerInvariant()},{r.Kind.ToString().ToLowerInvariant()},{r.Item},{r.TestIndex},{F(r.Delta)},{F(r.GradientNorm)},{r.Iterations},{F(r.Distance)},{F(r.Seconds)},{(r.Converged ? 1 : 0)}\n");
    }

    /// <summary>A finished unit's rows.</summary>
    public IReadOnlyList<UnitRow> ReadUnit(LooUnit unit)
    {
        using var s = Store.OpenRead(UnitKey(unit.Id));
        using var reader = new StreamReader(s);
        reader.ReadLine();
        var rows = new List<UnitRow>();
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            var f = line.Split(',');
            rows.Add(new UnitRow(Enum.Parse<RetrainMode>(f[0], true), Enum.Parse<UnitKind>(f[1], true), int.Parse(f[2], CultureInfo.InvariantCulture),
                int.Parse(f[3], CultureInfo.InvariantCulture), double.Parse(f[4], CultureInfo.InvariantCulture), double.Parse(f[5], CultureInfo.InvariantCulture),
                int.Parse(f[6], CultureInfo.InvariantCulture), double.Parse(f[7], CultureInfo.InvariantCulture), double.Parse(f[8], CultureInfo.InvariantCulture), f[9] == "1"));
        }
        return rows;
    }
}
