using System.Text.Json.Serialization;
using Influence.Core.Jobs;

namespace Influence.Core.Correction;

/// <summary>
/// How the influence-selected examples are used (Schioppa et al. 2023, "correction"): descent on
/// the loss of the top proponents, ascent on the loss of the top opponents, or both at once.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter))]
public enum CorrectDirection { Proponents, Opponents, Both }

/// <summary>
/// The ways of choosing the k training examples a mispredicted test point is fine-tuned on: the
/// method's influence, and the selections a skeptic would propose instead.
/// </summary>
public static class Selections
{
    /// <summary>Top-k by the job's --method (proponents, opponents or both: <see cref="CorrectDirection"/>).</summary>
    public const string Influence = "influence";
    /// <summary>Top-k by ∇L(z_j)·∇L(z_test) at θ̂ (the influence with H = I), in the same direction.</summary>
    public const string GradDot = "grad-dot";
    /// <summary>k random training examples (one draw per seed).</summary>
    public const string Random = "random";
    /// <summary>k random training examples of the target's true class (one draw per seed).</summary>
    public const string RandomClass = "random-class";
    /// <summary>The k training examples of the target's true class nearest to it in input space (Euclidean).</summary>
    public const string NearestClass = "nearest-class";
    /// <summary>The target itself with its true label: an upper bound, the same for every k.</summary>
    public const string Self = "self";

    public static readonly IReadOnlyList<string> All = [Influence, GradDot, Random, RandomClass, NearestClass, Self];

    /// <summary>Selections that draw at random: one run per seed; the others run once.</summary>
    public static bool IsSeeded(string selection) => selection is Random or RandomClass;

    /// <summary>Selections whose examples are followed in the job's direction (the rest are fine-tuned by descent).</summary>
    public static bool FollowsDirection(string selection) => selection is Influence or GradDot;
}

/// <summary>
/// An `influence correct` job: the score job's settings (model, data, --method, test points) and the
/// grid of fine-tuning runs: every mispredicted test point × selection × k × learning rate (× seed
/// for the random selections), each run recorded after each of <see cref="Steps"/>.
/// </summary>
public sealed record CorrectSettings
{
    public const int MaxK = 10_000;
    public const int MaxSteps = 100_000;
    public const int MaxSeeds = 100;

    public required ScoreSettings Score { get; init; }
    public int[] K { get; init; } = [1, 5, 10, 50];
    public int[] Steps { get; init; } = [1, 5, 10];
    public double[] LearningRates { get; init; } = [0.1];
    public CorrectDirection Direction { get; init; } = CorrectDirection.Proponents;
    public string[] Selections { get; init; } = [.. Correction.Selections.All];
    /// <summary>Draws of each random selection.</summary>
    public int Seeds { get; init; } = 3;
    /// <summary>Mispredicted test points per unit of work.</summary>
    public int TargetsPerUnit { get; init; } = 1;

    /// <summary>The score job that ranks the training examples: dense float64 influence (test points × training rows).</summary>
    [JsonIgnore] public ScoreSettings ScoreJob => Score with { Dense = DenseOutput.Float64 };

    /// <summary>Whether grad-dot needs a score job of its own (it is the job's method already, or not selected).</summary>
    [JsonIgnore] public bool NeedsGradDotJob => Selections.Contains(Correction.Selections.GradDot) && Score.Method != Methods.GradDot;

    /// <summary>The grad-dot score job: the same model and θ̂ (the main job's checkpoint is given to it), no curvature.</summary>
    public ScoreSettings GradDotJob(string checkpoint) => ScoreJob with { Method = Methods.GradDot, Damping = 0, AutoDamping = false, Checkpoint = checkpoint };

    [JsonIgnore] public int MaxStep => Steps.Max();

    public void Validate()
    {
        static string N(string property) => SettingError.Name(property);
        Score.Validate();
        if (K.Length == 0 || K.Any(k => k < 1 || k > MaxK)) throw new SettingError($"{N(nameof(K))} must list sizes from 1 to {MaxK:N0}");
        if (Steps.Length == 0 || Steps.Any(s => s < 1 || s > MaxSteps)) throw new SettingError($"{N(nameof(Steps))} must list step counts from 1 to {MaxSteps:N0}");
        if (LearningRates.Length == 0 || LearningRates.Any(r => !(r > 0) || double.IsInfinity(r))) throw new SettingError($"{N("FineTuneLr")} must list positive learning rates");
        if (K.Distinct().Count() != K.Length || Steps.Distinct().Count() != Steps.Length || LearningRates.Distinct().Count() != LearningRates.Length)
            throw new SettingError($"{N(nameof(K))}, {N(nameof(Steps))} and {N("FineTuneLr")} must not repeat a value");
        if (Selections.Length == 0) throw new SettingError($"{N(nameof(Selections))} selects nothing; choose from {string.Join(", ", Correction.Selections.All)}");
        foreach (var s in Selections)
            if (!Correction.Selections.All.Contains(s))
                throw new SettingError($"{N(nameof(Selections))}: '{Safety.Echo.Cap(s)}' is not one of {string.Join(", ", Correction.Selections.All)}");
        if (Selections.Distinct().Count() != Selections.Length) throw new SettingError($"{N(nameof(Selections))} names a selection twice");
        if (Seeds < 1 || Seeds > MaxSeeds) throw new SettingError($"{N("SelectionSeeds")} must be from 1 to {MaxSeeds}, not {Seeds}");
        if (TargetsPerUnit < 1) throw new SettingError($"{N(nameof(TargetsPerUnit))} must be ≥ 1");
        if (Score.Method == Methods.GradCos)
            throw new SettingError($"{N("Method")} grad-cos ranks by angle only; use grad-dot (or a curvature method) to select examples to fine-tune on");
    }
}

/// <summary>One unit of work: the runs of a few mispredicted test points (positions in the plan's targets).</summary>
public sealed record CorrectUnit(int Id, int[] Targets);

/// <summary>The frozen plan: the mispredicted test points among the requested ones, in units.</summary>
/// <param name="Targets">Test indices mispredicted at θ̂.</param>
/// <param name="Positions">Each target's row in the score job's influence matrix (its position in --test-indices).</param>
public sealed record CorrectPlan(int TrainCount, int TestCount, int[] Targets, int[] Positions, int RunsPerTarget, CorrectUnit[] Units)
{
    public int TaskCount => Targets.Length * RunsPerTarget;
}
