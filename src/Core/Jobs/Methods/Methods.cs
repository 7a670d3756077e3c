namespace Influence.Core.Jobs;

/// <summary>
/// The influence estimators a score job can use: one list that the command line (`influence
/// methods`, --method and its help), the pipeline, compare-methods and bench read, and a test holds
/// the docs' table to. Adding a method is one class deriving from <see cref="InfluenceMethod"/> and
/// one line here (its name constant too, for tests and callers that name it).
/// </summary>
public static class Methods
{
    public const string Exact = "exact", Cg = "cg", Lissa = "lissa", Arnoldi = "arnoldi", Kfac = "kfac", Ekfac = "ekfac",
        TracIn = "tracin", GradDot = "grad-dot", GradCos = "grad-cos", Trak = "trak", NewtonStep = "newton-step", NewtonStepLinear = "newton-step-linear";

    /// <summary>Every method, in the order the docs and --help list them.</summary>
    public static readonly IReadOnlyList<InfluenceMethod> All =
    [
        new ExactMethod(),
        new CgMethod(),
        new ArnoldiMethod(),
        new LissaMethod(),
        new KroneckerMethod(eigenvalueCorrected: false),
        new KroneckerMethod(eigenvalueCorrected: true),
        new TrakMethod(),
        new GradientSimilarityMethod(GradientSimilarityMethod.Kind.TracIn),
        new GradientSimilarityMethod(GradientSimilarityMethod.Kind.Dot),
        new GradientSimilarityMethod(GradientSimilarityMethod.Kind.Cosine),
        new NewtonStepMethod(linearised: false),
        new NewtonStepMethod(linearised: true),
    ];

    public static readonly IReadOnlyList<string> Names = All.Select(m => m.Name).ToArray();

    private static readonly Dictionary<string, InfluenceMethod> ByName = All.ToDictionary(m => m.Name);

    public static bool Exists(string name) => ByName.ContainsKey(name);

    /// <summary>The method of that name; ArgumentException naming the choices otherwise.</summary>
    public static InfluenceMethod Get(string name) => ByName.TryGetValue(name, out var method)
        ? method
        : throw new ArgumentException($"--method must be one of {string.Join(", ", Names)}, not '{Safety.Echo.Cap(name)}'");
}
