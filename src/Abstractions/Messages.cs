namespace Influence.Abstractions;

/// <summary>A dataset file as the silos see it (a path on the silo's filesystem or in its artifact store).</summary>
[GenerateSerializer, Immutable]
public sealed record DataSource
{
    [Id(0)] public required string Path { get; init; }
    /// <summary>IDX labels file; null for CSV.</summary>
    [Id(1)] public string? LabelsPath { get; init; }
    /// <summary>Features are divided by this (255 for raw pixels).</summary>
    [Id(2)] public double FeatureScale { get; init; } = 1.0;
}

/// <summary>The model family and its training settings.</summary>
[GenerateSerializer, Immutable]
public sealed class ModelSettings
{
    /// <summary>"logreg", "mlp" or "cnn".</summary>
    [Id(0)] public string Kind { get; init; } = "logreg";
    [Id(1)] public int[] Hidden { get; init; } = [];
    /// <summary>"tanh" or "relu".</summary>
    [Id(2)] public string Activation { get; init; } = "tanh";
    [Id(3)] public double L2 { get; init; } = 1e-3;
    /// <summary>"weights" or "all" (logistic regression always penalises weights only).</summary>
    [Id(4)] public string WeightDecayOn { get; init; } = "weights";
    /// <summary>"float64" or "float32".</summary>
    [Id(5)] public string DType { get; init; } = "float64";
    [Id(6)] public int Seed { get; init; }
    /// <summary>CNN: the convolutions, "CHANNELS:KERNEL[:POOL],…"; null for LeNet's.</summary>
    [Id(7)] public string? Convolutions { get; init; }
    /// <summary>CNN: "CxHxW"; null for one channel, square.</summary>
    [Id(8)] public string? Image { get; init; }
}

/// <summary>Everything a score job needs; the job id is the coordinator grain's key.</summary>
[GenerateSerializer, Immutable]
public sealed record ScoreJobRequest
{
    [Id(0)] public required DataSource Train { get; init; }
    [Id(1)] public required DataSource Test { get; init; }
    [Id(2)] public required ModelSettings Model { get; init; }
    [Id(3)] public string Method { get; init; } = "exact";
    [Id(4)] public double Damping { get; init; }
    /// <summary>0-based rows of the test set to explain.</summary>
    [Id(5)] public required int[] TestIndices { get; init; }
    [Id(6)] public int Shards { get; init; } = 4;
    [Id(7)] public int TopK { get; init; } = 10;
    [Id(8)] public int BatchSize { get; init; } = 512;
    /// <summary>Choose the damping from the curvature's extreme eigenvalues (Damping is then ignored).</summary>
    [Id(9)] public bool AutoDamping { get; init; }
    [Id(10)] public MethodSettings MethodSettings { get; init; } = new();
    [Id(11)] public TrainingSettings Training { get; init; } = new();
    /// <summary>Memory a shard may use for query vectors; larger query sets are scored in passes.</summary>
    [Id(12)] public long MemoryBudgetMb { get; init; } = 2048;
    /// <summary>A trained model (checkpoint.json of an earlier job) to score instead of training one; null trains.</summary>
    [Id(13)] public string? Checkpoint { get; init; }
}

/// <summary>The estimators' parameters (see Core's MethodOptions for their meaning and defaults).</summary>
[GenerateSerializer, Immutable]
public sealed record MethodSettings
{
    /// <summary>"hessian" or "ggn".</summary>
    [Id(0)] public string Curvature { get; init; } = "hessian";
    [Id(1)] public double CgTolerance { get; init; } = 1e-6;
    [Id(2)] public int CgMaxIterations { get; init; } = 200;
    [Id(3)] public int ArnoldiIterations { get; init; } = 60;
    [Id(4)] public int ArnoldiTop { get; init; } = 30;
    [Id(5)] public int LissaDepth { get; init; } = 1000;
    [Id(6)] public int LissaRepeats { get; init; } = 4;
    [Id(7)] public int LissaBatch { get; init; } = 64;
    /// <summary>0 = 3·(λ_max + δ).</summary>
    [Id(8)] public double LissaScale { get; init; }
    /// <summary>"sampled" or "empirical".</summary>
    [Id(9)] public string FisherLabels { get; init; } = "sampled";
    [Id(10)] public int Seed { get; init; }
    [Id(11)] public int ProjectionDim { get; init; } = 1024;
    /// <summary>"rademacher" or "gaussian".</summary>
    [Id(12)] public string Projection { get; init; } = "rademacher";
    /// <summary>cg, lissa: one more solve per training example for its self-influence.</summary>
    [Id(13)] public bool SolveSelfInfluence { get; init; }
    /// <summary>Rank of the preconditioned queries' per-layer blocks when scoring (0 = exact).</summary>
    [Id(14)] public int QueryRank { get; init; }
}

/// <summary>How θ̂ is trained: "lbfgs" (full batch, tight optimum) or "sgd"/"adam" (minibatch, with checkpoints for TracIn).</summary>
[GenerateSerializer, Immutable]
public sealed record TrainingSettings
{
    [Id(0)] public string Optimizer { get; init; } = "lbfgs";
    [Id(1)] public double LearningRate { get; init; } = 0.05;
    [Id(2)] public int Epochs { get; init; } = 20;
    [Id(3)] public int BatchSize { get; init; } = 64;
    [Id(4)] public int CheckpointEvery { get; init; } = 5;
}

public enum JobPhase
{
    Pending,
    Training,
    /// <summary>Curvature summed over shards: Hessians, curvature products, K-FAC factors, LiSSA repeats, TRAK features.</summary>
    Curvature,
    Factorizing,
    Scoring,
    Retraining,
    Writing,
    Completed,
    Failed,
    /// <summary>Stopped by `influence job cancel`; finished units stay in the store (a resume picks them up).</summary>
    Cancelled,
}

/// <summary>What the client polls.</summary>
[GenerateSerializer, Immutable]
public sealed class JobStatus
{
    [Id(0)] public required string JobId { get; init; }
    [Id(1)] public JobPhase Phase { get; init; }
    /// <summary>Units done and total in the current phase (shards, examples).</summary>
    [Id(2)] public long Done { get; init; }
    [Id(3)] public long Total { get; init; }
    [Id(4)] public string Message { get; init; } = "";
    [Id(5)] public string? Error { get; init; }
    /// <summary>Artifact-store prefix of the job's outputs (influence.csv, summary.json, ...).</summary>
    [Id(6)] public string? OutputPrefix { get; init; }
    [Id(7)] public double ElapsedSeconds { get; init; }
    /// <summary>Retraining phase: retrains per second in this run, and the estimated seconds left.</summary>
    [Id(8)] public double Rate { get; init; }
    [Id(9)] public double EtaSeconds { get; init; }
    /// <summary>The silo the coordinator runs on.</summary>
    [Id(10)] public string? Coordinator { get; init; }

    public bool IsFinished => Phase is JobPhase.Completed or JobPhase.Failed or JobPhase.Cancelled;
}

/// <summary>A unit of work for a shard grain: one stage over rows [Start, End) of the training set.</summary>
[GenerateSerializer, Immutable]
public sealed class ShardAssignment
{
    [Id(0)] public required string JobId { get; init; }
    [Id(1)] public required ScoreJobRequest Request { get; init; }
    /// <summary>"score", "curvature_product", or one of the method's own stages (Core's InfluenceMethod.RunStage).</summary>
    [Id(2)] public required string Stage { get; init; }
    [Id(3)] public int ShardIndex { get; init; }
    [Id(4)] public int Start { get; init; }
    [Id(5)] public int End { get; init; }
    /// <summary>The round of a repeated stage (curvature products).</summary>
    [Id(6)] public int Round { get; init; }
}

public enum ShardState { Idle, Running, Done, Failed }

/// <summary>A shard's progress, and when done, its result (large results go to the artifact store).</summary>
[GenerateSerializer, Immutable]
public sealed class ShardReport
{
    [Id(0)] public ShardState State { get; init; }
    [Id(1)] public string? Stage { get; init; }
    [Id(2)] public long Done { get; init; }
    [Id(3)] public long Total { get; init; }
    [Id(4)] public string? Error { get; init; }
    /// <summary>Score stage: per query, the shard's top-k proponents and opponents.</summary>
    [Id(6)] public TopKEntry[][]? Proponents { get; init; }
    [Id(7)] public TopKEntry[][]? Opponents { get; init; }
    [Id(8)] public double Seconds { get; init; }
    /// <summary>The silo that ran it (for placement checks and logs).</summary>
    [Id(9)] public string? Silo { get; init; }
}

[GenerateSerializer, Immutable]
public readonly record struct TopKEntry([property: Id(0)] int TrainIndex, [property: Id(1)] double Influence);

/// <summary>A leave-one-out study: the score job that predicts, and what to remove and retrain.</summary>
[GenerateSerializer, Immutable]
public sealed record LooJobRequest
{
    [Id(0)] public required ScoreJobRequest Score { get; init; }
    /// <summary>all, top:K, bottom:K, random:K[,seed], file:PATH, a '+' union of those, or subsets:M,α[,seed].</summary>
    [Id(1)] public required string Remove { get; init; }
    /// <summary>Any of "warm", "cold", "pbrf".</summary>
    [Id(2)] public string[] Modes { get; init; } = ["warm"];
    [Id(3)] public int NoiseSeeds { get; init; }
    /// <summary>Units of work running at once on each silo.</summary>
    [Id(4)] public int ParallelPerSilo { get; init; } = 1;
    [Id(5)] public int WarmBatch { get; init; } = 200;
    [Id(6)] public int UnitSize { get; init; } = 4;
    [Id(7)] public double? Tolerance { get; init; }
}

/// <summary>One unit of a study's frozen plan, for a worker grain.</summary>
[GenerateSerializer, Immutable]
public sealed class RetrainAssignment
{
    [Id(0)] public required string JobId { get; init; }
    [Id(1)] public required LooJobRequest Request { get; init; }
    [Id(2)] public int UnitId { get; init; }
}

public enum RetrainState { Idle, Running, Done, Failed }

[GenerateSerializer, Immutable]
public sealed class RetrainReport
{
    [Id(0)] public RetrainState State { get; init; }
    [Id(1)] public int UnitId { get; init; }
    [Id(2)] public int Done { get; init; }
    [Id(3)] public int Total { get; init; }
    [Id(4)] public string? Error { get; init; }
    [Id(5)] public string? Silo { get; init; }
    [Id(6)] public double Seconds { get; init; }
}

/// <summary>One configuration of a study grid.</summary>
[GenerateSerializer, Immutable]
public sealed record StudyPoint
{
    [Id(0)] public required string Label { get; init; }
    [Id(1)] public int Depth { get; init; }
    [Id(2)] public int Width { get; init; }
    [Id(3)] public double WeightDecay { get; init; }
    [Id(4)] public int Seed { get; init; }
    [Id(5)] public required LooJobRequest Study { get; init; }
}

/// <summary>A grid of LOO studies run as one job, one table row per configuration.</summary>
[GenerateSerializer, Immutable]
public sealed record StudyJobRequest
{
    [Id(0)] public required string Name { get; init; }
    [Id(1)] public required StudyPoint[] Points { get; init; }
}

/// <summary>A job the cluster knows of (the registry's entry), for `influence cluster status`.</summary>
[GenerateSerializer, Immutable]
public sealed class JobEntry
{
    [Id(0)] public required string JobId { get; init; }
    /// <summary>"score", "loo" or "study".</summary>
    [Id(1)] public required string Kind { get; init; }
    [Id(2)] public DateTime SubmittedUtc { get; init; }
    /// <summary>The coordinator that started this job (a study's LOO jobs, a LOO job's score job), or null for a job the user submitted.</summary>
    [Id(3)] public string? Parent { get; init; }
}
