using System.Text.Json;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Influence.Reports;

/// <summary>
/// A study grid as the user writes it (YAML, or JSON for a .json file), with snake_case keys. The
/// grid is depths × widths × weight_decays × dampings × seeds; every configuration is one LOO study
/// with the same data, removal set, retrain modes and test points. Relative paths are relative to
/// the spec file.
/// </summary>
public sealed class StudySpec
{
    public string Name { get; set; } = "study";
    public string Train { get; set; } = "";
    public string Test { get; set; } = "";
    public string? TrainLabels { get; set; }
    public string? TestLabels { get; set; }
    public double PixelScale { get; set; } = 1;
    /// <summary>logreg or mlp.</summary>
    public string Model { get; set; } = "mlp";
    public string Activation { get; set; } = "tanh";
    public string WeightDecayOn { get; set; } = "all";
    public string Dtype { get; set; } = "float64";
    /// <summary>Hidden layers (MLP); ignored for logreg.</summary>
    public int[] Depths { get; set; } = [1];
    public int[] Widths { get; set; } = [8];
    public double[] WeightDecays { get; set; } = [1e-3];
    public int[] Seeds { get; set; } = [0];
    public string Method { get; set; } = "exact";
    /// <summary>
    /// The damping axis: numbers ≥ 0 or auto (δ = 0 where H is positive definite and not near
    /// singular, else from its extreme eigenvalues). The influence and the PBRF retrains use the same δ.
    /// </summary>
    public string[] Dampings { get; set; } = ["auto"];
    /// <summary>The single damping of older specs: refused with a pointer to <see cref="Dampings"/>.</summary>
    public string? Damping { get; set; }
    public string Remove { get; set; } = "all";
    public string[] Retrain { get; set; } = ["warm", "cold"];
    public string TestIndices { get; set; } = "0-4";
    public int NoiseSeeds { get; set; }
    public int Shards { get; set; } = 2;

    /// <param name="Damping">As written in the spec: a number or auto.</param>
    public sealed record Point(string Label, int Depth, int Width, double WeightDecay, string Damping, int Seed);

    public static StudySpec Load(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{path}: study spec not found");
        var text = File.ReadAllText(path);
        StudySpec spec;
        try
        {
            spec = path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                ? JsonSerializer.Deserialize<StudySpec>(text, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow })!
                : new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build().Deserialize<StudySpec>(text);
        }
        catch (Exception e) when (e is JsonException or YamlDotNet.Core.YamlException)
        {
            throw new ArgumentException($"{path}: {e.Message}", e);
        }
        if (spec is null) throw new ArgumentException($"{path}: the spec is empty");
        // The name becomes part of the study's job id and so of store keys: one plain segment.
        if (!Influence.Core.Safety.StoreKeys.IsJobId(spec.Name) || spec.Name.Length > 64)
            throw new ArgumentException($"{path}: name '{Influence.Core.Safety.Echo.Cap(spec.Name)}' must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string Resolve(string p) => Path.IsPathRooted(p) ? p : Path.GetFullPath(Path.Combine(dir, p));
        if (string.IsNullOrWhiteSpace(spec.Train) || string.IsNullOrWhiteSpace(spec.Test)) throw new ArgumentException($"{path}: 'train' and 'test' are required");
        spec.Train = Resolve(spec.Train);
        spec.Test = Resolve(spec.Test);
        if (spec.TrainLabels is not null) spec.TrainLabels = Resolve(spec.TrainLabels);
        if (spec.TestLabels is not null) spec.TestLabels = Resolve(spec.TestLabels);
        if (spec.Model is not ("logreg" or "mlp")) throw new ArgumentException($"{path}: model must be logreg or mlp, not '{spec.Model}'");
        if (spec.Model == "mlp" && (spec.Depths.Length == 0 || spec.Widths.Length == 0 || spec.Depths.Any(d => d < 1) || spec.Widths.Any(w => w < 1)))
            throw new ArgumentException($"{path}: an MLP study needs depths ≥ 1 and widths ≥ 1");
        if (spec.WeightDecays.Length == 0 || spec.Seeds.Length == 0) throw new ArgumentException($"{path}: weight_decays and seeds must not be empty");
        if (spec.Damping is not null) throw new ArgumentException($"{path}: 'damping' is now the grid's axis 'dampings', a list of numbers ≥ 0 or auto, e.g. dampings: [0, auto, 1.0e-3]");
        if (spec.Dampings.Length == 0) throw new ArgumentException($"{path}: dampings must not be empty (auto, the default, if omitted)");
        foreach (var d in spec.Dampings)
        {
            var (value, auto) = Influence.Core.Jobs.ScoreSettings.ParseDamping(d ?? "", $"{path}: dampings");
            if (!auto && !(value >= 0 && double.IsFinite(value))) throw new ArgumentException($"{path}: dampings must be numbers ≥ 0 or auto, not {d}");
        }
        spec.Dampings = spec.Dampings.Select(d => d.Trim().ToLowerInvariant()).ToArray();
        return spec;
    }

    /// <summary>The configurations of the grid, in a stable order.</summary>
    public IReadOnlyList<Point> Grid()
    {
        var points = new List<Point>();
        var shapes = Model == "logreg" ? [(0, 0)] : Depths.SelectMany(d => Widths.Select(w => (d, w))).ToArray();
        foreach (var (d, w) in shapes)
            foreach (var l2 in WeightDecays)
                foreach (var damping in Dampings)
                    foreach (var seed in Seeds)
                        points.Add(new Point((Model == "logreg" ? $"logreg l2={l2:G3}" : $"depth={d} width={w} l2={l2:G3}") + $" damping={damping} seed={seed}", d, w, l2, damping, seed));
        return points;
    }
}
