using System.Text.Json.Serialization;
using TorchSharp;

namespace Influence.Core.Models;

[JsonConverter(typeof(JsonStringEnumConverter))]
public enum Activation { Tanh, Relu }

/// <summary>The model families a job can train: softmax (or sigmoid) logistic regression, an MLP, a CNN.</summary>
public enum ModelKind { Logreg, Mlp, Cnn }

/// <summary>Which parameters the L2 penalty <c>(λ/2)‖θ‖²</c> covers.</summary>
[JsonConverter(typeof(JsonStringEnumConverter))]
public enum DecayOn { Weights, All }

[JsonConverter(typeof(JsonStringEnumConverter))]
public enum Precision { Float64, Float32 }

/// <summary>Input images: each row's features are Channels × Height × Width values, row-major.</summary>
public sealed record ImageShape(int Channels, int Height, int Width)
{
    public int Size => Channels * Height * Width;
    public override string ToString() => $"{Channels}x{Height}x{Width}";

    /// <summary>"CxHxW", e.g. 1x28x28.</summary>
    public static ImageShape Parse(string text)
    {
        var parts = text.Split('x', StringSplitOptions.TrimEntries);
        if (parts.Length != 3 || !parts.All(p => int.TryParse(p, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int v) && v > 0))
            throw new ArgumentException($"--image must be CHANNELSxHEIGHTxWIDTH with positive numbers, e.g. 1x28x28, not '{text}'");
        var v = parts.Select(int.Parse).ToArray();
        return new ImageShape(v[0], v[1], v[2]);
    }

    /// <summary>One channel, square: the shape a flat row of <paramref name="features"/> values has when it is a square image; null otherwise.</summary>
    public static ImageShape? SquareOf(int features)
    {
        int side = (int)Math.Round(Math.Sqrt(features));
        return side * side == features ? new ImageShape(1, side, side) : null;
    }
}

/// <summary>
/// A convolution with <paramref name="Channels"/> output channels and a Kernel × Kernel kernel
/// (stride 1, no padding), then the activation, then Pool × Pool max-pooling (1: none).
/// </summary>
public sealed record ConvLayer(int Channels, int Kernel, int Pool = 1)
{
    /// <summary>LeNet's two convolutions: 6 then 16 channels, 5×5 kernels, 2×2 max-pooling after each.</summary>
    public const string LeNet = "6:5:2,16:5:2";

    public override string ToString() => Pool > 1 ? $"conv{Channels}k{Kernel}/pool{Pool}" : $"conv{Channels}k{Kernel}";

    /// <summary>"CHANNELS:KERNEL[:POOL],…", e.g. 6:5:2,16:5:2.</summary>
    public static ConvLayer[] ParseList(string text)
    {
        var layers = new List<ConvLayer>();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = item.Split(':', StringSplitOptions.TrimEntries);
            var values = parts.Select(p => int.TryParse(p, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int v) && v > 0 ? v : -1).ToArray();
            if (parts.Length is < 2 or > 3 || values.Any(v => v < 0))
                throw new ArgumentException($"--conv: '{item}' is not CHANNELS:KERNEL[:POOL] with positive numbers (e.g. {LeNet})");
            layers.Add(new ConvLayer(values[0], values[1], parts.Length == 3 ? values[2] : 1));
        }
        if (layers.Count == 0) throw new ArgumentException($"--conv lists no layer (e.g. {LeNet})");
        return layers.ToArray();
    }
}

/// <summary>What a convolution layer sees: its input C × H × W, its kernel and pooling.</summary>
public sealed record ConvGeometry(int InChannels, int InHeight, int InWidth, int Kernel, int Pool)
{
    public int OutHeight => InHeight - Kernel + 1;
    public int OutWidth => InWidth - Kernel + 1;
    /// <summary>Output positions: the number of patches each example's weight gradient sums over.</summary>
    public int Positions => OutHeight * OutWidth;
    public int PooledHeight => OutHeight / Pool;
    public int PooledWidth => OutWidth / Pool;
}

/// <summary>
/// Where one layer's weight (Out×In, row-major) and bias (Out) sit in the flat parameter vector.
/// A convolution is stored the same way: Out channels × In = C·kh·kw (PyTorch's O×C×kh×kw), so
/// its per-example gradient is the Linear one summed over the output positions of the unfolded input.
/// </summary>
public sealed record LayerLayout(int In, int Out, long WeightOffset, long BiasOffset, ConvGeometry? Conv = null)
{
    public long WeightCount => (long)In * Out;
}

/// <summary>
/// Optional convolution layers on images, then a stack of Linear layers, with the activation
/// between layers; no hidden and no convolution layers is logistic regression. Two classes use
/// one output and a sigmoid, more use softmax. Parameters live in one flat vector, layer by
/// layer: weight (row-major) then bias.
/// </summary>
public sealed record ModelSpec(
    int InputDim,
    int ClassCount,
    int[] Hidden,
    Activation Activation,
    double L2,
    DecayOn DecayOn,
    Precision Precision,
    int Seed,
    ImageShape? Image = null,
    ConvLayer[]? Convolutions = null)
{
    public static ModelSpec LogisticRegression(int inputDim, int classCount, double l2, Precision precision = Precision.Float64, int seed = 0) =>
        new(inputDim, classCount, [], Activation.Tanh, l2, DecayOn.Weights, precision, seed);

    public static ModelSpec Mlp(int inputDim, int classCount, int[] hidden, Activation activation, double l2, DecayOn decayOn, Precision precision = Precision.Float64, int seed = 0) =>
        new(inputDim, classCount, hidden, activation, l2, decayOn, precision, seed);

    /// <summary>A LeNet-style network: convolutions on <paramref name="image"/>, then Linear layers of the <paramref name="hidden"/> widths, then the head.</summary>
    public static ModelSpec Cnn(ImageShape image, int classCount, ConvLayer[] convolutions, int[] hidden, Activation activation, double l2, DecayOn decayOn, Precision precision = Precision.Float64, int seed = 0) =>
        new(image.Size, classCount, hidden, activation, l2, decayOn, precision, seed, image, convolutions);

    [JsonIgnore] public bool IsBinary => ClassCount == 2;
    [JsonIgnore] public bool IsConvolutional => Convolutions is { Length: > 0 };
    /// <summary>A linear model: the objective is convex in θ.</summary>
    [JsonIgnore] public bool IsLogisticRegression => Hidden.Length == 0 && !IsConvolutional;
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
            if (IsConvolutional)
            {
                var (c, h, w) = Image ?? throw new InvalidOperationException("a convolutional model needs the image shape");
                foreach (var conv in Convolutions!)
                {
                    var geometry = new ConvGeometry(c, h, w, conv.Kernel, conv.Pool);
                    int patch = c * conv.Kernel * conv.Kernel;
                    var wOffset = offset;
                    offset += (long)patch * conv.Channels;
                    layers.Add(new LayerLayout(patch, conv.Channels, wOffset, offset, geometry));
                    offset += conv.Channels;
                    (c, h, w) = (conv.Channels, geometry.PooledHeight, geometry.PooledWidth);
                }
                inDim = c * h * w;
            }
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
        if (IsConvolutional)
            shape = string.Join("-", new[] { Image!.ToString() }.Concat(Convolutions!.Select(c => c.ToString())).Concat(Hidden.Append(OutputDim).Select(h => h.ToString())));
        return IsLogisticRegression
            ? $"logistic regression {shape} ({head}), L2 {L2} on weights, {Precision}"
            : $"{(IsConvolutional ? "CNN" : "MLP")} {shape} ({Activation}, {head}), L2 {L2} on {DecayOn.ToString().ToLowerInvariant()}, {Precision}";
    }

    public void Validate()
    {
        if (InputDim <= 0) throw new ArgumentException("the input dimension must be positive");
        if (ClassCount < 2) throw new ArgumentException("at least two classes are needed");
        if (Hidden.Any(h => h <= 0)) throw new ArgumentException("hidden widths must be positive");
        if (!(L2 >= 0) || double.IsInfinity(L2)) throw new ArgumentException($"the L2 strength must be a non-negative number, not {L2}");
        if (Convolutions is null) return;
        if (Image is null) throw new ArgumentException("convolution layers need the image shape (channels × height × width)");
        if (Image.Channels <= 0 || Image.Height <= 0 || Image.Width <= 0) throw new ArgumentException($"the image shape {Image} must be positive");
        if (Image.Size != InputDim) throw new ArgumentException($"the image shape {Image} has {Image.Size} values but each row has {InputDim} features");
        var (c, h, w) = Image;
        foreach (var conv in Convolutions)
        {
            if (conv.Channels <= 0 || conv.Kernel <= 0 || conv.Pool <= 0) throw new ArgumentException($"{conv}: channels, kernel and pool must be positive");
            var g = new ConvGeometry(c, h, w, conv.Kernel, conv.Pool);
            if (g.OutHeight < 1 || g.OutWidth < 1) throw new ArgumentException($"{conv}: a {conv.Kernel}×{conv.Kernel} kernel does not fit a {h}×{w} input");
            if (g.PooledHeight < 1 || g.PooledWidth < 1) throw new ArgumentException($"{conv}: {conv.Pool}×{conv.Pool} pooling does not fit its {g.OutHeight}×{g.OutWidth} output");
            (c, h, w) = (conv.Channels, g.PooledHeight, g.PooledWidth);
        }
    }
}
