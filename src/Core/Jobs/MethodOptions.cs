using Influence.Core.Hessians;
using Influence.Core.Training;

namespace Influence.Core.Jobs;

/// <summary>
/// Parameters of the inverse-curvature estimators (summary.json reports those the chosen method reads).
/// Defaults follow the papers' usual choices scaled to this machine.
/// </summary>
public sealed record MethodOptions
{
    /// <summary>Hessian or generalised Gauss-Newton for the iterative methods (cg, lissa, arnoldi).</summary>
    public Curvature Curvature { get; init; } = Curvature.Hessian;
    /// <summary>CG: stop a column at ‖r‖ ≤ tolerance·‖b‖.</summary>
    public double CgTolerance { get; init; } = 1e-6;
    /// <summary>CG: iteration cap (one round of distributed products each).</summary>
    public int CgMaxIterations { get; init; } = 200;
    /// <summary>Arnoldi: Krylov dimension n (one distributed product per step); also the length of the damping choice's runs.</summary>
    public int ArnoldiIterations { get; init; } = 60;
    /// <summary>Arnoldi: eigenpairs kept (k ≤ n).</summary>
    public int ArnoldiTop { get; init; } = 30;
    /// <summary>LiSSA: recursion depth, repeats (one shard task each), rows per product, scale (0 = 3·(λ_max + δ) from Arnoldi).</summary>
    public int LissaDepth { get; init; } = 1000;
    public int LissaRepeats { get; init; } = 4;
    public int LissaBatch { get; init; } = 64;
    public double LissaScale { get; init; }
    /// <summary>K-FAC / EK-FAC: labels of the Fisher's output gradients.</summary>
    public FisherLabels FisherLabels { get; init; } = FisherLabels.Sampled;
    /// <summary>TRAK: the projection's dimension k and kind (seeded by <see cref="MethodSeed"/>).</summary>
    public int ProjectionDim { get; init; } = 1024;
    public Scoring.ProjectionKind Projection { get; init; } = Scoring.ProjectionKind.Rademacher;
    /// <summary>
    /// Rank of each preconditioned query's per-layer block in the scoring stage (0 = exact):
    /// Kronfluence's low-rank query gradients, for many queries against large layers.
    /// </summary>
    public int QueryRank { get; init; }
    /// <summary>cg, lissa: solve (H + δI)x = ∇L(z) for every training example too, for its self-influence (N more solves).</summary>
    public bool SolveSelfInfluence { get; init; }
    /// <summary>newton-step on a network: the curvature whose inverse each row's Woodbury step updates (auto: the exact Hessian up to its size limit, EK-FAC beyond).</summary>
    public NewtonInverse NewtonInverse { get; init; } = NewtonInverse.Auto;
    /// <summary>Seed of Arnoldi's start vector, LiSSA's batches, the sampled Fisher labels and TRAK's projection.</summary>
    public int MethodSeed { get; init; }

    public void Validate()
    {
        static string N(string property) => SettingError.Name(property);
        if (!(CgTolerance > 0 && CgTolerance < 1)) throw new SettingError($"{N(nameof(CgTolerance))} must be in (0, 1), not {CgTolerance}");
        if (CgMaxIterations < 1) throw new SettingError($"{N(nameof(CgMaxIterations))} must be ≥ 1, not {CgMaxIterations}");
        if (ArnoldiIterations < 2) throw new SettingError($"{N(nameof(ArnoldiIterations))} must be ≥ 2, not {ArnoldiIterations}");
        if (ArnoldiTop < 1 || ArnoldiTop > ArnoldiIterations) throw new SettingError($"{N(nameof(ArnoldiTop))} must be in 1..{ArnoldiIterations} ({N(nameof(ArnoldiIterations))}), not {ArnoldiTop}");
        if (LissaDepth < 1 || LissaRepeats < 1 || LissaBatch < 1) throw new SettingError($"{N(nameof(LissaDepth))}, {N(nameof(LissaRepeats))} and {N(nameof(LissaBatch))} must be ≥ 1");
        if (QueryRank < 0) throw new SettingError($"{N(nameof(QueryRank))} must be ≥ 0 (0 = exact queries), not {QueryRank}");
        if (ProjectionDim < 1) throw new SettingError($"{N(nameof(ProjectionDim))} must be ≥ 1, not {ProjectionDim}");
        if (!(LissaScale >= 0) || double.IsInfinity(LissaScale)) throw new SettingError($"{N(nameof(LissaScale))} must be a finite number ≥ 0 (0 = automatic), not {LissaScale}");
    }
}

/// <summary>The inverse curvature newton-step updates by Woodbury on a network (logistic regression always has its exact Hessian).</summary>
public enum NewtonInverse
{
    /// <summary>The exact Hessian up to <see cref="ExactHessian.MaxParameters"/> parameters, EK-FAC beyond.</summary>
    Auto,
    /// <summary>The exact Hessian (P ≤ <see cref="ExactHessian.MaxParameters"/>).</summary>
    Exact,
    /// <summary>EK-FAC's Kronecker-factored Fisher plus λ and δ, per layer (any size).</summary>
    Ekfac,
}

/// <summary>How the score job trains θ̂: full batch to a tight optimum (influence functions' assumption), or minibatch SGD/Adam with checkpoints (TracIn's).</summary>
public sealed record TrainingChoice
{
    /// <summary>null: full-batch L-BFGS (+ Newton where P allows).</summary>
    public Optimizer? Optimizer { get; init; }
    public double LearningRate { get; init; } = 0.05;
    public int Epochs { get; init; } = 20;
    /// <summary>Minibatch size.</summary>
    public int TrainBatch { get; init; } = 64;
    /// <summary>Keep θ every this many epochs (and the last).</summary>
    public int CheckpointEvery { get; init; } = 5;

    /// <summary>The command-line word of an optimiser choice (null is full-batch L-BFGS).</summary>
    public static string Word(Optimizer? optimizer) => optimizer is { } o ? SettingsJson.Word(o) : "lbfgs";

    public MinibatchOptions ToMinibatch(int seed) => new(Optimizer ?? Training.Optimizer.Sgd, LearningRate, Epochs, TrainBatch, seed, CheckpointEvery);

    public void Validate()
    {
        if (Optimizer is null) return;
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate))
            throw new SettingError($"{SettingError.Name(nameof(LearningRate))} must be a finite positive number, not {LearningRate}");
        if (Epochs < 1 || TrainBatch < 1 || CheckpointEvery < 1)
            throw new SettingError($"{SettingError.Name(nameof(Epochs))}, {SettingError.Name(nameof(TrainBatch))} and {SettingError.Name(nameof(CheckpointEvery))} must be ≥ 1");
    }

    public string Describe() => Optimizer is null
        ? "full-batch L-BFGS to a tight optimum"
        : $"{Word(Optimizer)}, lr {LearningRate}, {Epochs} epochs, batch {TrainBatch}, checkpoint every {CheckpointEvery}";
}
