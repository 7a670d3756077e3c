using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Training;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>TracIn, grad-dot and grad-cos against per-example loops, and TracIn against an actual SGD step.</summary>
public class GradientSimilarityTests
{
    private static (Problem Train, DataTensors Test) Make(string kind)
    {
        var p = Problem.Make(kind, n: 30, seed: 4);
        var test = DataTensors.From(TestData.Blobs(5, 4, p.Spec.ClassCount, 21), p.Spec, CPU);
        return (p, test);
    }

    [Theory]
    [InlineData("softmax logreg")]
    [InlineData("mlp relu all")]
    public void TracIn_grad_dot_and_grad_cos_equal_their_definitions_from_per_example_loops(string kind)
    {
        var (p, test) = Make(kind);
        var thetas = new[] { p.Theta, p.Theta.add(randn_like(p.Theta).mul(0.1)), p.Theta.add(randn_like(p.Theta).mul(0.2)) };
        var rates = new[] { 0.5, 0.2, 0.1 };
        var checkpoints = thetas.Select((t, i) => new TrainingCheckpoint(i + 1, t, rates[i])).ToList();
        var expected = zeros(p.Data.Count, test.Count, dtype: ScalarType.Float64);
        foreach (var c in checkpoints)
            expected.sub_(PerExampleGradients.ByLoop(p.Spec, c.Theta, p.Data).matmul(PerExampleGradients.ByLoop(p.Spec, c.Theta, test).t()).mul(c.LearningRate));
        var tracin = GradientSimilarity.TracIn(p.Spec, checkpoints, p.Data, test, batchSize: 7);
        Assert.True(tracin.sub(expected).abs().max().ToDouble() <= 1e-12 * expected.abs().max().ToDouble());

        var gTrain = PerExampleGradients.ByLoop(p.Spec, p.Theta, p.Data);
        var gTest = PerExampleGradients.ByLoop(p.Spec, p.Theta, test);
        var dot = GradientSimilarity.GradDot(p.Spec, p.Theta, p.Data, test);
        Assert.True(dot.sub(gTrain.matmul(gTest.t()).neg()).abs().max().ToDouble() <= 1e-12 * dot.abs().max().ToDouble());
        // One checkpoint with η = 1 is grad-dot.
        Assert.True(GradientSimilarity.TracIn(p.Spec, [new TrainingCheckpoint(1, p.Theta, 1.0)], p.Data, test).sub(dot).abs().max().ToDouble() <= 1e-13);

        var cos = GradientSimilarity.GradCos(p.Spec, p.Theta, p.Data, test);
        var norms = gTrain.square().sum(1L, false).sqrt().unsqueeze(1).mul(gTest.square().sum(1L, false).sqrt().unsqueeze(0));
        Assert.True(cos.sub(gTrain.matmul(gTest.t()).div(norms).neg()).abs().max().ToDouble() <= 1e-12);
        Assert.True(cos.abs().max().ToDouble() <= 1 + 1e-12);
    }

    [Fact]
    public void TracIn_at_the_step_it_was_taken_predicts_the_test_loss_change_of_a_full_batch_SGD_step()
    {
        var (p, test) = Make("mlp tanh weights");
        const double eta = 1e-4;
        var theta0 = p.Theta;
        var (theta1, _) = MinibatchTrainer.Train(p.Objective, theta0, new MinibatchOptions(Optimizer.Sgd, eta, Epochs: 1, BatchSize: 30, Seed: 0, Momentum: 0));
        var loss0 = Objective.PerExampleLoss(p.Spec, theta0, test);
        var loss1 = Objective.PerExampleLoss(p.Spec, theta1, test);
        var actual = loss1.sub(loss0);
        // L_test(θ₁) − L_test(θ₀) ≈ ∇L_test·(θ₁ − θ₀) = Σ_z TracIn_z / N − η ∇L_test·∇R.
        var tracin = GradientSimilarity.TracIn(p.Spec, [new TrainingCheckpoint(0, theta0, eta)], p.Data, test);
        var regularizerGradient = Objective.ValueAndGradient(p.Objective.Regularizer, theta0).Gradient;
        var predicted = tracin.sum(0L, false).div(p.Data.Count).sub(PerExampleGradients.ByLoop(p.Spec, theta0, test).matmul(regularizerGradient).mul(eta));
        double error = predicted.sub(actual).abs().max().ToDouble(), scale = actual.abs().max().ToDouble();
        Assert.True(error <= 1e-3 * scale, $"first-order prediction off by {error:E2} against changes up to {scale:E2}");
    }

    [Theory]
    [InlineData(Optimizer.Sgd)]
    [InlineData(Optimizer.Adam)]
    public void Minibatch_training_is_reproducible_lowers_the_objective_and_keeps_checkpoints(Optimizer optimizer)
    {
        var (p, _) = Make("mlp relu all");
        var options = new MinibatchOptions(optimizer, optimizer == Optimizer.Sgd ? 0.05 : 0.01, Epochs: 6, BatchSize: 8, Seed: 3, CheckpointEvery: 2);
        var (a, checkpoints) = MinibatchTrainer.Train(p.Objective, p.Theta, options);
        var (b, _) = MinibatchTrainer.Train(p.Objective, p.Theta, options);
        var (c, _) = MinibatchTrainer.Train(p.Objective, p.Theta, options with { Seed = 4 });
        Assert.Equal(0, a.sub(b).abs().max().ToDouble());
        Assert.True(a.sub(c).abs().max().ToDouble() > 0);
        Assert.Equal([2, 4, 6], checkpoints.Select(k => k.Epoch));
        Assert.Equal(0, checkpoints[^1].Theta.sub(a).abs().max().ToDouble());
        Assert.True(p.Objective.Value(a).ToDouble() < 0.9 * p.Objective.Value(p.Theta).ToDouble());
    }
}
