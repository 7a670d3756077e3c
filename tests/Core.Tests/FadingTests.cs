using Influence.Core.Data;
using Influence.Core.Fading;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Xunit;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>
/// `influence fading`'s trajectories against their oracles: ε = 0 changes nothing to the last bit;
/// for a small ε the actual change matches the linearised trajectory to first order; and on a
/// quadratic-like problem (logistic regression at its optimum, full batches, a small step) the
/// linearised prediction converges to the influence function's.
/// </summary>
public class FadingTests
{
    private static (TrainTestData Data, Checkpoint Checkpoint, Objective Objective) Trained()
    {
        var data = TestData.Iris();
        var spec = ModelSpec.LogisticRegression(data.Train.FeatureCount, 3, 1e-1, Precision.Float64, 0);
        var train = DataTensors.From(data.Train, spec, CPU);
        var objective = new Objective(spec, train, data.Train.Count, CPU);
        var result = Training.FullBatchTrainer.Train(objective, Network.Initialize(spec, CPU), new Training.TrainingOptions { GradientTolerance = 1e-12 });
        return (data, new Checkpoint(spec, result.Theta.data<double>().ToArray(), 0, 0, 0, 0, 0), objective);
    }

    private static FadingSettings Settings(string perturb, int steps, double lr, int batch) => new()
    {
        Score = Jobs.ScoreSettings.Defaults with { TestIndices = [0, 4, 9], Training = new Jobs.TrainingChoice { LearningRate = lr, TrainBatch = batch } },
        Remove = "random:2,0", Perturb = perturb, Steps = steps,
    };

    /// <summary>I = −∇L(test)ᵀH⁻¹∇L(z) at θ̂ (exact Hessian, pseudo-inverse off the flat direction), [test][train].</summary>
    private static double[][] ExactInfluence(Objective objective, Tensor theta, DataTensors test)
    {
        var spec = objective.Spec;
        using var h = ExactHessian.Of(objective, theta);
        using var inverse = HessianInverse.Factorize(h, 0, Network.FlatDirections(spec, CPU));
        var g = Scoring.PerExampleGradients.Materialize(spec, theta, objective.Data); // N × P
        var gt = Scoring.PerExampleGradients.Materialize(spec, theta, test);         // Q × P
        var influence = gt.matmul(inverse.Solve(g.t())).neg(); // Q × N
        return Enumerable.Range(0, (int)test.Count).Select(q => influence[q].data<double>().ToArray()).ToArray();
    }

    [Fact]
    public void No_perturbation_changes_nothing_to_the_last_bit()
    {
        var (data, checkpoint, _) = Trained();
        var settings = Settings("upweight:0", 30, 0.05, 16);
        using var context = new FadingContext(data, checkpoint, settings.Score.TestIndices, [new double[data.Train.Count], new double[data.Train.Count], new double[data.Train.Count]]);
        var rows = context.Simulate([3, 40], settings, FadingSettings.RecordedSteps(30));
        Assert.Equal(2 * 3 * FadingSettings.RecordedSteps(30).Length, rows.Count);
        Assert.All(rows, r => Assert.Equal((0.0, 0.0, 0.0, 0.0), (r.ActualDelta, r.ParamDistance, r.PredictedTracin, r.PredictedLinear)));
    }

    /// <summary>Finite-difference oracle: Δ(t)/ε of the actual runs → the linearised trajectory's prediction as ε → 0.</summary>
    [Fact]
    public void A_small_perturbation_follows_the_linearised_trajectory()
    {
        var (data, checkpoint, _) = Trained();
        // Minibatches of 16 from θ̂: the examples are in some batches and not others.
        var settings = Settings("upweight:1e-4", 20, 0.05, 16);
        int n = data.Train.Count;
        using var context = new FadingContext(data, checkpoint, settings.Score.TestIndices, [new double[n], new double[n], new double[n]]);
        var rows = context.Simulate([3, 40, 77], settings, [5, 10, 20]);
        var moved = rows.Where(r => Math.Abs(r.PredictedLinear) > 1e-12).ToList();
        Assert.True(moved.Count >= 9, "the examples should have been in some batch");
        foreach (var r in moved)
            Assert.True(Math.Abs(r.ActualDelta - r.PredictedLinear) <= 1e-3 * Math.Abs(r.PredictedLinear), $"{r}: actual {r.ActualDelta:E6}, linearised {r.PredictedLinear:E6}");
        // Twice ε, twice the change (first order): the oracle is not a fixed point of the code.
        var doubled = context.Simulate([3, 40, 77], Settings("upweight:2e-4", 20, 0.05, 16), [5, 10, 20]);
        foreach (var (a, b) in rows.Zip(doubled))
            if (Math.Abs(a.ActualDelta) > 1e-12) Assert.Equal(2, b.ActualDelta / a.ActualDelta, 2);
    }

    /// <summary>
    /// Full batches from θ̂ with a small η: δ_t → −H⁻¹(ε/N)∇L(z_j), so ∇L(test)ᵀδ_t → ε·I/N, the
    /// influence prediction (computed here from the exact Hessian, not by the job's score path).
    /// </summary>
    [Fact]
    public void On_logistic_regression_the_linearised_trajectory_converges_to_the_influence_prediction()
    {
        var (data, checkpoint, objective) = Trained();
        int n = data.Train.Count;
        var settings = Settings("remove", 3000, 0.05, n);
        using var test = DataTensors.From(data.Test.Select(settings.Score.TestIndices), checkpoint.Spec, CPU);
        var influence = ExactInfluence(objective, checkpoint.Theta(CPU), test);
        using var context = new FadingContext(data, checkpoint, settings.Score.TestIndices, influence);
        var rows = context.Simulate([3, 40], settings, [10, 3000]);
        foreach (var r in rows.Where(r => r.Step == 3000))
            Assert.True(Math.Abs(r.PredictedLinear - r.PredictedIf) <= 1e-4 * Math.Abs(r.PredictedIf) + 1e-12, $"{r}: linearised {r.PredictedLinear:E6}, influence {r.PredictedIf:E6}");
        // Early on it has not: after 10 small steps the trajectory has moved only a little way.
        Assert.Contains(rows.Where(r => r.Step == 10), r => Math.Abs(r.PredictedLinear - r.PredictedIf) > 0.1 * Math.Abs(r.PredictedIf));
        // And removal is ε = −1: the influence column is the LOO prediction −I/N.
        Assert.All(rows, r => Assert.Equal(-influence[Array.IndexOf(settings.Score.TestIndices, r.TestIndex)][r.TrainIndex] / n, r.PredictedIf, 15));
    }

    [Fact]
    public void Recorded_steps_are_log_spaced_and_end_at_T()
    {
        Assert.Equal([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], FadingSettings.RecordedSteps(1000));
        Assert.Equal([1, 2, 5, 10, 20, 30], FadingSettings.RecordedSteps(30));
        Assert.Equal(-1, FadingSettings.ParsePerturb("remove"));
        Assert.Equal(0.01, FadingSettings.ParsePerturb("upweight:0.01"));
        Assert.Throws<ArgumentException>(() => FadingSettings.ParsePerturb("upweight:-2"));
    }
}
