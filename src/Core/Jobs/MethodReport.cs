using System.Text.Json;
using System.Text.Json.Nodes;

namespace Influence.Core.Jobs;

/// <summary>
/// What a method's preparation found and used: the damping, the curvature's extreme eigenvalues
/// where they were estimated, solver diagnostics, and warnings (indefinite curvature, no
/// convergence, diverged repeats). Written next to the score terms and copied into summary.json.
/// </summary>
public sealed class MethodReport(double damping)
{
    public double Damping { get; set; } = damping;
    public double? LargestEigenvalue { get; set; }
    public double? SmallestEigenvalue { get; set; }
    public List<string> Warnings { get; } = [];
    /// <summary>Method-specific figures: iterations, residuals, eigenvalues kept, repeats.</summary>
    public JsonObject Details { get; private init; } = new();

    public JsonObject ToJson() => new()
    {
        ["damping"] = Damping,
        ["largest_eigenvalue"] = LargestEigenvalue,
        ["smallest_eigenvalue"] = SmallestEigenvalue,
        ["indefinite"] = SmallestEigenvalue is double s ? s < 0 : null,
        ["warnings"] = new JsonArray(Warnings.Select(w => (JsonNode)w).ToArray()),
        ["details"] = Details.DeepClone(),
    };

    public void Save(Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        ToJson().WriteTo(w);
    }

    public static MethodReport Load(Stream stream) => FromJson(JsonNode.Parse(stream)!.AsObject());

    /// <summary>The report from <see cref="ToJson"/> (also summary.json's "method").</summary>
    public static MethodReport FromJson(JsonObject root)
    {
        var report = new MethodReport(root["damping"]!.GetValue<double>())
        {
            LargestEigenvalue = root["largest_eigenvalue"]?.GetValue<double>(),
            SmallestEigenvalue = root["smallest_eigenvalue"]?.GetValue<double>(),
            Details = root["details"]!.DeepClone().AsObject(),
        };
        report.Warnings.AddRange(root["warnings"]!.AsArray().Select(w => w!.GetValue<string>()));
        return report;
    }

    /// <summary>A finite double for JSON (NaN and ±∞ are not JSON numbers).</summary>
    public static JsonNode? Number(double v) => double.IsFinite(v) ? v : null;
}
