using Influence.Core.Correction;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Storage;
using Xunit;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>
/// `influence correct`: the selections against brute force, the fine-tuning steps against a
/// finite-difference gradient, the direction of the steps against first-order theory, and the
/// plan's targets (the report's statistics: Client.Tests).
/// </summary>
public class CorrectionTests
{
    /// <summary>Softmax regression on Iris trained to its optimum (weak L2: a few test points stay mispredicted).</summary>
    private static (TrainTestData Data, Checkpoint Checkpoint) Trained()
    {
        var data = TestData.Iris();
        var spec = ModelSpec.LogisticRegression(data.Train.FeatureCount, 3, 1e-1, Precision.Float64, 0);
        using var train = DataTensors.From(data.Train, spec, CPU);
        var objective = new Objective(spec, train, data.Train.Count, CPU);
        var result = Training.FullBatchTrainer.Train(objective, Network.Initialize(spec, CPU), new Training.TrainingOptions { GradientTolerance = 1e-10 });
        return (data, new Checkpoint(spec, result.Theta.data<double>().ToArray(), 0, 0, 0, 0, 0));
    }

    /// <summary>
    /// −∇L(z_j)·∇L(z_t) for every training row j, by autograd one row at a time: grad-dot in the
    /// project's influence convention (negative: a proponent), the oracle of its ranking.
    /// </summary>
    private static double[] GradDots(ModelSpec spec, Tensor theta, DataTensors train, DataTensors target)
    {
        Tensor Grad(Tensor x, Tensor y)
        {
            var t = theta.detach().requires_grad_(true);
            var loss = Objective.PerExampleLoss(spec, Network.Logits(spec, t, x), y).sum();
            return autograd.grad([loss], [t])[0];
        }
        var g = Grad(target.X, target.Y);
        return Enumerable.Range(0, (int)train.Count).Select(j => -Grad(train.X.narrow(0, j, 1), train.Y.narrow(0, j, 1)).dot(g).ToDouble()).ToArray();
    }

    [Fact]
    public void Selections_match_brute_force()
    {
        var (data, checkpoint) = Trained();
        int n = data.Train.Count;
        var scores = Enumerable.Range(0, n).Select(i => Math.Sin(7.3 * i)).ToArray();
        using var context = new CorrectContext(data, checkpoint, [scores], [scores.Select(v => -v).ToArray()]);
        int target = 3, label = data.Test.Labels[target];
        var byScore = Enumerable.Range(0, n).OrderBy(i => scores[i]).ToArray(); // most negative influence first: the proponents

        var proponents = context.Choose(Selections.Influence, target, 0, 5, 0, CorrectDirection.Proponents);
        Assert.Equal(byScore.Take(5), proponents.Rows);
        Assert.All(proponents.Weights, w => Assert.Equal(0.2, w, 15));
        var opponents = context.Choose(Selections.Influence, target, 0, 5, 0, CorrectDirection.Opponents);
        Assert.Equal(byScore.Reverse().Take(5), opponents.Rows);
        Assert.All(opponents.Weights, w => Assert.Equal(-0.2, w, 15));
        var both = context.Choose(Selections.Influence, target, 0, 5, 0, CorrectDirection.Both);
        Assert.Equal(byScore.Take(5).Concat(byScore.Reverse().Take(5)), both.Rows);
        Assert.Equal(byScore.Reverse().Take(5), context.Choose(Selections.GradDot, target, 0, 5, 0, CorrectDirection.Proponents).Rows); // its own scores

        var randomClass = context.Choose(Selections.RandomClass, target, 0, 7, 1, CorrectDirection.Proponents).Rows;
        Assert.Equal(7, randomClass.Distinct().Count());
        Assert.All(randomClass, i => Assert.Equal(label, data.Train.Labels[i]));
        Assert.Equal(randomClass, context.Choose(Selections.RandomClass, target, 0, 7, 1, CorrectDirection.Proponents).Rows); // seeded: repeats
        Assert.NotEqual(randomClass, context.Choose(Selections.RandomClass, target, 0, 7, 2, CorrectDirection.Proponents).Rows);
        Assert.Equal(7, context.Choose(Selections.Random, target, 0, 7, 0, CorrectDirection.Proponents).Rows.Distinct().Count());

        int d = data.Test.FeatureCount;
        double Distance(int i) => Enumerable.Range(0, d).Sum(c => Math.Pow(data.Train.Features[i * d + c] - data.Test.Features[target * d + c], 2));
        var nearest = Enumerable.Range(0, n).Where(i => data.Train.Labels[i] == label).OrderBy(Distance).Take(4).ToArray();
        Assert.Equal(nearest, context.Choose(Selections.NearestClass, target, 0, 4, 0, CorrectDirection.Proponents).Rows);

        var self = context.Choose(Selections.Self, target, 0, 50, 0, CorrectDirection.Proponents);
        Assert.True(self.Target);
        Assert.Equal([target], self.Rows);
    }

    /// <summary>
    /// Fine-tuning is S plain gradient steps θ ← θ − η Σ w_i ∇L_i: replayed here with a central
    /// finite-difference gradient of the same weighted loss, the target's loss after each recorded
    /// step agrees (a wrong sign, weight or step count would not).
    /// </summary>
    [Fact]
    public void Fine_tuning_steps_match_a_finite_difference_replay()
    {
        var (data, checkpoint) = Trained();
        var spec = checkpoint.Spec;
        int n = data.Train.Count;
        using var context = new CorrectContext(data, checkpoint, [new double[n]], null);
        var set = new FineTuneSet([2, 17, 40, 41], [0.5, 0.5, -0.5, -0.5], Target: false);
        const double lr = 0.3;
        int target = 5;
        var outcomes = context.FineTune(target, set, lr, [1, 3]);

        using var train = DataTensors.From(data.Train.Select(set.Rows), spec, CPU);
        using var test = DataTensors.From(data.Test, spec, CPU);
        double WeightedLoss(double[] t)
        {
            using var th = tensor(t, dtype: ScalarType.Float64);
            using var losses = Objective.PerExampleLoss(spec, Network.Logits(spec, th, train.X), train.Y);
            return losses.data<double>().Select((l, i) => l * set.Weights[i]).Sum();
        }
        double TestLoss(double[] t, int row)
        {
            using var th = tensor(t, dtype: ScalarType.Float64);
            return Objective.PerExampleLoss(spec, Network.Logits(spec, th, test.X.narrow(0, row, 1)), test.Y.narrow(0, row, 1)).ToDouble();
        }
        var theta = (double[])checkpoint.Parameters.Clone();
        double before = TestLoss(theta, target);
        var expected = new Dictionary<int, double>();
        for (int step = 1; step <= 3; step++)
        {
            var grad = new double[theta.Length];
            const double h = 1e-6;
            for (int p = 0; p < theta.Length; p++)
            {
                var plus = (double[])theta.Clone(); plus[p] += h;
                var minus = (double[])theta.Clone(); minus[p] -= h;
                grad[p] = (WeightedLoss(plus) - WeightedLoss(minus)) / (2 * h);
            }
            for (int p = 0; p < theta.Length; p++) theta[p] -= lr * grad[p];
            expected[step] = TestLoss(theta, target);
        }
        Assert.Equal([1, 3], outcomes.Select(o => o.Steps));
        foreach (var o in outcomes)
        {
            Assert.Equal(before, o.TargetLossBefore, 12);
            Assert.True(Math.Abs(o.TargetLossAfter - expected[o.Steps]) <= 1e-7 * Math.Abs(expected[o.Steps]), $"step {o.Steps}: {o.TargetLossAfter} vs {expected[o.Steps]}");
        }
        Assert.NotEqual(before, expected[3], 3); // the steps moved θ
    }

    /// <summary>
    /// To first order a small step changes the target's loss by −η ∇L_t·Σ w_i ∇L_i: descent on the
    /// top grad-dot proponents and ascent on the bottom opponents both lower it, and descent on the
    /// opponents raises it.
    /// </summary>
    [Fact]
    public void Small_steps_on_proponents_and_against_opponents_lower_the_target_loss()
    {
        var (data, checkpoint) = Trained();
        var spec = checkpoint.Spec;
        using var train = DataTensors.From(data.Train, spec, CPU);
        int target = 7;
        using var targetRow = DataTensors.From(data.Test.Select([target]), spec, CPU);
        var dots = GradDots(spec, checkpoint.Theta(CPU), train, targetRow);
        using var context = new CorrectContext(data, checkpoint, [dots], [dots]);
        double Change(FineTuneSet set)
        {
            var o = context.FineTune(target, set, 1e-3, [1]).Single();
            return o.TargetLossAfter - o.TargetLossBefore;
        }
        var proponents = context.Choose(Selections.GradDot, target, 0, 5, 0, CorrectDirection.Proponents);
        var opponents = context.Choose(Selections.GradDot, target, 0, 5, 0, CorrectDirection.Opponents);
        Assert.True(Change(proponents) < 0, "descent on the proponents");
        Assert.True(Change(opponents) < 0, "ascent on the opponents");
        Assert.True(Change(opponents with { Weights = opponents.Weights.Select(w => -w).ToArray() }) > 0, "descent on the opponents");
        // First order, checked in size: the predicted change −η ∇L_t·Σ w ∇L_j (dots hold −∇L_t·∇L_j).
        double predicted = 1e-3 * proponents.Rows.Select((j, i) => proponents.Weights[i] * dots[j]).Sum();
        Assert.Equal(1, Change(proponents) / predicted, 2);
    }

    [Fact]
    public void The_plan_targets_exactly_the_mispredicted_test_points_and_units_write_every_run()
    {
        var (data, checkpoint) = Trained();
        var store = new LocalArtifactStore(Directory.CreateTempSubdirectory("correct-").FullName);
        var indices = Enumerable.Range(0, data.Test.Count).ToArray();
        var settings = new CorrectSettings
        {
            Score = Jobs.ScoreSettings.Defaults with { TestIndices = indices },
            K = [1, 3], Steps = [1, 2], LearningRates = [0.5], Seeds = 2, TargetsPerUnit = 2,
        };
        var job = new CorrectJob(store, "correct-test", settings);
        var plan = job.Plan(data, checkpoint);
        using var theta = checkpoint.Theta(CPU);
        using var test = DataTensors.From(data.Test, checkpoint.Spec, CPU);
        var predicted = CorrectJob.Predictions(checkpoint.Spec, Network.Logits(checkpoint.Spec, theta, test.X));
        var wrong = indices.Where(i => predicted[i] != data.Test.Labels[i]).ToArray();
        Assert.NotEmpty(wrong);
        Assert.Equal(wrong, plan.Targets);
        Assert.Equal(wrong, plan.Positions); // every test index asked for, in order
        Assert.Equal((wrong.Length + 1) / 2, plan.Units.Length);
        // influence 2 k × 1 + grad-dot 2 + random 2 × 2 seeds + random-class 4 + nearest-class 2 + self 1 (per rate)
        Assert.Equal(2 + 2 + 4 + 4 + 2 + 1, plan.RunsPerTarget);

        int n = data.Train.Count;
        var scores = Enumerable.Range(0, indices.Length).Select(q => Enumerable.Range(0, n).Select(i => Math.Cos(i + q)).ToArray()).ToArray();
        using var context = new CorrectContext(data, checkpoint, scores, scores);
        var unit = plan.Units[0];
        var rows = job.RunUnit(unit, context, plan);
        // Each run gives a row per recorded step; self's one run a row per k.
        Assert.Equal(unit.Targets.Length * (plan.RunsPerTarget - 1 + 2) * 2, rows.Count);
        Assert.All(rows, r => Assert.Equal(r.TargetLossBefore, rows.First(x => x.TestIndex == r.TestIndex).TargetLossBefore));
        Assert.Equal(rows, job.ReadUnit(unit)); // written once, read back exactly
        Assert.True(job.IsDone(unit));
    }
}
