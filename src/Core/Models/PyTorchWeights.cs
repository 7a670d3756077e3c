using System.Collections;
using System.Globalization;
using Influence.Core.Safety;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Influence.Core.Models;

/// <summary>
/// The parameters of a model trained in PyTorch, as this project's flat θ, and back.
///
/// A state_dict (<c>torch.save(model.state_dict(), "m.pt")</c>, or the same tensors as
/// <c>.safetensors</c>) names each layer's tensors PREFIX.weight and PREFIX.bias. The layers of
/// the <see cref="ModelSpec"/> (convolutions, then Linear layers, then the head) take the prefixes
/// in natural order (numeric parts compared as numbers: nn.Sequential's 0, 2, 4, …, 10), or in the
/// order of an explicit list (<c>--weights-map fc1,fc2,out</c>). PyTorch's layouts are this
/// project's: Linear weight Out × In, Conv2d weight Out × C × k × k, flattening C × H × W.
/// Every mismatch (a tensor missing or left over, a shape, a dtype) is refused, naming the tensor.
/// </summary>
public static class PyTorchWeights
{
    /// <summary>θ (float64) from a state_dict file; <paramref name="shown"/> names the file in errors.</summary>
    public static double[] Load(string path, string shown, ModelSpec spec, IReadOnlyList<string>? layerPrefixes = null)
    {
        var tensors = Read(path, shown, spec);
        try { return ToTheta(tensors, shown, spec, layerPrefixes); }
        finally { foreach (var t in tensors.Values) t.Dispose(); }
    }

    /// <summary>
    /// A file larger than this cannot be the model's state_dict: every parameter in float64, twice
    /// over, and 16 MB of header and pickle framing. Checked before anything is parsed.
    /// </summary>
    public static long MaxFileBytes(ModelSpec spec) => 16 * spec.ParameterCount + (16L << 20);

    /// <summary>The named tensors of a .safetensors or a torch.save (.pt, .pth, .bin) file, in the file's order.</summary>
    public static Dictionary<string, Tensor> Read(string path, string shown, ModelSpec spec)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"--weights {shown}: file not found");
        if (info.Length > MaxFileBytes(spec))
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                $"--weights {shown}: {info.Length:N0} bytes, more than a state_dict of {spec.Describe()} ({spec.ParameterCount:N0} parameters) can hold"));
        string extension = info.Extension.ToLowerInvariant();
        try
        {
            if (extension == ".safetensors") return Safetensors.LoadStateDict(path);
            if (extension is ".pt" or ".pth" or ".bin")
            {
                var table = PyTorchUnpickler.UnpickleStateDict(path);
                var result = new Dictionary<string, Tensor>();
                foreach (DictionaryEntry e in table)
                {
                    string name = e.Key as string ?? throw new InvalidDataException($"--weights {shown}: a key that is not a name ({Echo.Cap(e.Key?.ToString() ?? "null", 40)})");
                    result[name] = e.Value as Tensor
                        ?? throw new InvalidDataException($"--weights {shown}: '{Echo.Cap(name, 80)}' is not a tensor: save model.state_dict(), not the model or a training checkpoint");
                }
                return result;
            }
        }
        catch (Exception e) when (e is not InvalidDataException and not OutOfMemoryException)
        {
            throw new InvalidDataException($"--weights {shown}: not a readable {(extension == ".safetensors" ? "safetensors" : "torch.save")} file ({Echo.Cap(e.Message, 160)})");
        }
        throw new InvalidDataException($"--weights {shown}: unknown extension '{Echo.Cap(info.Extension, 20)}': .safetensors, or .pt/.pth/.bin from torch.save(model.state_dict(), …)");
    }

    /// <summary>θ from named tensors, every tensor checked against the layer it fills.</summary>
    public static double[] ToTheta(IReadOnlyDictionary<string, Tensor> tensors, string shown, ModelSpec spec, IReadOnlyList<string>? layerPrefixes = null)
    {
        var layers = spec.Layers;
        var prefixes = layerPrefixes ?? DefaultPrefixes(tensors.Keys);
        if (prefixes.Count != layers.Count)
            throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                $"--weights {shown}: {prefixes.Count} layers ({Echo.Cap(string.Join(", ", prefixes), 200)}), but {spec.Describe()} has {layers.Count} ({string.Join(", ", layers.Select(Describe))}){(layerPrefixes is null ? "; --weights-map PREFIX,… names them in order" : "")}"));
        var theta = new double[spec.ParameterCount];
        var used = new HashSet<string>();
        for (int l = 0; l < layers.Count; l++)
        {
            var layer = layers[l];
            long[] weightShape = layer.Conv is { } c ? [layer.Out, c.InChannels, c.Kernel, c.Kernel] : [layer.Out, layer.In];
            Copy(tensors, shown, $"{prefixes[l]}.weight", weightShape, l, layer, theta, layer.WeightOffset);
            Copy(tensors, shown, $"{prefixes[l]}.bias", [layer.Out], l, layer, theta, layer.BiasOffset);
            used.Add($"{prefixes[l]}.weight");
            used.Add($"{prefixes[l]}.bias");
        }
        var extra = tensors.Keys.Where(k => !used.Contains(k)).ToList();
        if (extra.Count > 0)
            throw new InvalidDataException($"--weights {shown}: tensors {spec.Describe()} has no place for: {Echo.Cap(string.Join(", ", extra), 200)}");
        return theta;
    }

    private static void Copy(IReadOnlyDictionary<string, Tensor> tensors, string shown, string name, long[] shape, int index, LayerLayout layer, double[] theta, long offset)
    {
        string where = $"--weights {shown}: '{Echo.Cap(name, 80)}' (layer {index}, {Describe(layer)})";
        if (!tensors.TryGetValue(name, out var t)) throw new InvalidDataException($"{where}: missing");
        if (t.dtype is not (ScalarType.Float32 or ScalarType.Float64))
            throw new InvalidDataException($"{where}: dtype {t.dtype}, not float32 or float64");
        if (!t.shape.SequenceEqual(shape))
            throw new InvalidDataException($"{where}: shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", shape)}]");
        using var values = t.to(ScalarType.Float64).cpu().contiguous();
        var data = values.data<double>().ToArray();
        if (data.Any(v => !double.IsFinite(v))) throw new InvalidDataException($"{where}: holds NaN or infinite values");
        Array.Copy(data, 0, theta, offset, data.Length);
    }

    private static string Describe(LayerLayout layer) => layer.Conv is { } c
        ? $"Conv2d({c.InChannels}, {layer.Out}, {c.Kernel})"
        : $"Linear({layer.In}, {layer.Out})";

    /// <summary>The prefixes of the tensors' names (before .weight/.bias) in natural order.</summary>
    public static IReadOnlyList<string> DefaultPrefixes(IEnumerable<string> names) =>
        names.Select(n => n.EndsWith(".weight", StringComparison.Ordinal) ? n[..^".weight".Length] : n.EndsWith(".bias", StringComparison.Ordinal) ? n[..^".bias".Length] : n)
            .Distinct().Order(NaturalOrder.Instance).ToList();

    /// <summary>
    /// The names nn.Sequential gives this model's layers when it is written as the docs' recipe:
    /// per convolution Conv2d, the activation and (when pooled) MaxPool2d; Flatten after the last
    /// convolution; per hidden width Linear and the activation; the head's Linear.
    /// </summary>
    public static IReadOnlyList<string> SequentialPrefixes(ModelSpec spec)
    {
        var prefixes = new List<string>();
        int index = 0;
        foreach (var conv in spec.Convolutions ?? [])
        {
            prefixes.Add(index.ToString(CultureInfo.InvariantCulture));
            index += conv.Pool > 1 ? 3 : 2;
        }
        if (spec.IsConvolutional) index++; // Flatten
        foreach (var _ in spec.Hidden)
        {
            prefixes.Add(index.ToString(CultureInfo.InvariantCulture));
            index += 2;
        }
        prefixes.Add(index.ToString(CultureInfo.InvariantCulture));
        return prefixes;
    }

    /// <summary>
    /// The nn.Sequential (Python) whose state_dict names are <see cref="SequentialPrefixes"/>, e.g.
    /// "nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))"; .double() for float64 models.
    /// </summary>
    public static string SequentialCode(ModelSpec spec)
    {
        string act = spec.Activation == Activation.Tanh ? "nn.Tanh()" : "nn.ReLU()";
        var parts = new List<string>();
        var layers = spec.Layers;
        for (int l = 0; l < layers.Count; l++)
        {
            var layer = layers[l];
            if (layer.Conv is { } c)
            {
                parts.Add($"nn.Conv2d({c.InChannels}, {layer.Out}, {c.Kernel})");
                parts.Add(act);
                if (c.Pool > 1) parts.Add($"nn.MaxPool2d({c.Pool})");
                if (layers[l + 1].Conv is null) parts.Add("nn.Flatten()");
                continue;
            }
            parts.Add($"nn.Linear({layer.In}, {layer.Out})");
            if (l < layers.Count - 1) parts.Add(act);
        }
        return $"nn.Sequential({string.Join(", ", parts)}){(spec.Precision == Precision.Float64 ? ".double()" : "")}";
    }

    /// <summary>θ as a safetensors state_dict with <see cref="SequentialPrefixes"/>, in the model's precision.</summary>
    public static void Save(Stream stream, ModelSpec spec, double[] theta)
    {
        if (theta.LongLength != spec.ParameterCount) throw new ArgumentException($"θ has {theta.LongLength} values, the model {spec.ParameterCount}");
        var prefixes = SequentialPrefixes(spec);
        var layers = spec.Layers;
        var state = new Dictionary<string, Tensor>();
        try
        {
            for (int l = 0; l < layers.Count; l++)
            {
                var layer = layers[l];
                long[] shape = layer.Conv is { } c ? [layer.Out, c.InChannels, c.Kernel, c.Kernel] : [layer.Out, layer.In];
                state[$"{prefixes[l]}.weight"] = tensor(theta.AsSpan((int)layer.WeightOffset, (int)layer.WeightCount).ToArray(), shape, ScalarType.Float64).to(spec.ScalarType);
                state[$"{prefixes[l]}.bias"] = tensor(theta.AsSpan((int)layer.BiasOffset, layer.Out).ToArray(), [layer.Out], ScalarType.Float64).to(spec.ScalarType);
            }
            Safetensors.SaveStateDict(stream, state, leaveOpen: true);
        }
        finally { foreach (var t in state.Values) t.Dispose(); }
    }

    /// <summary>Dotted names compared part by part, numeric parts as numbers ("layers.10" after "layers.2").</summary>
    private sealed class NaturalOrder : IComparer<string>
    {
        public static readonly NaturalOrder Instance = new();

        public int Compare(string? a, string? b)
        {
            var x = (a ?? "").Split('.');
            var y = (b ?? "").Split('.');
            for (int i = 0; i < Math.Min(x.Length, y.Length); i++)
            {
                int c = long.TryParse(x[i], NumberStyles.None, CultureInfo.InvariantCulture, out var p) && long.TryParse(y[i], NumberStyles.None, CultureInfo.InvariantCulture, out var q)
                    ? p.CompareTo(q)
                    : string.CompareOrdinal(x[i], y[i]);
                if (c != 0) return c;
            }
            return x.Length.CompareTo(y.Length);
        }
    }
}
