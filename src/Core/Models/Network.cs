using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Models;

/// <summary>The forward pass of a <see cref="ModelSpec"/> as a function of a flat parameter vector.</summary>
public static class Network
{
    /// <summary>
    /// Inputs of every layer and its pre-activation output (the last is the logits). A convolution's
    /// input is its B × C × H × W feature map and its output B × O × H' × W' (before activation and pooling).
    /// </summary>
    public sealed record Trace(IReadOnlyList<Tensor> LayerInputs, IReadOnlyList<Tensor> PreActivations)
    {
        public Tensor Logits => PreActivations[^1];
    }

    public static Tensor Weight(Tensor theta, LayerLayout layer) =>
        theta.narrow(0, layer.WeightOffset, layer.WeightCount).view(layer.Out, layer.In);

    public static Tensor Bias(Tensor theta, LayerLayout layer) => theta.narrow(0, layer.BiasOffset, layer.Out);

    public static Tensor Logits(ModelSpec spec, Tensor theta, Tensor x) => Forward(spec, theta, x).Logits;

    public static Trace Forward(ModelSpec spec, Tensor theta, Tensor x)
    {
        var inputs = new List<Tensor>();
        var pre = new List<Tensor>();
        var a = spec.Image is { } image && spec.IsConvolutional ? x.view(x.shape[0], image.Channels, image.Height, image.Width) : x;
        var layers = spec.Layers;
        for (int l = 0; l < layers.Count; l++)
        {
            var layer = layers[l];
            inputs.Add(a);
            var z = layer.Conv is { } conv
                ? nn.functional.conv2d(a, Weight(theta, layer).view(layer.Out, conv.InChannels, conv.Kernel, conv.Kernel), Bias(theta, layer))
                : nn.functional.linear(a, Weight(theta, layer), Bias(theta, layer));
            pre.Add(z);
            if (l == layers.Count - 1) break;
            a = spec.Activation == Activation.Tanh ? z.tanh() : z.relu();
            if (layer.Conv is { } c)
            {
                if (c.Pool > 1) a = nn.functional.max_pool2d(a, c.Pool);
                if (layers[l + 1].Conv is null) a = a.flatten(1);
            }
        }
        return new Trace(inputs, pre);
    }

    /// <summary>
    /// Seeded initialisation, the same on every device (drawn on the CPU, then moved): weights and
    /// biases uniform in ±1/√fan_in, as PyTorch's Linear does.
    /// </summary>
    public static Tensor Initialize(ModelSpec spec, Device device)
    {
        using var generator = new Generator((ulong)spec.Seed);
        var theta = zeros(spec.ParameterCount, dtype: ScalarType.Float64);
        foreach (var layer in spec.Layers)
        {
            double bound = 1.0 / Math.Sqrt(layer.In);
            using var w = rand(layer.WeightCount, dtype: ScalarType.Float64, generator: generator).mul_(2 * bound).sub_(bound);
            using var b = rand(layer.Out, dtype: ScalarType.Float64, generator: generator).mul_(2 * bound).sub_(bound);
            theta.narrow(0, layer.WeightOffset, layer.WeightCount).copy_(w);
            theta.narrow(0, layer.BiasOffset, layer.Out).copy_(b);
        }
        return theta.to(spec.ScalarType).to(device);
    }

    /// <summary>1 where the L2 penalty applies, 0 elsewhere.</summary>
    public static Tensor RegularizationMask(ModelSpec spec, Device device)
    {
        var mask = ones(spec.ParameterCount, dtype: spec.ScalarType, device: device);
        if (spec.DecayOn == DecayOn.Weights)
            foreach (var layer in spec.Layers) mask.narrow(0, layer.BiasOffset, layer.Out).zero_();
        return mask;
    }

    /// <summary>V with its components along the flat directions (<see cref="FlatDirections"/>) removed; V itself when there are none.</summary>
    public static Tensor WithoutFlat(Tensor v, Tensor? flat) => flat is null ? v : v.sub(flat.matmul(flat.t().matmul(v)));

    /// <summary>Orthonormal basis (P×m) of the directions the objective is flat along; null when there are none.</summary>
    public static Tensor? FlatDirections(ModelSpec spec, Device device)
    {
        if (!spec.HasFlatDirection) return null;
        var u = zeros(spec.ParameterCount, 1, dtype: spec.ScalarType, device: device);
        var last = spec.Layers[^1];
        u.narrow(0, last.BiasOffset, last.Out).fill_(1.0 / Math.Sqrt(last.Out));
        return u;
    }
}
