using System.Globalization;
using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Diagnostics;
using Influence.Core.Hessians;
using Influence.Core.Jobs;
using Influence.Core.Loo;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Storage;
using Influence.Core.Training;
using Xunit;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>
/// Every method as a score job (its shard stages, its coordinator steps, the score stage and the
/// outputs) on one process, against the exact influence or the method's own definition computed directly.
/// </summary>
public class ScoreMethodTests
{
    private static readonly int[] TestRows = [0, 7, 19, 30];

    private sealed record Outcome(double[,] Influence, double[]? Self, MethodReport Report, string Dir);

    /// <summary>
    /// The CNN's data: the first 150 training and 40 test rows of digits (8×8 images), and its
    /// model: a 3×3 convolution to 2 channels, 3×3 max-pooling, the softmax head (P = 20 + 90 = 110).
    /// </summary>
    private static readonly Lazy<(string Train, string Test)> DigitsSubset = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("influence-digits-").FullName;
        string Head(string name, int rows)
        {
            var path = Path.Combine(dir, name);
            File.WriteAllLines(path, File.ReadLines(TestData.DataFile(name)).Take(rows + 1));
            return path;
        }
        return (Head("digits_train.csv", 150), Head("digits_test.csv", 40));
    });

    private const long CnnParameters = 110, MlpParameters = 51;

    private static TrainTestData Data(string model) => model == "cnn"
        ? TrainTestData.Load(new DatasetSpec(DigitsSubset.Value.Train), new DatasetSpec(DigitsSubset.Value.Test))
        : TestData.Iris();

    private static ScoreSettings Settings(string method, Func<ScoreSettings, ScoreSettings>? configure = null, string model = "mlp")
    {
        var s = new ScoreSettings
        {
            Train = new DatasetSpec(model == "cnn" ? DigitsSubset.Value.Train : TestData.DataFile("iris_train.csv")),
            Test = new DatasetSpec(model == "cnn" ? DigitsSubset.Value.Test : TestData.DataFile("iris_test.csv")),
            Model = SettingsJson.Parse<ModelKind>(model, "model"),
            Hidden = model == "mlp" ? [6] : [],
            Conv = model == "cnn" ? [new ConvLayer(2, 3, 3)] : null,
            Activation = Activation.Tanh,
            L2 = 1e-2,
            WeightDecayOn = DecayOn.All,
            Method = method,
            TestIndices = TestRows,
            Shards = 3,
        };
        return configure is null ? s : configure(s);
    }

    private static Outcome Run(ScoreSettings settings, string? storeDir = null, string jobId = "job", int queryBlockRows = 512)
    {
        var dir = storeDir ?? Directory.CreateTempSubdirectory("influence-methods-").FullName;
        var store = new LocalArtifactStore(dir);
        var job = new ScoreJob(store, jobId, settings) { AllowLocalFiles = true, QueryBlockRows = queryBlockRows };
        var result = InProcessStages.Run(job);
        var rows = File.ReadLines(Path.Combine(dir, $"jobs/{jobId}/influence.csv")).Skip(1).Select(l => l.Split(',')).ToList();
        int n = rows.Count / settings.TestIndices.Length;
        var influence = new double[settings.TestIndices.Length, n];
        foreach (var r in rows)
            influence[Array.IndexOf(settings.TestIndices, int.Parse(r[0], CultureInfo.InvariantCulture)), int.Parse(r[1], CultureInfo.InvariantCulture)] = double.Parse(r[2], CultureInfo.InvariantCulture);
        var selfFile = Path.Combine(dir, $"jobs/{jobId}/self_influence.csv");
        var self = File.Exists(selfFile) ? File.ReadLines(selfFile).Skip(1).Select(l => double.Parse(l.Split(',')[1], CultureInfo.InvariantCulture)).ToArray() : null;
        return new Outcome(influence, self, result.Report, dir);
    }

    /// <summary>The job's model, with its training rows and the chosen test rows as tensors: what a method's definition is computed from directly.</summary>
    private static (ModelSpec Spec, Tensor Theta, DataTensors Train, DataTensors Test) Reload(Outcome outcome, string model)
    {
        var data = Data(model);
        var checkpoint = LoadCheckpoint(outcome.Dir);
        var spec = checkpoint.Spec;
        return (spec, checkpoint.Theta(CPU), DataTensors.From(data.Train, spec, CPU), DataTensors.From(data.Test.Select(TestRows), spec, CPU));
    }

    private static double MaxRelativeError(double[,] a, double[,] b)
    {
        double scale = 0, err = 0;
        foreach (var v in b) scale = Math.Max(scale, Math.Abs(v));
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++) err = Math.Max(err, Math.Abs(a[i, j] - b[i, j]));
        return err / scale;
    }

    private static double MaxRelativeError(double[] a, double[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max() / b.Max(Math.Abs);

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void Cg_and_full_Arnoldi_reproduce_the_exact_influence_and_Arnoldi_its_self_influence(string model)
    {
        // The CNN's Hessian at its optimum has λ_min ≈ −1e-3: δ = 1e-2 makes H + δI positive definite.
        double damping = model == "cnn" ? 1e-2 : 1e-3;
        var exact = Run(Settings(Methods.Exact, s => s with { Damping = damping }, model));
        Assert.Empty(exact.Report.Warnings);
        var cg = Run(Settings(Methods.Cg, s => s with { Damping = damping, Checkpoint = TrainedBy(exact), Options = new MethodOptions { CgTolerance = 1e-10, CgMaxIterations = 500 } }, model));
        Assert.True(MaxRelativeError(cg.Influence, exact.Influence) < 1e-6, $"cg vs exact: {MaxRelativeError(cg.Influence, exact.Influence):E2}");
        Assert.Equal(TestRows.Length, cg.Report.Details["converged"]!.GetValue<int>());
        Assert.Null(cg.Self); // one solve per training example: only when asked
        Assert.Empty(cg.Report.Warnings);

        // Asked, each shard solves for its own rows: the self-influence of the exact factorisation.
        var cgSelf = Run(Settings(Methods.Cg, s => s with
        {
            Damping = damping, Checkpoint = TrainedBy(exact), TestIndices = [TestRows[0]],
            Options = new MethodOptions { CgTolerance = 1e-10, CgMaxIterations = 500, SolveSelfInfluence = true },
        }, model));
        Assert.True(MaxRelativeError(cgSelf.Self!, exact.Self!) < 1e-6, $"cg self vs exact: {MaxRelativeError(cgSelf.Self!, exact.Self!):E2}");
        var solves = cgSelf.Report.Details["self_influence_solves"]!;
        Assert.Equal(exact.Self!.Length, solves["solves"]!.GetValue<int>());
        Assert.Equal(exact.Self!.Length, solves["converged"]!.GetValue<int>());
        Assert.Empty(cgSelf.Report.Warnings);

        // MLP: P = 4·6 + 6 + 6·3 + 3 = 51. A Krylov space of all of P is the exact inverse.
        int p = (int)(model == "cnn" ? CnnParameters : MlpParameters);
        Assert.Equal(p, LoadCheckpoint(exact.Dir).Spec.ParameterCount);
        var arnoldi = Run(Settings(Methods.Arnoldi, s => s with { Damping = damping, Checkpoint = TrainedBy(exact), Options = new MethodOptions { ArnoldiIterations = p, ArnoldiTop = p } }, model));
        Assert.True(MaxRelativeError(arnoldi.Influence, exact.Influence) < 1e-6, $"arnoldi vs exact: {MaxRelativeError(arnoldi.Influence, exact.Influence):E2}");
        Assert.True(MaxRelativeError(arnoldi.Self!, exact.Self!) < 1e-6, $"arnoldi self vs exact: {MaxRelativeError(arnoldi.Self!, exact.Self!):E2}");

        // Truncated, it still ranks like the exact answer but is no longer equal to it.
        var top10 = Run(Settings(Methods.Arnoldi, s => s with { Damping = damping, Checkpoint = TrainedBy(exact), Options = new MethodOptions { ArnoldiIterations = 30, ArnoldiTop = 10 } }, model));
        Assert.True(MaxRelativeError(top10.Influence, exact.Influence) > 1e-3);
    }

    [Fact]
    public void Full_batch_LiSSA_converges_to_the_exact_influence_and_an_auto_scale_is_reported()
    {
        var exact = Run(Settings(Methods.Exact, s => s with { Damping = 0.05 }));
        var lissa = Run(Settings(Methods.Lissa, s => s with
        {
            Damping = 0.05,
            Options = new MethodOptions { LissaBatch = 1000, LissaDepth = 3000, LissaRepeats = 2, ArnoldiIterations = 20 },
        }));
        Assert.True(MaxRelativeError(lissa.Influence, exact.Influence) < 1e-4, $"lissa vs exact: {MaxRelativeError(lissa.Influence, exact.Influence):E2}");
        Assert.Equal(0, lissa.Report.Details["diverged"]!.GetValue<int>());
        // The automatic scale is 3(λ_max + δ), from Arnoldi over the distributed products.
        Assert.Equal(3 * (exact.Report.LargestEigenvalue!.Value + 0.05), lissa.Report.Details["scale"]!.GetValue<double>(), 1e-6);
    }

    [Fact]
    public void LiSSA_solves_every_training_example_for_its_self_influence_when_asked()
    {
        // δ = 1 makes the recursion contract by about 1 − (λ_min + δ)/s ≈ 0.9 per step: 300 steps are plenty.
        var exact = Run(Settings(Methods.Exact, s => s with { Damping = 1, TestIndices = [TestRows[0]] }));
        var lissa = Run(Settings(Methods.Lissa, s => s with
        {
            Damping = 1, Checkpoint = TrainedBy(exact), TestIndices = [TestRows[0]],
            Options = new MethodOptions { LissaBatch = 1000, LissaDepth = 300, LissaRepeats = 1, ArnoldiIterations = 20, SolveSelfInfluence = true },
        }));
        Assert.True(MaxRelativeError(lissa.Self!, exact.Self!) < 1e-6, $"lissa self vs exact: {MaxRelativeError(lissa.Self!, exact.Self!):E2}");
        Assert.Equal(0, lissa.Report.Details["self_influence_solves"]!["diverged_repeats"]!.GetValue<int>());
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(lissa.Dir, "jobs/job/summary.json")))!;
        Assert.Equal("self_influence.csv", summary["self_influence"]!.GetValue<string>());
    }

    [Fact]
    public void Self_influence_solves_fit_their_columns_in_the_memory_budget()
    {
        // Fashion-MNIST's MLP: P = 203,530 float32 values; six P-vectors per column in 2 GB.
        var settings = Settings(Methods.Cg, s => s with { MemoryBudgetMb = 2048 });
        var spec = ModelSpec.Mlp(784, 10, [256], Activation.Tanh, 1e-2, DecayOn.All, Precision.Float32, 0);
        Assert.Equal(203_530, spec.ParameterCount);
        Assert.Equal((int)((2048L << 20) / (6 * 4 * 203_530L)), SelfSolvingMethod.Columns(settings, spec, 500));
        Assert.Equal(7, SelfSolvingMethod.Columns(settings, ModelSpec.Mlp(4, 3, [6], Activation.Tanh, 0, DecayOn.All, Precision.Float64, 0), 7));
    }

    [Fact]
    public void LiSSA_with_a_scale_below_the_largest_eigenvalue_fails_with_a_clear_error()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Run(Settings(Methods.Lissa, s => s with
        {
            Damping = 0.05,
            Options = new MethodOptions { LissaBatch = 1000, LissaDepth = 2000, LissaRepeats = 2, LissaScale = 0.01 },
        })));
        Assert.Contains("all 2 LiSSA repeats diverged", e.Message);
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void Kfac_and_Ekfac_jobs_equal_the_direct_computation_for_one_and_several_shards(string model)
    {
        string? trained = null; // the first job trains; every later one scores its model
        foreach (var method in new[] { Methods.Kfac, Methods.Ekfac })
        {
            var opts = new MethodOptions { FisherLabels = FisherLabels.Empirical };
            var one = Run(Settings(method, s => s with { Damping = 1e-3, Shards = 1, Options = opts, Checkpoint = trained }, model));
            trained ??= TrainedBy(one);
            // The queries preconditioned 3 test points at a time: two blocks of the 4.
            var four = Run(Settings(method, s => s with { Damping = 1e-3, Shards = 4, Options = opts, Checkpoint = trained }, model), queryBlockRows: 3);
            Assert.True(MaxRelativeError(four.Influence, one.Influence) < 1e-10, $"{method}: 4 shards vs 1");
            Assert.True(MaxRelativeError(four.Self!, one.Self!) < 1e-10);

            // Direct: factors over all rows, (F̂ + (λ + δ)I)⁻¹ on the test gradients, dotted with every training gradient.
            using var scope = NewDisposeScope();
            var (spec, theta, train, test) = Reload(four, model);
            using var sums = KfacFactorSums.Accumulate(spec, theta, train, FisherLabels.Empirical, 0);
            using var factors = KroneckerFactors.FromSums(spec, sums);
            bool ekfac = method == Methods.Ekfac;
            if (ekfac) factors.SetCorrections(factors.CorrectionSums(theta, train, FisherLabels.Empirical, 0), train.Count);
            var g = PerExampleGradients.Materialize(spec, theta, train);
            var pre = factors.Solve(PerExampleGradients.Materialize(spec, theta, test).t(), 1e-3, ekfac);
            var expected = g.matmul(pre).neg().t().to(ScalarType.Float64).data<double>().ToArray();
            var direct = new double[TestRows.Length, train.Count];
            Buffer.BlockCopy(expected, 0, direct, 0, expected.Length * sizeof(double));
            Assert.True(MaxRelativeError(four.Influence, direct) < 1e-9, $"{method} vs direct: {MaxRelativeError(four.Influence, direct):E2}");
            var selfExpected = g.mul(factors.Solve(g.t(), 1e-3, ekfac).t()).sum(1L, false).to(ScalarType.Float64).data<double>().ToArray();
            Assert.True(MaxRelativeError(four.Self!, selfExpected) < 1e-9, $"{method} self vs gᵀ(F̂ + (λ+δ)I)⁻¹g");

            // --query-rank 1 scores with rank-1 per-layer queries (Linear layers; the CNN's convolution
            // stays exact), made block by block (two blocks) and stored in that layout.
            var rankOne = Run(Settings(method, s => s with { Damping = 1e-3, Options = opts with { QueryRank = 1 }, Checkpoint = trained }, model), queryBlockRows: 3);
            using var lowRank = new PerExampleGradients.Queries(spec, pre.t().contiguous(), rank: 1);
            var lowExpected = PerExampleGradients.DotWithQueries(spec, theta, train, lowRank).neg().t().to(ScalarType.Float64).data<double>().ToArray();
            var lowDirect = new double[TestRows.Length, train.Count];
            Buffer.BlockCopy(lowExpected, 0, lowDirect, 0, lowExpected.Length * sizeof(double));
            Assert.True(MaxRelativeError(rankOne.Influence, lowDirect) < 1e-9, $"{method} rank 1 vs direct: {MaxRelativeError(rankOne.Influence, lowDirect):E2}");
            Assert.True(MaxRelativeError(rankOne.Influence, direct) > 1e-3, "rank 1 changed nothing");
            Assert.True(MaxRelativeError(rankOne.Self!, selfExpected) < 1e-9, "self-influence does not depend on the query rank");
        }
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void Trak_jobs_equal_the_projected_definition_for_one_and_several_shards_and_reuse_stored_features(string model)
    {
        var opts = new MethodOptions { ProjectionDim = 32, MethodSeed = 5 };
        var one = Run(Settings(Methods.Trak, s => s with { Damping = 1e-3, Shards = 1, Options = opts }, model));
        var store = Directory.CreateTempSubdirectory("influence-trak-").FullName;
        var three = Run(Settings(Methods.Trak, s => s with { Damping = 1e-3, Shards = 3, Options = opts, Checkpoint = TrainedBy(one) }, model), store);
        Assert.True(MaxRelativeError(three.Influence, one.Influence) < 1e-10, "3 shards vs 1");
        Assert.True(MaxRelativeError(three.Self!, one.Self!) < 1e-10);
        Assert.Equal(0, three.Report.Details["shards_reusing_features"]!.GetValue<int>());

        // Direct: Φ = Rᵀ g of every training row, (ΦᵀΦ/N + δI)⁻¹ on the projected test gradients.
        using var scope = NewDisposeScope();
        var (spec, theta, train, test) = Reload(three, model);
        var projector = new GradientProjector(spec.ParameterCount, 32, ProjectionKind.Rademacher, 5);
        var phi = projector.Project(PerExampleGradients.Materialize(spec, theta, train)).to(ScalarType.Float64);
        var phiTest = projector.Project(PerExampleGradients.Materialize(spec, theta, test)).to(ScalarType.Float64);
        var k = phi.t().matmul(phi).div(train.Count).add(eye(32, dtype: ScalarType.Float64).mul(1e-3));
        var expected = phiTest.matmul(linalg.solve(k, phi.t())).neg().contiguous().data<double>().ToArray();
        var direct = new double[TestRows.Length, train.Count];
        Buffer.BlockCopy(expected, 0, direct, 0, expected.Length * sizeof(double));
        Assert.True(MaxRelativeError(three.Influence, direct) < 1e-9, $"trak vs direct: {MaxRelativeError(three.Influence, direct):E2}");
        var selfExpected = phi.mul(linalg.solve(k, phi.t()).t()).sum(1L, false).data<double>().ToArray();
        Assert.True(MaxRelativeError(three.Self!, selfExpected) < 1e-9, "trak self vs φᵀ(ΦᵀΦ/N + δI)⁻¹φ");

        // Another query set on the same model (--checkpoint) and rows, in the same store: the shards' features are reused.
        var again = Run(Settings(Methods.Trak, s => s with
        {
            Damping = 1e-3, Shards = 3, Options = opts, TestIndices = [1, 2],
            Checkpoint = Path.Combine(store, "jobs/job/checkpoint.json"),
        }, model), store, "again");
        Assert.Equal(3, again.Report.Details["shards_reusing_features"]!.GetValue<int>());
        using var second = DataTensors.From(Data(model).Test.Select([1]), spec, CPU);
        var phiSecond = projector.Project(PerExampleGradients.Materialize(spec, theta, second)).to(ScalarType.Float64)[0];
        double scale = phiSecond.dot(linalg.solve(k, phiSecond)).ToDouble();
        for (int j = 0; j < train.Count; j += 17)
            Assert.Equal(phiSecond.dot(linalg.solve(k, phi[j])).neg().ToDouble(), again.Influence[0, j], 1e-9 * scale);
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void TracIn_grad_dot_and_grad_cos_jobs_equal_their_definitions(string model)
    {
        var training = new TrainingChoice { Optimizer = Optimizer.Sgd, LearningRate = 0.05, Epochs = 6, TrainBatch = 16, CheckpointEvery = 2 };
        var tracin = Run(Settings(Methods.TracIn, s => s with { Training = training }, model));
        var dot = Run(Settings(Methods.GradDot, s => s with { Training = training }, model));
        var cos = Run(Settings(Methods.GradCos, s => s with { Training = training }, model));

        using var scope = NewDisposeScope();
        var (spec, _, train, test) = Reload(tracin, model);
        // The same seeded SGD run, repeated here.
        var objective = new Objective(spec, train, train.Count, CPU);
        var (theta, checkpoints) = MinibatchTrainer.Train(objective, Network.Initialize(spec, CPU), training.ToMinibatch(spec.Seed));
        Assert.Equal(3, checkpoints.Count);
        Assert.Equal(3, tracin.Report.Details["checkpoints"]!.GetValue<int>());
        Compare(tracin, GradientSimilarity.TracIn(spec, checkpoints, train, test), "tracin");
        Compare(dot, GradientSimilarity.GradDot(spec, theta, train, test), "grad-dot");
        Compare(cos, GradientSimilarity.GradCos(spec, theta, train, test), "grad-cos");

        // Self-influence: TracIn's Σ_t η_t‖∇L(z; θ_t)‖², grad-dot's ‖∇L(z)‖²; grad-cos has none.
        var selfTracIn = checkpoints.Select(c => PerExampleGradients.Materialize(spec, c.Theta, train).square().sum(1L, false).mul(c.LearningRate)).Aggregate((a, b) => a.add(b));
        Assert.True(MaxRelativeError(tracin.Self!, selfTracIn.to(ScalarType.Float64).data<double>().ToArray()) < 1e-10);
        var selfDot = PerExampleGradients.Materialize(spec, theta, train).square().sum(1L, false);
        Assert.True(MaxRelativeError(dot.Self!, selfDot.to(ScalarType.Float64).data<double>().ToArray()) < 1e-10);
        Assert.Null(cos.Self);
    }

    private static void Compare(Outcome outcome, Tensor nByQ, string method)
    {
        var values = nByQ.t().contiguous().to(ScalarType.Float64).data<double>().ToArray();
        var expected = new double[outcome.Influence.GetLength(0), outcome.Influence.GetLength(1)];
        Buffer.BlockCopy(values, 0, expected, 0, values.Length * sizeof(double));
        Assert.True(MaxRelativeError(outcome.Influence, expected) < 1e-10, $"{method}: {MaxRelativeError(outcome.Influence, expected):E2}");
    }

    [Fact]
    public void TracIn_without_checkpoints_is_refused_before_any_work()
    {
        var e = Assert.Throws<SettingError>(() => Settings(Methods.TracIn).Validate());
        Assert.Contains("optimizer sgd or adam", e.Message);
        Assert.Contains("method must be one of", Assert.Throws<SettingError>(() => Settings("newton").Validate()).Message);
    }

    [Fact]
    public void Auto_damping_finds_an_indefinite_Hessian_away_from_the_optimum_and_cg_then_converges()
    {
        // Two epochs of SGD leave θ far from a minimum: the tanh MLP's Hessian is indefinite there.
        var training = new TrainingChoice { Optimizer = Optimizer.Sgd, LearningRate = 0.05, Epochs = 2, TrainBatch = 16, CheckpointEvery = 1 };
        var settings = Settings(Methods.Cg, s => s with { Training = training, AutoDamping = true, L2 = 0, Options = new MethodOptions { ArnoldiIterations = 51, CgTolerance = 1e-8, CgMaxIterations = 400 } });
        var cg = Run(settings);

        var data = TestData.Iris();
        var checkpoint = LoadCheckpoint(cg.Dir);
        using var scope = NewDisposeScope();
        var train = DataTensors.From(data.Train, checkpoint.Spec, CPU);
        var h = ExactHessian.Of(new Objective(checkpoint.Spec, train, train.Count, CPU), checkpoint.Theta(CPU));
        var eigen = linalg.eigvalsh(h).data<double>().ToArray();
        Assert.True(eigen.Min() < 0, "the test needs an indefinite Hessian");
        Assert.Equal(eigen.Min(), cg.Report.SmallestEigenvalue!.Value, 1e-6);
        Assert.Equal(eigen.Max(), cg.Report.LargestEigenvalue!.Value, 1e-6);
        Assert.Contains(cg.Report.Warnings, w => w.Contains("indefinite at θ̂"));
        Assert.Equal(-eigen.Min() + DampingChoice.RelativeFloor * eigen.Max(), cg.Report.Damping, 1e-6);
        Assert.Equal(TestRows.Length, cg.Report.Details["converged"]!.GetValue<int>());

        // The same without damping: CG meets the negative curvature and says so.
        var undamped = Run(settings with { AutoDamping = false });
        Assert.Contains(undamped.Report.Warnings, w => w.Contains("negative curvature"));
    }

    [Fact]
    public void Queries_scored_in_passes_under_a_small_memory_budget_give_the_same_scores()
    {
        var data = TestData.Iris();
        var spec = ModelSpec.Mlp(4, 3, [6], Activation.Tanh, 1e-2, DecayOn.All);
        using var scope = NewDisposeScope();
        var theta = Network.Initialize(spec, CPU);
        var train = DataTensors.From(data.Train, spec, CPU);
        var queries = randn(9, spec.ParameterCount, dtype: ScalarType.Float64);
        var plan = new ScorePlan([new ScoreTerm(theta, queries, 1.0)], new SelfInfluence.SquaredNorm(), cosine: false);
        var whole = ShardScorer.Score(spec, plan, train, 0, 5, 32, long.MaxValue);
        int perPass = ShardScorer.QueriesPerPass(spec, plan, 32, 6_000);
        var passes = ShardScorer.Score(spec, plan, train, 0, 5, 32, 6_000);
        Assert.Equal(1, whole.Passes);
        Assert.InRange(perPass, 1, 4);
        Assert.Equal((9 + perPass - 1) / perPass, passes.Passes);
        // Equal up to GEMM rounding (the blocks have other shapes).
        Assert.True(MaxRelativeError(passes.Influence, whole.Influence) < 1e-12);
        Assert.Equal(whole.SelfInfluence, passes.SelfInfluence);
    }

    /// <summary>Iris as a binary problem (class 2 against the rest): the sigmoid head.</summary>
    private static readonly Lazy<(string Train, string Test)> BinaryIris = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("influence-binary-").FullName;
        string Binary(string name)
        {
            var path = Path.Combine(dir, name);
            var lines = File.ReadAllLines(TestData.DataFile(name));
            File.WriteAllLines(path, lines.Take(1).Concat(lines.Skip(1).Select(l => (l[0] == '2' ? "1" : "0") + l[1..])));
            return path;
        }
        return (Binary("iris_train.csv"), Binary("iris_test.csv"));
    });

    [Theory]
    [InlineData(DecayOn.All, 0.0, false)]
    [InlineData(DecayOn.Weights, 1e-3, false)] // a flat direction (the biases' sum): the pseudo-inverse on its complement, and a damping
    [InlineData(DecayOn.Weights, 0.0, true)]   // the sigmoid head
    public void Newton_step_equals_an_explicit_leave_one_out_Newton_step_with_the_test_loss_evaluated_there(DecayOn decay, double damping, bool binary)
    {
        ScoreSettings Configure(ScoreSettings s) => binary ? s with { Train = new DatasetSpec(BinaryIris.Value.Train), Test = new DatasetSpec(BinaryIris.Value.Test) } : s;
        var newton = Run(Settings(Methods.NewtonStep, s => Configure(s with { WeightDecayOn = decay, Damping = damping, Shards = 2 }), "logreg"));
        var linear = Run(Settings(Methods.NewtonStepLinear, s => Configure(s with { WeightDecayOn = decay, Damping = damping, Checkpoint = TrainedBy(newton) }), "logreg"));
        var exact = Run(Settings(Methods.Exact, s => Configure(s with { WeightDecayOn = decay, Damping = damping, Checkpoint = TrainedBy(newton) }), "logreg"));
        using var scope = NewDisposeScope();
        var checkpoint = LoadCheckpoint(newton.Dir);
        var (spec, theta) = (checkpoint.Spec, checkpoint.Theta(CPU));
        Assert.Equal(binary, spec.IsBinary);
        var data = binary ? TrainTestData.Load(new DatasetSpec(BinaryIris.Value.Train), new DatasetSpec(BinaryIris.Value.Test)) : TestData.Iris();
        var (train, test) = (DataTensors.From(data.Train, spec, CPU), DataTensors.From(data.Test.Select(TestRows), spec, CPU));
        long n = train.Count;
        AssertExplicitNewtonSteps(newton, linear, spec, theta, train, test, [0, 7, 33, (int)n - 1], 1e-10, j =>
        {
            // The oracle, by autograd: F₋ⱼ is the objective with example j's weight 0 and the normaliser N
            // kept; one Newton step from θ̂ with its Hessian + δI (the flat direction, where there is
            // one, held fixed). Its gradient is taken less ∇F(θ̂), which training leaves at ~1e-13, not 0:
            // the method's step is defined at the exact optimum (∇F₋ⱼ(θ̂) = −g_j/N).
            var weights = ones(n, dtype: ScalarType.Float64);
            weights[j] = 0;
            var objective = new Objective(spec, train, n, CPU, weights);
            var gradient = objective.ValueAndGradient(theta).Gradient.sub(new Objective(spec, train, n, CPU).ValueAndGradient(theta).Gradient);
            var hessian = ExactHessian.OfFunction(objective.Value, theta).add(eye(spec.ParameterCount, dtype: ScalarType.Float64).mul(damping));
            if (Network.FlatDirections(spec, CPU) is { } u) hessian = hessian.add(u.matmul(u.t())); // invertible; the step stays off u
            var step = linalg.solve(hessian, gradient.neg().unsqueeze(1)).squeeze(1);
            if (Network.FlatDirections(spec, CPU) is { } flat) step = Network.WithoutFlat(step.unsqueeze(1), flat).squeeze(1);
            return (step, hessian);
        });
        Assert.True(MaxRelativeError(linear.Self!, newton.Self!) < 1e-12, "the self-influence does not depend on the test loss"); // other shards: other GEMM blocks
        // A second-order answer: not the first-order influence, nor the linearised one.
        Assert.True(MaxRelativeError(newton.Influence, exact.Influence) > 1e-4, "newton-step equals the influence function");
        Assert.True(MaxRelativeError(newton.Influence, linear.Influence) > 1e-6, "the test loss's curvature changed nothing");
        Assert.True(MaxRelativeError(newton.Influence, exact.Influence) < 0.5, "newton-step is far from the first-order answer");

        // The group version (LDS subsets): removing half the rows at once, CG on H₋S preconditioned by
        // (H + δI)⁺, against the explicit H₋S solve; and for one row, the same as the Woodbury route.
        using var group = new GroupNewtonStep(spec, theta, train, damping);
        foreach (var removed in new[] { Enumerable.Range(0, (int)n / 2).ToArray(), new[] { 7 } })
        {
            var weights = ones(n, dtype: ScalarType.Float64);
            foreach (var j in removed) weights[j] = 0;
            var objective = new Objective(spec, train, n, CPU, weights);
            var gradient = objective.ValueAndGradient(theta).Gradient.sub(new Objective(spec, train, n, CPU).ValueAndGradient(theta).Gradient);
            var hessian = ExactHessian.OfFunction(objective.Value, theta).add(eye(spec.ParameterCount, dtype: ScalarType.Float64).mul(damping));
            if (Network.FlatDirections(spec, CPU) is { } u) hessian = hessian.add(u.matmul(u.t()));
            var step = linalg.solve(hessian, gradient.neg().unsqueeze(1)).squeeze(1);
            AssertGroupStep(group, removed, step, newton, spec, theta, test);
        }

        // summary.json gives, per test point, the correction's size relative to the first-order prediction.
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(newton.Dir, "jobs/job/summary.json")))!;
        var perTest = summary["method"]!["details"]!["second_order_correction"]!["per_test"]!.AsArray();
        for (int t = 0; t < TestRows.Length; t++)
        {
            double difference = 0, first = 0;
            for (int j = 0; j < n; j++) { difference += Math.Pow(newton.Influence[t, j] - exact.Influence[t, j], 2); first += Math.Pow(exact.Influence[t, j], 2); }
            Assert.Equal(TestRows[t], perTest[t]!["test_index"]!.GetValue<int>());
            Assert.Equal(Math.Sqrt(difference / first), perTest[t]!["relative_size"]!.GetValue<double>(), 1e-8);
        }
    }

    [Fact]
    public void Newton_step_on_a_network_equals_the_explicit_Gauss_Newton_Woodbury_step()
    {
        const double damping = 1e-3;
        var newton = Run(Settings(Methods.NewtonStep, s => s with { Damping = damping, Shards = 2 }));
        var linear = Run(Settings(Methods.NewtonStepLinear, s => s with { Damping = damping, Checkpoint = TrainedBy(newton) }));
        var exact = Run(Settings(Methods.Exact, s => s with { Damping = damping, Checkpoint = TrainedBy(newton) }));
        Assert.Empty(newton.Report.Warnings);
        Assert.Equal("exact", newton.Report.Details["inverse"]!.GetValue<string>()); // auto, at 51 parameters
        var reported = JsonNode.Parse(File.ReadAllText(Path.Combine(newton.Dir, "jobs/job/summary.json")))!["method_options"]!;
        Assert.Equal("auto", reported["newton_inverse"]!.GetValue<string>());
        Assert.Null(reported["fisher_labels"]); // EK-FAC not used
        using var scope = NewDisposeScope();
        var (spec, theta, train, test) = Reload(newton, "mlp");
        long n = train.Count;
        // The oracle: the exact Hessian by autograd, less the removed row's Gauss-Newton term JᵀAJ/N with
        // J its logits' Jacobian (autograd, logit by logit), one Newton step, the test loss evaluated there.
        var hessian = ExactHessian.OfFunction(new Objective(spec, train, n, CPU).Value, theta).add(eye(spec.ParameterCount, dtype: ScalarType.Float64).mul(damping));
        AssertExplicitNewtonSteps(newton, linear, spec, theta, train, test, [0, 11, (int)n - 1], 1e-9, j =>
        {
            var leaveOut = hessian.sub(GaussNewtonTerm(spec, theta, train, j).div(n));
            return (linalg.solve(leaveOut, ShardScorer.Gradients(spec, theta, train.Rows(j, 1)).squeeze(0).div(n).unsqueeze(1)).squeeze(1), leaveOut);
        });
        Assert.True(MaxRelativeError(newton.Influence, exact.Influence) > 1e-4, "newton-step equals the influence function");

        // The group version: H + δI less the removed rows' Gauss-Newton terms, by CG, against the explicit
        // solve (Jacobians by autograd, summed); for one row, the same as the job's Woodbury route.
        using var group = new GroupNewtonStep(spec, theta, train, damping);
        foreach (var removed in new[] { Enumerable.Range(0, (int)n / 2).ToArray(), new[] { 11 } })
        {
            var leaveOut = hessian.clone();
            var gradient = zeros(spec.ParameterCount, dtype: ScalarType.Float64);
            foreach (int j in removed)
            {
                leaveOut.sub_(GaussNewtonTerm(spec, theta, train, j).div(n));
                gradient.add_(ShardScorer.Gradients(spec, theta, train.Rows(j, 1)).squeeze(0).div(n));
            }
            var step = linalg.solve(leaveOut, gradient.unsqueeze(1)).squeeze(1);
            AssertGroupStep(group, removed, step, newton, spec, theta, test);
        }
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    public void Newton_step_with_EK_FAC_equals_the_explicit_Woodbury_step_on_EK_FACs_matrix(string model)
    {
        const double damping = 1e-3;
        // Empirical labels: the factors do not depend on how rows fall into shards, so the oracle can sum them over all rows at once.
        var options = new MethodOptions { NewtonInverse = NewtonInverse.Ekfac, FisherLabels = FisherLabels.Empirical };
        var newton = Run(Settings(Methods.NewtonStep, s => s with { Damping = damping, Shards = 2, Options = options }, model));
        var linear = Run(Settings(Methods.NewtonStepLinear, s => s with { Damping = damping, Options = options, Checkpoint = TrainedBy(newton) }, model));
        var ekfac = Run(Settings(Methods.Ekfac, s => s with { Damping = damping, Options = options, Checkpoint = TrainedBy(newton) }, model));
        Assert.Equal("ekfac", newton.Report.Details["inverse"]!.GetValue<string>());
        // summary.json names the options EK-FAC read: its Fisher labels and their seed.
        var reported = JsonNode.Parse(File.ReadAllText(Path.Combine(newton.Dir, "jobs/job/summary.json")))!["method_options"]!;
        Assert.Equal("empirical", reported["fisher_labels"]!.GetValue<string>());
        Assert.Equal(0, reported["method_seed"]!.GetValue<int>());
        using var scope = NewDisposeScope();
        var (spec, theta, train, test) = Reload(newton, model);
        long n = train.Count, p = spec.ParameterCount;
        // The oracle: EK-FAC's matrix F + (λ + δ)I written out (the inverse of its solve applied to I),
        // less the removed row's Gauss-Newton term JᵀAJ/N (autograd Jacobian), solved directly.
        using var sums = KfacFactorSums.Accumulate(spec, theta, train, FisherLabels.Empirical, 0);
        using var factors = KroneckerFactors.FromSums(spec, sums);
        factors.SetCorrections(factors.CorrectionSums(theta, train, FisherLabels.Empirical, 0), n);
        var matrix = linalg.inv(factors.Solve(eye(p, dtype: ScalarType.Float64), damping, ekfac: true));
        matrix = matrix.add(matrix.t()).div(2);
        AssertExplicitNewtonSteps(newton, linear, spec, theta, train, test, [0, 11, (int)n - 1], 1e-8, j =>
        {
            var leaveOut = matrix.sub(GaussNewtonTerm(spec, theta, train, j).div(n));
            return (linalg.solve(leaveOut, ShardScorer.Gradients(spec, theta, train.Rows(j, 1)).squeeze(0).div(n).unsqueeze(1)).squeeze(1), leaveOut);
        });
        Assert.True(MaxRelativeError(newton.Influence, ekfac.Influence) > 1e-4, "newton-step equals EK-FAC's influence");
        Assert.True(MaxRelativeError(linear.Influence, ekfac.Influence) > 1e-4, "newton-step-linear equals EK-FAC's influence");
    }

    [Fact]
    public void Newton_step_takes_EK_FAC_beyond_the_exact_size_unless_told_otherwise()
    {
        var small = ModelSpec.Mlp(4, 3, [6], Activation.Tanh, 1e-2, DecayOn.All);
        var large = ModelSpec.Mlp(784, 10, [64], Activation.Tanh, 1e-2, DecayOn.All);
        Assert.True(large.ParameterCount > ExactHessian.MaxParameters);
        var method = Methods.Get(Methods.NewtonStep);
        var auto = Settings(Methods.NewtonStep);
        method.CheckJob(auto, large); // auto: EK-FAC, any size
        method.CheckJob(auto, small);
        var exact = auto with { Options = new MethodOptions { NewtonInverse = NewtonInverse.Exact } };
        Assert.Contains("12,000", Assert.ThrowsAny<ArgumentException>(() => method.CheckJob(exact, large)).Message);
        var logreg = ModelSpec.LogisticRegression(4, 3, 1e-2);
        var ekfacOnLogreg = auto with { Options = new MethodOptions { NewtonInverse = NewtonInverse.Ekfac } };
        Assert.Contains("for networks", Assert.Throws<ArgumentException>(() => method.CheckJob(ekfacOnLogreg, logreg)).Message);
        // LDS subsets with EK-FAC's inverse are refused from the options alone, before any training.
        new LooSettings { Score = auto, Remove = "subsets:5,0.5,1" }.Validate();
        Assert.Contains("no group form", Assert.Throws<SettingError>(() => new LooSettings { Score = ekfacOnLogreg, Remove = "subsets:5,0.5,1" }.Validate()).Message);
    }

    /// <summary>
    /// The group newton-step of <paramref name="removed"/> against the explicit step: Δθ and the test
    /// losses there to 1e-9; for one row, the same change as the job's Woodbury route.
    /// </summary>
    private static void AssertGroupStep(GroupNewtonStep group, int[] removed, Tensor step, Outcome newton, ModelSpec spec, Tensor theta, DataTensors test)
    {
        var (groupStep, report) = group.Step(removed);
        Assert.True(report.Converged);
        Assert.True(groupStep.sub(step).abs().max().ToDouble() <= 1e-9 * step.abs().max().ToDouble(), $"group step vs explicit: {groupStep.sub(step).abs().max().ToDouble() / step.abs().max().ToDouble():E2}");
        var (change, _) = group.Predict(removed, test, linearised: false);
        var expected = Objective.PerExampleLoss(spec, theta.add(step), test).sub(Objective.PerExampleLoss(spec, theta, test));
        int n = newton.Influence.GetLength(1);
        for (int t = 0; t < TestRows.Length; t++)
        {
            Assert.Equal(expected[t].ToDouble(), change[t], 1e-9 * expected.abs().max().ToDouble());
            if (removed.Length == 1) Assert.Equal(-newton.Influence[t, removed[0]] / n, change[t], 1e-9 * expected.abs().max().ToDouble());
        }
    }

    /// <summary>Training row j's Gauss-Newton term J_jᵀA_jJ_j (P × P), its logits' Jacobian by autograd, logit by logit.</summary>
    private static Tensor GaussNewtonTerm(ModelSpec spec, Tensor theta, DataTensors train, int j)
    {
        using var row = train.Rows(j, 1);
        var jacobian = stack(Enumerable.Range(0, spec.OutputDim).Select(c =>
            Objective.ValueAndGradient(t => Network.Logits(spec, t, row.X)[0, c], theta).Gradient).ToList()); // C × P
        var a = OutputCurvature.Matrix(spec, Network.Logits(spec, theta, row.X))[0];
        return jacobian.t().matmul(a).matmul(jacobian);
    }

    /// <summary>
    /// newton-step's and newton-step-linear's predictions and self-influence for the given rows
    /// against an explicit step: <paramref name="oracle"/> gives row j's Newton step Δθ and the
    /// leave-one-out Hessian it solved with; the change is the test loss at θ̂ + Δθ (or ∇L_testᵀΔθ),
    /// the self-influence g_jᵀH₋ⱼ⁻¹g_j.
    /// </summary>
    private static void AssertExplicitNewtonSteps(Outcome newton, Outcome linear, ModelSpec spec, Tensor theta, DataTensors train, DataTensors test,
        int[] rows, double tolerance, Func<int, (Tensor Step, Tensor LeaveOutHessian)> oracle)
    {
        using var scope = NewDisposeScope();
        var testGradients = ShardScorer.Gradients(spec, theta, test);
        var lossAtOptimum = Objective.PerExampleLoss(spec, theta, test);
        long n = train.Count;
        double scale = 0, selfScale = 0;
        var (errors, linearErrors, selfErrors) = (new List<double>(), new List<double>(), new List<double>());
        foreach (int j in rows)
        {
            var (step, leaveOut) = oracle(j);
            var change = Objective.PerExampleLoss(spec, theta.add(step), test).sub(lossAtOptimum);
            var linearChange = testGradients.matmul(step);
            var g = ShardScorer.Gradients(spec, theta, train.Rows(j, 1)).squeeze(0);
            double self = g.dot(linalg.solve(leaveOut, g.unsqueeze(1)).squeeze(1)).ToDouble();
            for (int t = 0; t < TestRows.Length; t++)
            {
                scale = Math.Max(scale, Math.Abs(change[t].ToDouble()));
                errors.Add(Math.Abs(-newton.Influence[t, j] / n - change[t].ToDouble()));
                linearErrors.Add(Math.Abs(-linear.Influence[t, j] / n - linearChange[t].ToDouble()));
            }
            selfScale = Math.Max(selfScale, Math.Abs(self));
            selfErrors.Add(Math.Abs(newton.Self![j] - self));
        }
        Assert.True(errors.Max() <= tolerance * scale, $"newton-step vs the explicit step: {errors.Max() / scale:E2}");
        Assert.True(linearErrors.Max() <= tolerance * scale, $"linearised vs the explicit step: {linearErrors.Max() / scale:E2}");
        Assert.True(selfErrors.Max() <= tolerance * selfScale, $"leverage-corrected self-influence: {selfErrors.Max() / selfScale:E2}");
    }

    /// <summary>The trained model of an earlier run: later jobs score it instead of training again (and all score the same θ).</summary>
    private static string TrainedBy(Outcome outcome) => Path.Combine(outcome.Dir, "jobs/job/checkpoint.json");

    private static Checkpoint LoadCheckpoint(string dir)
    {
        using var s = File.OpenRead(Path.Combine(dir, "jobs/job/checkpoint.json"));
        return Checkpoint.Load(s);
    }
}

public class ScoreComparisonTests
{
    [Fact]
    public void Loo_agreement_uses_the_predicted_change_minus_I_over_N()
    {
        // loo_delta = −I/N exactly for test 3 and = +I/N (the wrong sign) for test 5.
        var influence = new Dictionary<int, double[]> { [3] = [4, -2, 1, 0], [5] = [1, 2, 3, 4] };
        var path = Path.GetTempFileName();
        File.WriteAllLines(path, ["test_index,train_index,predicted_delta,loo_delta,mode",
            "3,0,0,-1,warm", "3,1,0,0.5,warm", "3,2,0,-0.25,warm", "3,3,0,9,cold",
            "5,0,0,0.25,warm", "5,1,0,0.5,warm", "5,2,0,0.75,warm"]);
        var loo = LooTruth.Read(path);
        Assert.Equal([3, 5], loo.TestIndices);
        Assert.Equal(3, loo.ByTest[3].Train.Length); // the cold row is another mode
        var a = ScoreComparison.AgainstLoo(influence, loo, trainCount: 4);
        Assert.Equal(2, a.TestPoints);
        Assert.Equal(0, a.MeanSpearman, 12); // +1 and −1
        Assert.Equal(-1, a.MinSpearman, 12);
        Assert.Equal(1, ScoreComparison.AgainstLoo(new Dictionary<int, double[]> { [3] = influence[3] }, loo, 4).MeanSpearman, 12);
    }

    [Fact]
    public void A_bad_loo_file_names_file_line_and_problem()
    {
        var path = Path.GetTempFileName();
        File.WriteAllLines(path, ["test_index,train_index,predicted_delta,loo_delta", "0,1,0.5,0.25", "0,x,0.5,0.25"]);
        var e = Assert.Throws<DataFormatException>(() => LooTruth.Read(path));
        Assert.Contains($"{path}, line 3: '0,x,0.5,0.25' is not test_index,train_index,predicted_delta,loo_delta", e.Message);
        File.WriteAllLines(path, ["index,label"]);
        Assert.Contains("line 1: expected the header", Assert.Throws<DataFormatException>(() => LooTruth.Read(path)).Message);
    }
}
