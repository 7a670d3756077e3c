using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Metrics;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Training;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

public class TrainingAndInfluenceTests
{
    [Fact]
    public void Logistic_regression_trains_to_a_gradient_norm_below_1e_10()
    {
        var iris = TestData.Iris();
        var spec = ModelSpec.LogisticRegression(iris.Train.FeatureCount, iris.ClassCount, 1e-2);
        using var data = DataTensors.From(iris.Train, spec, CPU);
        var objective = new Objective(spec, data, iris.Train.Count, CPU);
        var result = FullBatchTrainer.Train(objective, Network.Initialize(spec, CPU));
        Assert.True(result.GradientNorm <= 1e-10, $"‖∇F‖ = {result.GradientNorm}");
        Assert.True(result.Converged);
        // A true minimum: every direction goes up.
        var (f0, _) = objective.ValueAndGradient(result.Theta);
        var (f1, _) = objective.ValueAndGradient(result.Theta.add(randn(spec.ParameterCount, dtype: ScalarType.Float64).mul(1e-3)));
        Assert.True(f1 > f0);
    }

    [Fact]
    public void Initialisation_is_reproducible_from_the_seed()
    {
        var spec = ModelSpec.Mlp(4, 3, [8], Activation.Tanh, 1e-3, DecayOn.All, seed: 42);
        Assert.Equal(0, Network.Initialize(spec, CPU).sub(Network.Initialize(spec, CPU)).abs().max().ToDouble());
        Assert.NotEqual(0, Network.Initialize(spec, CPU).sub(Network.Initialize(spec with { Seed = 43 }, CPU)).abs().max().ToDouble());
    }

    /// <summary>
    /// The predicted change of a test loss when removing z_j, (1/N) ∇L_testᵀ H⁻¹ ∇L_j, against
    /// brute-force retraining without z_j: rank agreement, sign and scale.
    /// </summary>
    [Theory]
    [InlineData(3)]
    [InlineData(2)]
    public void Predicted_LOO_deltas_match_brute_force_retraining(int classes)
    {
        var train = TestData.Blobs(80, 3, classes, 21, spread: 3.0);
        var test = TestData.Blobs(6, 3, classes, 22, spread: 3.0);
        var spec = ModelSpec.LogisticRegression(3, classes, 0.1);
        using var data = DataTensors.From(train, spec, CPU);
        using var testData = DataTensors.From(test, spec, CPU);
        var objective = new Objective(spec, data, train.Count, CPU);
        var fit = FullBatchTrainer.Train(objective, Network.Initialize(spec, CPU));
        Assert.True(fit.GradientNorm < 1e-10);
        using var h = ExactHessian.Of(objective, fit.Theta);
        using var inverse = HessianInverse.Factorize(h, 0, Network.FlatDirections(spec, CPU));
        var testGrads = PerExampleGradients.Materialize(spec, fit.Theta, testData);
        var queries = inverse.Solve(testGrads.t()).t(); // Q×P
        var scores = ExactScoring.Score(spec, fit.Theta, data, 0, queries, inverse, topK: 5);
        var baseLoss = Objective.PerExampleLoss(spec, fit.Theta, testData).data<double>().ToArray();

        for (int q = 0; q < test.Count; q++)
        {
            var predicted = new double[train.Count];
            var actual = new double[train.Count];
            for (int j = 0; j < train.Count; j++)
            {
                predicted[j] = -scores.Influence[q * train.Count + j] / train.Count; // −I/N
                var loo = LeaveOneOut.Retrain(spec, train, j, fit.Theta, new TrainingOptions { GradientTolerance = 1e-12 });
                actual[j] = Objective.PerExampleLoss(spec, loo.Theta, testData)[q].ToDouble() - baseLoss[q];
            }
            double spearman = Correlation.Spearman(predicted, actual);
            double slope = predicted.Zip(actual, (a, b) => a * b).Sum() / predicted.Sum(a => a * a);
            Assert.True(spearman >= 0.99, $"test point {q}: Spearman {spearman}");
            Assert.InRange(slope, 0.8, 1.25); // a wrong normaliser (N or N−1 vs 1) or sign fails here
        }
        // Self-influence is non-negative for a positive definite Hessian.
        Assert.All(scores.SelfInfluence!, s => Assert.True(s >= 0));
    }

    /// <summary>
    /// The sharp oracle: I_up,loss(z_j, z_test) is exactly d/dε L_test(θ̂_ε) at ε = 0 where
    /// θ̂_ε = argmin F(θ) + ε L(z_j, θ). Central differences of two retrains (ε = ±1e-4) must agree
    /// to 1e-5 relative, which a wrong normaliser, sign or damping term cannot.
    /// </summary>
    [Theory]
    [InlineData(3, 0.0)]
    [InlineData(2, 0.0)]
    [InlineData(3, 0.05)]
    public void Influence_is_the_derivative_of_the_test_loss_under_upweighting(int classes, double damping)
    {
        var train = TestData.Blobs(30, 3, classes, 5, spread: 3.0);
        var test = TestData.Blobs(3, 3, classes, 6, spread: 3.0);
        var spec = ModelSpec.LogisticRegression(3, classes, 0.1);
        using var data = DataTensors.From(train, spec, CPU);
        using var testData = DataTensors.From(test, spec, CPU);
        var fit = FullBatchTrainer.Train(new Objective(spec, data, train.Count, CPU), Network.Initialize(spec, CPU));
        using var h = ExactHessian.Of(new Objective(spec, data, train.Count, CPU), fit.Theta);
        using var inverse = HessianInverse.Factorize(h, damping, Network.FlatDirections(spec, CPU));
        var queries = inverse.Solve(PerExampleGradients.Materialize(spec, fit.Theta, testData).t()).t();
        var scores = ExactScoring.Score(spec, fit.Theta, data, 0, queries, inverse, topK: 3);
        const double eps = 1e-4;
        foreach (int j in new[] { 0, 7, 19 })
        {
            double TestLossAt(double e)
            {
                // F + e·L_j = (1/N) Σ (1 + N e [i = j]) L_i + R; damping δ adds (δ/2)‖θ − θ̂‖².
                var w = ones(train.Count, dtype: ScalarType.Float64);
                w[j] = 1 + train.Count * e;
                var objective = new DampedObjective(new Objective(spec, data, train.Count, CPU, w), fit.Theta, damping);
                var r = objective.Minimize();
                return Objective.PerExampleLoss(spec, r, testData).data<double>().ToArray().Sum();
            }
            double derivative = (TestLossAt(eps) - TestLossAt(-eps)) / (2 * eps);
            double predicted = Enumerable.Range(0, test.Count).Sum(q => scores.Influence[q * train.Count + j]);
            Assert.True(Math.Abs(derivative - predicted) <= 1e-5 * Math.Abs(predicted) + 1e-9,
                $"z_{j}: d/dε test loss {derivative} vs influence {predicted}");
        }
    }

    /// <summary>F(θ) + (δ/2)‖θ − θ̂‖², whose Hessian at θ̂ is H + δI: what damped influence differentiates.</summary>
    private sealed class DampedObjective(Objective inner, Tensor anchor, double damping)
    {
        public Tensor Minimize()
        {
            var theta = anchor.clone();
            for (int it = 0; it < 30; it++)
            {
                var (_, g) = inner.ValueAndGradient(theta);
                g = g.add(theta.sub(anchor).mul(damping));
                if (g.norm().ToDouble() < 1e-13) break;
                var hm = ExactHessian.Of(inner, theta);
                hm.diagonal().add_(damping);
                using var inv = HessianInverse.Factorize(hm, 0, Network.FlatDirections(inner.Spec, CPU), computeSpectrum: false);
                theta = theta.sub(inv.Solve(g.unsqueeze(1)).squeeze(1));
            }
            return theta;
        }
    }
}
