using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Loo;
using Influence.Core.Models;

namespace Influence.Grains;

/// <summary>Maps wire messages onto Core's settings, with clear errors for bad values.</summary>
public static class RequestMapping
{
    public static ScoreSettings ToSettings(this ScoreJobRequest r) => new()
    {
        Train = new DatasetSpec(r.Train.Path, r.Train.LabelsPath, r.Train.FeatureScale),
        Test = new DatasetSpec(r.Test.Path, r.Test.LabelsPath, r.Test.FeatureScale),
        ModelKind = r.Model.Kind,
        Hidden = r.Model.Hidden,
        Activation = r.Model.Activation switch
        {
            "tanh" => Activation.Tanh,
            "relu" => Activation.Relu,
            var a => throw new ArgumentException($"--activation must be tanh or relu, not '{a}'"),
        },
        L2 = r.Model.L2,
        DecayOn = r.Model.WeightDecayOn switch
        {
            "weights" => DecayOn.Weights,
            "all" => DecayOn.All,
            var d => throw new ArgumentException($"--weight-decay-on must be weights or all, not '{d}'"),
        },
        Precision = r.Model.DType switch
        {
            "float64" => Precision.Float64,
            "float32" => Precision.Float32,
            var t => throw new ArgumentException($"--dtype must be float64 or float32, not '{t}'"),
        },
        Seed = r.Model.Seed,
        Method = r.Method,
        Damping = r.Damping,
        TestIndices = r.TestIndices,
        Shards = r.Shards,
        TopK = r.TopK,
        BatchSize = r.BatchSize,
    };

    public static LooSettings ToSettings(this LooJobRequest r) => new()
    {
        Score = r.Score.ToSettings(),
        Remove = r.Remove,
        Modes = r.Modes.Select(m => m.Trim().ToLowerInvariant() switch
        {
            "warm" => RetrainMode.Warm,
            "cold" => RetrainMode.Cold,
            "pbrf" => RetrainMode.Pbrf,
            var x => throw new ArgumentException($"--retrain must be warm, cold, both or pbrf (or a comma list), not '{x}'"),
        }).ToArray(),
        NoiseSeeds = r.NoiseSeeds,
        WarmBatch = r.WarmBatch,
        UnitSize = r.UnitSize,
        Tolerance = r.Tolerance,
    };
}
