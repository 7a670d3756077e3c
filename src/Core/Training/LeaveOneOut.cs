using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using static TorchSharp.torch;

namespace Influence.Core.Training;

/// <summary>Retraining on part of the training set, as docs/conventions.md defines it: the normaliser stays 1/N.</summary>
public static class LeaveOneOut
{
    /// <summary>θ̂₋ⱼ = argmin (1/N) Σ_{i≠j} L_i + R, from <paramref name="start"/> (θ̂ for a warm retrain).</summary>
    public static TrainingResult Retrain(ModelSpec spec, Dataset train, int removed, Tensor start, TrainingOptions? options = null) =>
        RetrainOn(spec, train, Enumerable.Range(0, train.Count).Where(i => i != removed).ToArray(), start, options);

    /// <summary>argmin (1/N) Σ_{i ∈ kept} L_i + R with N the full training-set size (removal is up-weighting by −1/N).</summary>
    public static TrainingResult RetrainOn(ModelSpec spec, Dataset train, int[] kept, Tensor start, TrainingOptions? options = null)
    {
        using var data = DataTensors.From(train.Select(kept), spec, start.device);
        var objective = new Objective(spec, data, train.Count, start.device);
        return FullBatchTrainer.Train(objective, start, options);
    }
}
