using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Training;

public enum Optimizer { Sgd, Adam }

/// <summary>Minibatch training settings: seeded shuffling, so a run is reproducible on one device.</summary>
/// <param name="CheckpointEvery">Save θ and the learning rate every this many epochs (TracIn's checkpoints); 0 = only the last.</param>
public sealed record MinibatchOptions(Optimizer Optimizer, double LearningRate, int Epochs, int BatchSize, int Seed, int CheckpointEvery = 1, double Momentum = 0.9)
{
    public void Validate()
    {
        if (!(LearningRate > 0)) throw new ArgumentException($"the learning rate must be positive, not {LearningRate}");
        if (Epochs < 1 || BatchSize < 1) throw new ArgumentException("epochs and batch size must be ≥ 1");
        if (CheckpointEvery < 0) throw new ArgumentException("checkpoint interval must be ≥ 0");
        if (Momentum is < 0 or >= 1) throw new ArgumentException($"momentum must be in [0, 1), not {Momentum}");
    }
}

/// <summary>θ after some epochs, and the learning rate in force then (TracIn weighs checkpoints by it).</summary>
public sealed record TrainingCheckpoint(int Epoch, Tensor Theta, double LearningRate);

/// <summary>
/// Minibatch SGD (with momentum) or Adam on the objective of docs/conventions.md: each step uses
/// (1/N)·Σ_batch L·(N/|B|) + R, an unbiased estimate of F, on a seeded shuffle of the rows.
/// </summary>
public static class MinibatchTrainer
{
    public static (Tensor Theta, IReadOnlyList<TrainingCheckpoint> Checkpoints) Train(Objective objective, Tensor initialTheta, MinibatchOptions options, CancellationToken cancel = default)
    {
        options.Validate();
        var spec = objective.Spec;
        long n = objective.Data.Count;
        var theta = initialTheta.detach().clone();
        var velocity = zeros_like(theta);
        var m = zeros_like(theta);
        var v = zeros_like(theta);
        const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
        long step = 0;
        var rng = new Random(options.Seed);
        var checkpoints = new List<TrainingCheckpoint>();
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            var order = Enumerable.Range(0, (int)n).OrderBy(_ => rng.Next()).Select(i => (long)i).ToArray();
            for (int start = 0; start < n; start += options.BatchSize)
            {
                cancel.ThrowIfCancellationRequested(); // see TrainingOptions.Cancel
                using var scope = NewDisposeScope();
                var rows = tensor(order[start..Math.Min(start + options.BatchSize, (int)n)], device: theta.device);
                using var batch = new DataTensors(objective.Data.X.index_select(0, rows), objective.Data.Y.index_select(0, rows));
                long size = batch.Count;
                var (_, grad) = Objective.ValueAndGradient(t => Objective.PerExampleLoss(spec, t, batch).sum().div(size).add(objective.Regularizer(t)), theta);
                step++;
                if (options.Optimizer == Optimizer.Sgd)
                {
                    velocity.mul_(options.Momentum).add_(grad);
                    theta.sub_(velocity.mul(options.LearningRate));
                }
                else
                {
                    m.mul_(beta1).add_(grad.mul(1 - beta1));
                    v.mul_(beta2).add_(grad.square().mul(1 - beta2));
                    var mHat = m.div(1 - Math.Pow(beta1, step));
                    var vHat = v.div(1 - Math.Pow(beta2, step));
                    theta.sub_(mHat.div(vHat.sqrt().add(eps)).mul(options.LearningRate));
                }
            }
            bool save = options.CheckpointEvery > 0 ? epoch % options.CheckpointEvery == 0 : epoch == options.Epochs;
            if (save) checkpoints.Add(new TrainingCheckpoint(epoch, theta.clone(), options.LearningRate));
        }
        velocity.Dispose(); m.Dispose(); v.Dispose();
        return (theta, checkpoints);
    }
}
