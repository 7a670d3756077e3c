using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Training;
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
        Convolutions = r.Model.Convolutions is { } conv ? ConvLayer.ParseList(conv) : null,
        Image = r.Model.Image is { } image ? ImageShape.Parse(image) : null,
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
        AutoDamping = r.AutoDamping,
        InitialCheckpoint = r.Checkpoint,
        MemoryBudgetMb = r.MemoryBudgetMb,
        Options = r.MethodSettings.ToOptions(),
        Training = r.Training.ToChoice(),
    };

    public static MethodOptions ToOptions(this MethodSettings m) => new()
    {
        Curvature = m.Curvature switch
        {
            "hessian" => Curvature.Hessian,
            "ggn" => Curvature.GaussNewton,
            var c => throw new ArgumentException($"--curvature must be hessian or ggn, not '{c}'"),
        },
        Tolerance = m.CgTolerance,
        MaxIterations = m.CgMaxIterations,
        Krylov = m.ArnoldiIterations,
        TopEigen = m.ArnoldiTop,
        LissaDepth = m.LissaDepth,
        LissaRepeats = m.LissaRepeats,
        LissaBatch = m.LissaBatch,
        LissaScale = m.LissaScale,
        FisherLabels = m.FisherLabels switch
        {
            "sampled" => FisherLabels.Sampled,
            "empirical" => FisherLabels.Empirical,
            var f => throw new ArgumentException($"--fisher-labels must be sampled or empirical, not '{f}'"),
        },
        Seed = m.Seed,
        ProjectionDim = m.ProjectionDim,
        SolveSelfInfluence = m.SolveSelfInfluence,
        QueryRank = m.QueryRank,
        Projection = m.Projection switch
        {
            "rademacher" => Core.Scoring.ProjectionKind.Rademacher,
            "gaussian" => Core.Scoring.ProjectionKind.Gaussian,
            var k => throw new ArgumentException($"--projection must be rademacher or gaussian, not '{k}'"),
        },
    };

    public static TrainingChoice ToChoice(this TrainingSettings t) => new()
    {
        Optimizer = t.Optimizer switch
        {
            "lbfgs" => null,
            "sgd" => Optimizer.Sgd,
            "adam" => Optimizer.Adam,
            var o => throw new ArgumentException($"--optimizer must be lbfgs, sgd or adam, not '{o}'"),
        },
        LearningRate = t.LearningRate,
        Epochs = t.Epochs,
        BatchSize = t.BatchSize,
        CheckpointEvery = t.CheckpointEvery,
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
