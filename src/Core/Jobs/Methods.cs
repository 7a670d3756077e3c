namespace Influence.Core.Jobs;

/// <summary>The influence estimators a score job can use.</summary>
public static class Methods
{
    public const string Exact = "exact", Cg = "cg", Lissa = "lissa", Arnoldi = "arnoldi", Kfac = "kfac", Ekfac = "ekfac",
        TracIn = "tracin", GradDot = "grad-dot", GradCos = "grad-cos", Trak = "trak";

    public static readonly string[] All = [Exact, Cg, Lissa, Arnoldi, Kfac, Ekfac, Trak, TracIn, GradDot, GradCos];

    /// <summary>Methods whose inverse comes from distributed curvature products.</summary>
    public static bool UsesProducts(string method) => method is Cg or Lissa or Arnoldi;

    /// <summary>Methods that need the training run's checkpoints.</summary>
    public static bool NeedsCheckpoints(string method) => method == TracIn;

    /// <summary>Whether a method's preconditioner gives every training example's self-influence from its scoring pass.</summary>
    public static bool HasSelfInfluence(string method) => method is not (Cg or Lissa or GradCos);

    /// <summary>Methods whose self-influence needs one solve per training example (given by <see cref="MethodOptions.SolveSelfInfluence"/>).</summary>
    public static bool SolvesSelfInfluence(string method) => method is Cg or Lissa;

    /// <summary>Why a method's output has no self_influence.csv.</summary>
    public static string NoSelfInfluenceReason(string method) => method == GradCos
        ? "not computed: the cosine of a gradient with itself is 1"
        : $"not computed: {method} needs one solve per training example; pass --solve-self-influence";
}
