using System.Globalization;
using System.Text.Json.Serialization;
using Influence.Core.Jobs;
using Influence.Core.Loo;

namespace Influence.Core.Fading;

/// <summary>
/// An `influence fading` job (Schioppa et al. 2023, Theorem 2): from θ₀ (the score job's model),
/// T steps of plain minibatch SGD (learning rate and batch size: the score settings' --lr and
/// --train-batch; a batch order seeded by --seed, the same in every run) on the full training set,
/// and for each chosen training example j the same steps with j's weight changed by ε. At
/// log-spaced steps: the actual change of each test loss, and its predictions.
/// </summary>
public sealed record FadingSettings
{
    public const int MaxSteps = 1_000_000;

    public required ScoreSettings Score { get; init; }
    /// <summary>The training examples perturbed, as `loo --remove` (single removals only).</summary>
    public string Remove { get; init; } = "random:20,0";
    /// <summary>remove (ε = −1) or upweight:ε.</summary>
    public string Perturb { get; init; } = "remove";
    public int Steps { get; init; } = 1000;
    /// <summary>Perturbed examples per unit of work (they share one baseline trajectory).</summary>
    public int RemovalsPerUnit { get; init; } = 8;

    [JsonIgnore] public RemovalSet Removal => RemovalSet.Parse(Remove);
    [JsonIgnore] public double Epsilon => ParsePerturb(Perturb);
    [JsonIgnore] public double LearningRate => Score.Training.LearningRate;
    [JsonIgnore] public int BatchSize => Score.Training.TrainBatch;

    /// <summary>The score job: θ₀ and the influence predictions at θ₀ (dense float64).</summary>
    [JsonIgnore] public ScoreSettings ScoreJob => Score with { Dense = DenseOutput.Float64 };

    /// <summary>ε of a --perturb text: remove is −1 (the example's weight goes from 1 to 0).</summary>
    public static double ParsePerturb(string text)
    {
        text = text.Trim().ToLowerInvariant();
        if (text == "remove") return -1;
        if (text.StartsWith("upweight:", StringComparison.Ordinal)
            && double.TryParse(text["upweight:".Length..], NumberStyles.Float, CultureInfo.InvariantCulture, out double e) && double.IsFinite(e) && e >= -1)
            return e;
        throw new ArgumentException($"--perturb must be remove or upweight:ε with ε ≥ −1 (e.g. upweight:0.01), not '{Safety.Echo.Cap(text)}'");
    }

    /// <summary>1, 2, 5, 10, 20, 50, … up to <paramref name="steps"/>, and <paramref name="steps"/> itself.</summary>
    public static int[] RecordedSteps(int steps)
    {
        var result = new SortedSet<int>();
        for (long decade = 1; decade <= steps; decade *= 10)
            foreach (int m in new[] { 1, 2, 5 })
                if (decade * m <= steps) result.Add((int)(decade * m));
        result.Add(steps);
        return result.ToArray();
    }

    public void Validate()
    {
        static string N(string property) => SettingError.Name(property);
        Score.Validate();
        if (Removal.IsLds) throw new SettingError($"{N(nameof(Remove))} subsets:… are for LDS; fading perturbs single examples");
        _ = Epsilon;
        if (Steps < 1 || Steps > MaxSteps) throw new SettingError($"{N(nameof(Steps))} must be from 1 to {MaxSteps:N0}, not {Steps}");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new SettingError($"{N("Lr")} must be positive, not {LearningRate}");
        if (BatchSize < 1) throw new SettingError($"{N("TrainBatch")} must be ≥ 1");
        if (RemovalsPerUnit < 1) throw new SettingError($"{N(nameof(RemovalsPerUnit))} must be ≥ 1");
    }
}

/// <summary>A unit of work: perturbed examples that share one baseline trajectory.</summary>
public sealed record FadingUnit(int Id, int[] Items);

/// <summary>The frozen plan.</summary>
public sealed record FadingPlan(int TrainCount, int[] TestIndices, int[] Removed, int[] RecordedSteps, FadingUnit[] Units)
{
    public int TaskCount => Removed.Length;
}

/// <summary>
/// A row of fading.csv: at <see cref="Step"/>, the actual change of the test loss, its predictions
/// (influence at θ₀, TracIn's additive sum along the trajectory, the linearised trajectory with
/// the Hessian term), and ‖θ_t⁽ʲ⁾ − θ_t‖.
/// </summary>
public sealed record FadingRow(int TrainIndex, int TestIndex, int Step, double ActualDelta, double PredictedIf, double PredictedTracin,
    double PredictedLinear, double ParamDistance);
