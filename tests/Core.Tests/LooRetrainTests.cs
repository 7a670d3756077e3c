using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Loo;
using Influence.Core.Metrics;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Leave-one-out and PBRF retrains against brute-force retraining and their own optimality conditions.</summary>
public class LooRetrainTests
{
    private static readonly TrainingOptions Tight = new() { GradientTolerance = 1e-13 };

    private sealed class Trained : IDisposable
    {
        public Trained(ModelSpec spec, Dataset train, Dataset test)
        {
            Spec = spec;
            TrainSet = train;
            Train = DataTensors.From(train, spec, CPU);
            Test = DataTensors.From(test, spec, CPU);
            var objective = new Objective(spec, Train, train.Count, CPU);
            using var init = Network.Initialize(spec, CPU);
            var result = FullBatchTrainer.Train(objective, init, Tight);
            Assert.True(result.GradientNorm <= 1e-12, $"θ̂ reached only ‖∇F‖ = {result.GradientNorm:E2}");
            Theta = result.Theta;
        }

        public ModelSpec Spec { get; }
        public Dataset TrainSet { get; }
        public DataTensors Train { get; }
        public DataTensors Test { get; }
        public Tensor Theta { get; }

        public double[] TestLoss(Tensor theta) => Objective.PerExampleLoss(Spec, theta, Test).data<double>().ToArray();

        /// <summary>Predicted LOO deltas (1/N)∇L_testᵀ(H + δI)⁺∇L_j, [test][train].</summary>
        public double[][] Predicted(double damping)
        {
            using var scope = NewDisposeScope();
            var objective = new Objective(Spec, Train, Train.Count, CPU);
            var h = ExactHessian.Of(objective, Theta);
            using var inverse = HessianInverse.Factorize(h, damping, Network.FlatDirections(Spec, CPU));
            var queries = inverse.Solve(ShardScorer.Gradients(Spec, Theta, Test).t()).t();      // Q × P
            var grads = ShardScorer.Gradients(Spec, Theta, Train);                                // N × P
            var delta = queries.matmul(grads.t()).div(Train.Count);
            return Enumerable.Range(0, (int)delta.shape[0]).Select(q => delta[q].data<double>().ToArray()).ToArray();
        }

        public void Dispose()
        {
            Train.Dispose();
            Test.Dispose();
            Theta.Dispose();
        }
    }

    private static Trained Blobs(int classes, double l2 = 0.05, int n = 60) =>
        new(ModelSpec.LogisticRegression(4, classes, l2), TestData.Blobs(n, 4, classes, seed: 11), TestData.Blobs(9, 4, classes, seed: 12));

    [Theory]
    [InlineData(3)]
    [InlineData(2)]
    public void Batched_warm_retrains_match_brute_force_retrains_from_the_initialisation(int classes)
    {
        using var t = Blobs(classes);
        using var retrainer = new LogisticRetrainer(t.Spec, t.Train, t.Theta);
        var removed = Enumerable.Range(0, t.TrainSet.Count).ToArray();
        var (thetas, outcomes) = retrainer.Retrain(removed);
        using var _ = thetas;
        var baseLoss = t.TestLoss(t.Theta);
        foreach (var j in new[] { 0, 7, 23, 41, 59 })
        {
            Assert.True(outcomes[j].Converged && outcomes[j].GradientNorm <= 1e-12, $"removal {j}: ‖∇F₋ⱼ‖ = {outcomes[j].GradientNorm:E2}");
            using var init = Network.Initialize(t.Spec, CPU);
            var brute = LeaveOneOut.Retrain(t.Spec, t.TrainSet, j, init, Tight);
            var fast = t.TestLoss(thetas[j]);
            var slow = t.TestLoss(brute.Theta);
            for (int q = 0; q < fast.Length; q++)
            {
                double a = fast[q] - baseLoss[q], b = slow[q] - baseLoss[q];
                Assert.True(Math.Abs(a - b) <= 1e-10, $"removal {j}, test {q}: batched Δ {a:E6} vs brute force {b:E6}");
            }
            Assert.True(Math.Abs(outcomes[j].Distance - brute.Theta.sub(t.Theta).norm().ToDouble()) <= 1e-8);
            brute.Theta.Dispose();
        }
    }

    /// <summary>The gradients of a batch are summed over the rows a pass at a time: the passes must not change the retrains.</summary>
    [Fact]
    public void Retrains_do_not_depend_on_how_many_rows_a_gradient_pass_takes()
    {
        using var t = Blobs(3);
        int[] removed = [0, 5, 17, 33, 59];
        using var whole = new LogisticRetrainer(t.Spec, t.Train, t.Theta);
        using var passes = new LogisticRetrainer(t.Spec, t.Train, t.Theta) { GradientPassBytes = 8 * removed.Length * 3 * 7 }; // 7 rows a pass: 9 passes of 60 rows
        var (a, outcomesA) = whole.Retrain(removed);
        var (b, outcomesB) = passes.Retrain(removed);
        using (a) using (b)
        {
            double scale = a.abs().max().ToDouble();
            Assert.True(a.sub(b).abs().max().ToDouble() <= 1e-12 * scale, $"θ₋ⱼ differ by {a.sub(b).abs().max().ToDouble():E2}");
            for (int k = 0; k < removed.Length; k++) Assert.True(outcomesB[k].Converged, $"removal {removed[k]}: ‖∇F₋ⱼ‖ = {outcomesB[k].GradientNorm:E2}");
        }
    }

    [Fact]
    public void Batched_warm_retrains_on_digits_match_brute_force_to_1e_10()
    {
        var data = TrainTestData.Load(new DatasetSpec(TestData.DataFile("digits_train.csv")), new DatasetSpec(TestData.DataFile("digits_test.csv")));
        using var t = new Trained(ModelSpec.LogisticRegression(64, 10, 1e-2), data.Train, data.Test.Slice(0, 5));
        using var retrainer = new LogisticRetrainer(t.Spec, t.Train, t.Theta);
        int[] removed = [3, 100, 777];
        var (thetas, outcomes) = retrainer.Retrain(removed);
        using var _ = thetas;
        var baseLoss = t.TestLoss(t.Theta);
        for (int b = 0; b < removed.Length; b++)
        {
            Assert.True(outcomes[b].GradientNorm <= 1e-12);
            var brute = LeaveOneOut.Retrain(t.Spec, t.TrainSet, removed[b], t.Theta, Tight);
            var fast = t.TestLoss(thetas[b]);
            var slow = t.TestLoss(brute.Theta);
            for (int q = 0; q < fast.Length; q++)
                Assert.True(Math.Abs(fast[q] - slow[q]) <= 1e-10, $"removal {removed[b]}, test {q}: {fast[q] - baseLoss[q]:E6} vs {slow[q] - baseLoss[q]:E6}");
            brute.Theta.Dispose();
        }
    }

    [Fact]
    public void Pbrf_without_damping_is_leave_one_out_for_logistic_regression()
    {
        using var t = Blobs(3);
        using var loo = new LogisticRetrainer(t.Spec, t.Train, t.Theta);
        using var pbrf = new LogisticRetrainer(t.Spec, t.Train, t.Theta, pbrfDamping: 0);
        int[] removed = [1, 2, 30];
        var (a, _) = loo.Retrain(removed);
        var (b, _) = pbrf.Retrain(removed);
        Assert.True(a.sub(b).abs().max().ToDouble() <= 1e-9, "PBRF(δ = 0) differs from LOO");
    }

    [Theory]
    [InlineData(3)]
    [InlineData(2)]
    public void Batched_pbrf_optimum_satisfies_the_first_order_condition_of_the_autograd_objective(int classes)
    {
        using var t = Blobs(classes);
        const double damping = 0.02;
        using var retrainer = new LogisticRetrainer(t.Spec, t.Train, t.Theta, pbrfDamping: damping);
        int[] removed = [4, 19, 33];
        var (thetas, outcomes) = retrainer.Retrain(removed);
        for (int b = 0; b < removed.Length; b++)
        {
            Assert.True(outcomes[b].Converged);
            using var objective = new PbrfObjective(t.Spec, t.Train, removed[b], t.Theta, damping);
            var (_, g) = objective.ValueAndGradient(thetas[b]);
            Assert.True(g.norm().ToDouble() <= 1e-11, $"removal {removed[b]}: ‖∇PBRF‖ = {g.norm().ToDouble():E2} at the batched solution");
            var (_, g0) = objective.ValueAndGradient(t.Theta);
            Assert.True(g0.norm().ToDouble() > 1e-4, "θ̂ itself must not satisfy the condition (the test would be vacuous)");
        }
    }

    [Fact]
    public void Pbrf_agrees_with_the_damped_influence_more_closely_than_leave_one_out()
    {
        using var t = Blobs(3, l2: 0.01);
        const double damping = 0.05;
        var predicted = t.Predicted(damping);
        using var loo = new LogisticRetrainer(t.Spec, t.Train, t.Theta);
        using var pbrf = new LogisticRetrainer(t.Spec, t.Train, t.Theta, pbrfDamping: damping);
        var removed = Enumerable.Range(0, t.TrainSet.Count).ToArray();
        var (looThetas, _) = loo.Retrain(removed);
        var (pbrfThetas, _) = pbrf.Retrain(removed);
        var baseLoss = t.TestLoss(t.Theta);
        for (int q = 0; q < baseLoss.Length; q++)
        {
            var pred = predicted[q];
            var looDelta = removed.Select(j => t.TestLoss(looThetas[j])[q] - baseLoss[q]).ToArray();
            var pbrfDelta = removed.Select(j => t.TestLoss(pbrfThetas[j])[q] - baseLoss[q]).ToArray();
            double errPbrf = pred.Zip(pbrfDelta, (a, b) => (a - b) * (a - b)).Sum();
            double errLoo = pred.Zip(looDelta, (a, b) => (a - b) * (a - b)).Sum();
            Assert.True(errPbrf < 0.5 * errLoo, $"test {q}: squared error vs PBRF {errPbrf:E3}, vs LOO {errLoo:E3}");
            Assert.True(Correlation.Pearson(pred, pbrfDelta) > 0.99, $"test {q}: Pearson(influence, PBRF) = {Correlation.Pearson(pred, pbrfDelta)}");
        }
    }

    [Fact]
    public void Mlp_pbrf_by_the_general_trainer_reaches_the_optimum_of_its_objective()
    {
        var spec = ModelSpec.Mlp(4, 3, [5], Activation.Tanh, 0.05, DecayOn.All);
        using var t = new Trained(spec, TestData.Blobs(40, 4, 3, seed: 5), TestData.Blobs(4, 4, 3, seed: 6));
        foreach (var j in new[] { 0, 12, 39 })
        {
            using var objective = new PbrfObjective(spec, t.Train, j, t.Theta, damping: 0.01);
            var (_, atHat) = objective.ValueAndGradient(t.Theta);
            Assert.True(atHat.norm().ToDouble() > 1e-4, "θ̂ must not already be the PBRF optimum (the test would be vacuous)");
            var result = FullBatchTrainer.Train(objective, t.Theta, Tight);
            Assert.True(result.GradientNorm <= 1e-12, $"removal {j}: PBRF ‖∇‖ = {result.GradientNorm:E2}");
            // The PBRF's Hessian at its optimum is positive definite: a minimum, not a saddle.
            var h = objective.Hessian(result.Theta);
            Assert.True(linalg.eigvalsh(h)[0].ToDouble() > 0);
            result.Theta.Dispose();
        }
    }

    [Fact]
    public void Removal_sets_resolve_as_documented()
    {
        var predicted = new[] { new[] { 0.3, -0.2, 0.1, 0.0, -0.5 }, new[] { -0.1, 0.4, 0.0, 0.2, 0.1 } };
        Assert.Equal([0, 1, 2, 3, 4], RemovalSet.Parse("all").Resolve(5, predicted));
        Assert.Equal([0, 1], RemovalSet.Parse("top:1").Resolve(5, predicted));
        Assert.Equal([0, 4], RemovalSet.Parse("bottom:1").Resolve(5, predicted));
        Assert.Equal([0, 1, 4], RemovalSet.Parse("top:1+bottom:1").Resolve(5, predicted));
        var r = RemovalSet.Parse("random:3,7").Resolve(5, predicted);
        Assert.Equal(3, r.Length);
        Assert.Equal(r, RemovalSet.Parse("random:3,7").Resolve(5, predicted));
        var lds = RemovalSet.Parse("subsets:10,0.5,3");
        Assert.True(lds.IsLds);
        Assert.Equal(50, lds.Subsets!.Kept(2, 100).Length);
        Assert.Equal(lds.Subsets.Kept(2, 100), lds.Subsets.Kept(2, 100));
        Assert.NotEqual(lds.Subsets.Kept(2, 100), lds.Subsets.Kept(3, 100));
        Assert.Contains("not a removal set", Assert.Throws<ArgumentException>(() => RemovalSet.Parse("some")).Message);
        Assert.Contains("α must be", Assert.Throws<ArgumentException>(() => RemovalSet.Parse("subsets:10,1.5")).Message);
        var file = Path.GetTempFileName();
        File.WriteAllText(file, "1, 2\n# comment\n3 x\n");
        var e = Assert.Throws<ArgumentException>(() => RemovalSet.Parse($"file:{file}").Resolve(5, predicted));
        Assert.Contains($"{file}, line 3: 'x' is not a training index", e.Message);
    }
}

public class LooJobTests
{
    [Fact]
    public void A_resume_with_other_settings_is_refused_naming_the_job()
    {
        var store = new Influence.Core.Storage.LocalArtifactStore(Directory.CreateTempSubdirectory("influence-store-").FullName);
        LooSettings Settings(string remove) => new()
        {
            Score = new Influence.Core.Jobs.ScoreSettings { Train = new DatasetSpec("a.csv"), Test = new DatasetSpec("b.csv"), TestIndices = [0] },
            Remove = remove,
        };
        new LooJob(store, "job-1", Settings("all")).CheckSettings();
        new LooJob(store, "job-1", Settings("all")).CheckSettings(); // the same settings resume
        var e = Assert.Throws<ArgumentException>(() => new LooJob(store, "job-1", Settings("top:5")).CheckSettings());
        Assert.Contains("job job-1 was started with other settings", e.Message);
    }
}

public class NewtonThroughSaddlesTests
{
    [Fact]
    public void Newton_with_Levenberg_Marquardt_damping_reaches_1e_12_from_a_random_start()
    {
        // No L-BFGS at all (its tolerance is huge): Newton starts where the MLP's Hessian is indefinite.
        var spec = ModelSpec.Mlp(4, 3, [6], Activation.Tanh, 0.01, DecayOn.All, seed: 2);
        using var data = DataTensors.From(TestData.Blobs(40, 4, 3, seed: 8), spec, CPU);
        var objective = new Objective(spec, data, data.Count, CPU);
        using var init = Network.Initialize(spec, CPU);
        Assert.True(linalg.eigvalsh(objective.Hessian(init))[0].ToDouble() < 0, "the start must be in an indefinite region for this test to mean anything");
        var result = FullBatchTrainer.Train(objective, init, new TrainingOptions { LbfgsTolerance = 1e10, GradientTolerance = 1e-12, NewtonMaxIterations = 300 });
        Assert.True(result.GradientNorm <= 1e-12, $"‖∇F‖ = {result.GradientNorm:E2} after {result.NewtonIterations} Newton steps");
        Assert.Equal(0, result.LbfgsIterations); // Newton itself got there, not the L-BFGS fallback
        Assert.True(linalg.eigvalsh(objective.Hessian(result.Theta))[0].ToDouble() > 0, "it must end at a minimum");
    }
}
