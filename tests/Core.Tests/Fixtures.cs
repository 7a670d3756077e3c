using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>A model spec, its data as tensors, the objective and a parameter point, for oracle tests.</summary>
public sealed class Problem : IDisposable
{
    public Problem(ModelSpec spec, Dataset data, Tensor? theta = null)
    {
        Spec = spec;
        Data = DataTensors.From(data, spec, CPU);
        Objective = new Objective(spec, Data, data.Count, CPU);
        Theta = theta ?? Network.Initialize(spec, CPU);
    }

    public ModelSpec Spec { get; }
    public DataTensors Data { get; }
    public Objective Objective { get; }
    public Tensor Theta { get; }

    public static IEnumerable<object[]> Kinds() =>
    [
        ["softmax logreg"], ["binary logreg"], ["mlp tanh weights"], ["mlp relu all"], ["cnn tanh all"],
    ];

    /// <summary>
    /// The CNN of the fixtures: 2×6×6 images, a 3×3 convolution to 3 channels, a 2×2 one to 4
    /// channels with 3×3 max-pooling, then the softmax head (124 parameters).
    /// </summary>
    public static ModelSpec TinyCnn(int seed, DecayOn decayOn = DecayOn.All) =>
        ModelSpec.Cnn(new ImageShape(2, 6, 6), 3, [new ConvLayer(3, 3), new ConvLayer(4, 2, 3)], [], Activation.Tanh, 0.01, decayOn, seed: seed);

    /// <summary>Small problems of each model kind, at a random (not optimal) point.</summary>
    public static Problem Make(string kind, int n = 24, int seed = 3)
    {
        var binary = TestData.Blobs(n, 4, 2, seed);
        var multi = TestData.Blobs(n, 4, 3, seed);
        return kind switch
        {
            "softmax logreg" => new Problem(ModelSpec.LogisticRegression(4, 3, 0.05, seed: seed), multi),
            "binary logreg" => new Problem(ModelSpec.LogisticRegression(4, 2, 0.05, seed: seed), binary),
            "mlp tanh weights" => new Problem(ModelSpec.Mlp(4, 3, [5], Activation.Tanh, 0.01, DecayOn.Weights, seed: seed), multi),
            "mlp relu all" => new Problem(ModelSpec.Mlp(4, 3, [6, 4], Activation.Relu, 0.01, DecayOn.All, seed: seed), multi),
            "cnn tanh all" => new Problem(TinyCnn(seed), TestData.Blobs(n, 72, 3, seed)),
            _ => throw new ArgumentException(kind),
        };
    }

    public void Dispose()
    {
        Data.Dispose();
        Theta.Dispose();
    }
}
