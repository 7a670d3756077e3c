using System.Text.Json;
using System.Text.Json.Nodes;

namespace Influence.Core.Jobs;

/// <summary>
/// summary.json of a score job: written once by <see cref="ScoreOutputs"/> and read back as this
/// record by everything that needs it (the CLI's summary, compare-methods, the LOO report, the study
/// table), with the outputs' one naming (<see cref="SettingsJson.Outputs"/>).
/// </summary>
/// <param name="Settings">The job's settings in their one JSON form.</param>
/// <param name="MethodOptions">The method options the method read (the others are left out).</param>
/// <param name="Method">The method's report (<see cref="Jobs.MethodReport"/>: damping, eigenvalues, details, warnings).</param>
/// <param name="SelfInfluence">"self_influence.csv", or why there is none.</param>
/// <param name="InfluenceCsv">"influence.csv", or why it was not written (too many pairs, or off).</param>
public sealed record ScoreSummary(
    string JobId,
    string Conventions,
    ScoreSettings Settings,
    JsonObject MethodOptions,
    ScoreSummary.ModelPart Model,
    ScoreSummary.TrainingPart Training,
    ScoreSummary.CurvaturePart Curvature,
    IReadOnlyList<string> DataWarnings,
    JsonObject Method,
    string SelfInfluence,
    string InfluenceCsv,
    ScoreSummary.ScoringPart Scoring,
    IReadOnlyDictionary<string, double> TimingsSeconds,
    IReadOnlyList<ShardRun> Shards)
{
    /// <param name="FlatDirection">What the model's flat direction is and how influence treats it, or "none".</param>
    public sealed record ModelPart(string Description, long Parameters, int Classes, string FlatDirection);

    public sealed record TrainingPart(double Objective, double GradientNorm, int LbfgsIterations, int NewtonIterations,
        double TrainAccuracy, double TestAccuracy, double TrainMeanLoss, double TestMeanLoss, int TrainExamples, int TestExamples);

    /// <summary>The curvature the method preconditioned with: the Hessian, a Gauss-Newton, a Fisher, or TRAK's projected Gram.</summary>
    /// <param name="DampingGiven">"auto", or the damping asked for.</param>
    /// <param name="EigenvaluesOf">Which matrix the eigenvalues are of.</param>
    public sealed record CurvaturePart(double? MinEigenvalue, double? MaxEigenvalue, double Damping, string DampingGiven, bool? PositiveDefinite, string EigenvaluesOf);

    /// <summary>
    /// Training examples scored per second against all queries, beside a plain forward+backward over
    /// the same rows and the same-shape matrix product (the flops of the pairs); the pairs' rate
    /// leaves out the time spent on self-influence, which is reported apart.
    /// </summary>
    public sealed record ScoringPart(int Queries, long Examples, double Seconds, double? ExamplesPerSecond, double? ForwardBackwardExamplesPerSecond,
        double? RatioToForwardBackward, int QueryPasses, double SelfInfluenceSeconds, double? PairsExamplesPerSecond, double? GemmExamplesPerSecond, double? RatioToGemm);

    public MethodReport MethodReport() => Jobs.MethodReport.FromJson(Method);

    public void Write(Stream stream) => JsonSerializer.Serialize(stream, this, SettingsJson.Outputs);

    public static ScoreSummary Read(Stream stream, string source) => SettingsJson.ReadOutput<ScoreSummary>(stream, source);

    public static ScoreSummary Read(string path)
    {
        using var s = File.OpenRead(path);
        return Read(s, path);
    }
}
