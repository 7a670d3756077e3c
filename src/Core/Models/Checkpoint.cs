using System.Text.Json;
using static TorchSharp.torch;

namespace Influence.Core.Models;

/// <summary>A trained model: its spec, flat parameters (float64) and how training ended.</summary>
public sealed record Checkpoint(ModelSpec Spec, double[] Parameters, double Objective, double GradientNorm, int LbfgsIterations, int NewtonIterations, double TrainSeconds)
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    public Tensor Theta(Device device) => tensor(Parameters, dtype: ScalarType.Float64).to(Spec.ScalarType).to(device);

    public void Save(Stream stream) => JsonSerializer.Serialize(stream, this, Json);

    /// <summary>Reads a checkpoint.json, checking that it holds a model spec and one value per parameter (InvalidDataException otherwise).</summary>
    public static Checkpoint Load(Stream stream)
    {
        Checkpoint? c;
        try { c = JsonSerializer.Deserialize<Checkpoint>(stream, Json); }
        catch (JsonException e) { throw new InvalidDataException($"not a checkpoint.json ({Safety.Echo.Cap(e.Message, 200)})"); }
        if (c is null) throw new InvalidDataException("empty checkpoint");
        if (c.Spec is null || c.Spec.Hidden is null) throw new InvalidDataException("not a checkpoint.json: it has no model spec (\"Spec\")");
        try { c.Spec.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"the checkpoint's model spec is not valid: {e.Message}"); }
        if (c.Parameters is null) throw new InvalidDataException("not a checkpoint.json: it has no parameters (\"Parameters\")");
        if (c.Parameters.LongLength != c.Spec.ParameterCount)
            throw new InvalidDataException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the checkpoint holds {c.Parameters.LongLength:N0} parameter values, but its model {c.Spec.Describe()} has {c.Spec.ParameterCount:N0}"));
        return c;
    }

    public static double[] ToArray(Tensor theta) => theta.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();
}
