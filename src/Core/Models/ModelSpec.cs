using System.Text.Json.Serialization;
using TorchSharp;

namespace Influence.Core.Models;

[JsonConverter(typeof(JsonStringEnumConverter))]
public enum Activation { Tanh, Relu }

/// <summary>Which parameters the L2 penalty <c>(λ/2)‖θ‖²</c> covers.</summary>
[JsonConverter(typeof(JsonStringEnumConverter))]
public enum DecayOn { Weights, All }

[JsonConverter(typeof(JsonStringEnumConverter))]
public enum Precision { Float64, Float32 }

/// <summary>Where one Linear layer's weight (Out×In, row-major) and bias (Out) sit in the flat parameter vector.</summary>
public sealed record LayerLayout(int In, int Out, long WeightOffset, long BiasOffset)
{
    public long WeightCount => (long)In * Out;
}

/// <summary>
/// A stack of Linear layers with an activation between them; no hidden layers is logistic
/// regression. Two classes use one output and a sigmoid, more use softmax. Parameters live in one
/// flat vector, layer by layer: weight (row-major) then bias.
/// </summary>
public sealed record ModelSpec(
    int InputDim,
    int ClassCount,
    int[] Hidden,
    Activation Activation,
    double L2,
    DecayOn DecayOn,
    Precision Precision,
    int Seed)
{
    public static ModelSpec LogisticRegression(int inputDim, int classCount, double l2, Precision precision = Precision.Float64, int seed = 0) =>
        new(inputDim, classCount, [], Activation.Tanh, l2, DecayOn.Weights, precision, seed);

    public static ModelSpec Mlp(int inputDim, int classCount, int[] hidden, Activation activation, double l2, DecayOn decayOn, Precision precision = Precision.Float64, int seed = 0) =>
        new(inputDim, classCount, hidden, activation, l2, decayOn, precision, seed);

    [JsonIgnore] public bool IsBinary => ClassCount == 2;
    [JsonIgnore] public bool IsLogisticRegression => Hidden.Length == 0;
    [JsonIgnore] public int OutputDim => IsBinary ? 1 : ClassCount;
    [JsonIgnore] public torch.ScalarType ScalarType => Precision == Precision.Float64 ? torch.ScalarType.Float64 : torch.ScalarType.Float32;

    [JsonIgnore]
    public IReadOnlyList<LayerLayout> Layers
    {
        get
        {
            var layers = new List<LayerLayout>();
            long offset = 0;
            int inDim = InputDim;
            foreach (var outDim in Hidden.Append(OutputDim))
            {
                var w = offset;
                offset += (long)inDim * outDim;
                layers.Add(new LayerLayout(inDim, outDim, w, offset));
                offset += outDim;
                inDim = outDim;
            }
            return layers;
        }
    }

    [JsonIgnore] public long ParameterCount => Layers[^1].BiasOffset + OutputDim;

    /// <summary>
    /// Softmax with an unpenalised output bias has one flat direction: the same constant added to
    /// every class bias changes no prediction. Gradients are orthogonal to it and the Hessian is
    /// singular along it; influence uses the inverse on its orthogonal complement (pseudo-inverse).
    /// </summary>
    [JsonIgnore] public bool HasFlatDirection => !IsBinary && DecayOn == DecayOn.Weights;

    public string Describe()
    {
        var shape = string.Join("-", new[] { InputDim }.Concat(Hidden).Append(OutputDim));
        var head = IsBinary ? "sigmoid" : "softmax";
        return IsLogisticRegression
            ? $"logistic regression {shape} ({head}), L2 {L2} on weights, {Precision}"
            : $"MLP {shape} ({Activation}, {head}), L2 {L2} on {DecayOn.ToString().ToLowerInvariant()}, {Precision}";
    }

    public void Validate()
    {
        if (InputDim <= 0) throw new ArgumentException("the input dimension must be positive");
        if (ClassCount < 2) throw new ArgumentException("at least two classes are needed");
        if (Hidden.Any(h => h <= 0)) throw new ArgumentException("hidden widths must be positive");
        if (!(L2 >= 0) || double.IsInfinity(L2)) throw new ArgumentException($"the L2 strength must be a non-negative number, not {L2}");
    }
}
