using System.Text.Json.Serialization;
using Influence.Core.Jobs;

namespace Influence.Core.Loo;

/// <summary>How a removal is retrained (docs/conventions.md): from θ̂, from the original initialisation, or the PBRF from θ̂.</summary>
[JsonConverter(typeof(JsonStringEnumConverter))]
public enum RetrainMode { Warm, Cold, Pbrf }

/// <summary>A leave-one-out study's settings: the score job's, plus what to remove and how to retrain.</summary>
public sealed record LooSettings
{
    public required ScoreSettings Score { get; init; }
    /// <summary>The removal set as the user wrote it (<see cref="RemovalSet.Parse"/>).</summary>
    public required string Remove { get; init; }
    public RetrainMode[] Modes { get; init; } = [RetrainMode.Warm];
    /// <summary>Cold retrains of the unmodified training set with this many other seeds (the noise floor).</summary>
    public int NoiseSeeds { get; init; }
    /// <summary>Warm logistic-regression retrains solved together in one unit of work.</summary>
    public int WarmBatch { get; init; } = 200;
    /// <summary>Other retrains per unit of work.</summary>
    public int UnitSize { get; init; } = 4;
    /// <summary>Target ‖∇F₋ⱼ‖ of every retrain; null: 1e-12 for float64 logistic regression, the trainer's default otherwise.</summary>
    public double? Tolerance { get; init; }

    [JsonIgnore] public RemovalSet Removal => RemovalSet.Parse(Remove);

    /// <summary>The settings of the score job a study runs: <see cref="Score"/>, writing the dense float64 influence.npy the study reads its predictions from.</summary>
    [JsonIgnore] public ScoreSettings ScoreJob => Score with { Dense = DenseOutput.Float64 };

    public void Validate()
    {
        static string N(string property) => SettingError.Name(property);
        Score.Validate();
        var removal = Removal;
        // Modes are --retrain on the command line.
        if (Modes.Length == 0) throw new SettingError($"{N("Retrain")} selects no mode; use warm, cold, both or pbrf");
        if (Modes.Distinct().Count() != Modes.Length) throw new SettingError($"{N("Retrain")} names a mode twice");
        if (NoiseSeeds < 0) throw new SettingError($"{N(nameof(NoiseSeeds))} must be ≥ 0, not {NoiseSeeds}");
        if (NoiseSeeds > 0 && !Modes.Contains(RetrainMode.Cold)) throw new SettingError($"{N(nameof(NoiseSeeds))} needs cold retrains ({N("Retrain")} cold or both): the noise floor is seed-to-seed variation of cold training");
        if (removal.IsLds && Modes.Contains(RetrainMode.Pbrf)) throw new SettingError($"{N(nameof(Remove))} subsets:… (LDS) retrains on subsets; PBRF is defined for single removals");
        if (removal.IsLds && Score.Method is Methods.NewtonStep or Methods.NewtonStepLinear && Score.Options.NewtonInverse == NewtonInverse.Ekfac)
            throw new SettingError($"{N(nameof(Remove))} subsets:… with newton-step: its group prediction updates the exact Hessian, and --newton-inverse ekfac has no group form (use exact, on a network of up to 12,000 parameters)");
        if (WarmBatch < 1 || UnitSize < 1) throw new SettingError($"{N(nameof(WarmBatch))} and {N(nameof(UnitSize))} must be ≥ 1");
        if (Tolerance is { } t && !(t > 0)) throw new SettingError($"{N(nameof(Tolerance))} must be positive, not {t}");
    }
}

/// <summary>What a unit of work retrains: single removals, LDS subsets, or the full set with other seeds.</summary>
[JsonConverter(typeof(JsonStringEnumConverter))]
public enum UnitKind { Removal, Subset, Seed }

/// <summary>
/// A unit of work: retrains of one mode and kind. Items are training indices (Removal), subset
/// numbers (Subset) or seed offsets 1..S (Seed). Its id keys its result in the store, so a unit
/// finished once is never run again (retries and resumes are idempotent).
/// </summary>
public sealed record LooUnit(int Id, RetrainMode Mode, UnitKind Kind, int[] Items);

/// <summary>The frozen plan of a study, persisted before any retrain so that a resume redoes nothing.</summary>
public sealed record LooPlan(int TrainCount, int[] TestIndices, int[] Removed, LdsSubsets? Subsets, int NoiseSeeds, LooUnit[] Units)
{
    public int TaskCount => Units.Sum(u => u.Items.Length);
}
