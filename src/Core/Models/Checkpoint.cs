using System.Text.Json;
using static TorchSharp.torch;

namespace Influence.Core.Models;

/// <summary>A trained model: its spec, flat parameters (float64) and how training ended.</summary>
public sealed record Checkpoint(ModelSpec Spec, double[] Parameters, double Objective, double GradientNorm, int LbfgsIterations, int NewtonIterations, double TrainSeconds)
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    public Tensor Theta(Device device) => tensor(Parameters, dtype: ScalarType.Float64).to(Spec.ScalarType).to(device);

    public void Save(Stream stream) => JsonSerializer.Serialize(stream, this, Json);

    public static Checkpoint Load(Stream stream) =>
        JsonSerializer.Deserialize<Checkpoint>(stream, Json) ?? throw new InvalidDataException("empty checkpoint");

    public static double[] ToArray(Tensor theta) => theta.detach().to(ScalarType.Float64).cpu().data<double>().ToArray();
}
