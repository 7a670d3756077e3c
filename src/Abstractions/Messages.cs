using Influence.Core.Jobs;
using Influence.Core.Loo;

namespace Influence.Abstractions;

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
public sealed record JobStatus
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
    /// <summary>Failed on its input (data, settings, files): the user's to fix, and the client exits 2, not 1.</summary>
    [Id(11)] public bool InputRejected { get; init; }

    public bool IsFinished => Phase is JobPhase.Completed or JobPhase.Failed or JobPhase.Cancelled;
}

/// <summary>A unit of work for a shard grain: one stage over rows [Start, End) of the training set.</summary>
[GenerateSerializer, Immutable]
public sealed class ShardAssignment
{
    /// <summary>The job; its settings are in the store (jobs/ID/settings.json, written by the coordinator).</summary>
    [Id(0)] public required string JobId { get; init; }
    /// <summary>"score", "curvature_product", or one of the method's own stages (Core's InfluenceMethod.RunStage).</summary>
    [Id(2)] public required string Stage { get; init; }
    [Id(3)] public int ShardIndex { get; init; }
    [Id(4)] public int Start { get; init; }
    [Id(5)] public int End { get; init; }
    /// <summary>The round of a repeated stage (curvature products).</summary>
    [Id(6)] public int Round { get; init; }
}

/// <summary>A unit of work on a worker grain (a shard's stage, a retrain unit), as the worker sees it; Idle: it has no such unit (never started, or lost when its silo stopped).</summary>
public enum UnitState { Idle, Running, Done, Failed }

/// <summary>A shard's progress, and when done, its result (large results go to the artifact store).</summary>
[GenerateSerializer, Immutable]
public sealed class ShardReport
{
    [Id(0)] public UnitState State { get; init; }
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

/// <summary>A leave-one-out study's settings, and how many of its units each silo runs at once.</summary>
[GenerateSerializer, Immutable]
public sealed record LooJobRequest
{
    [Id(0)] public required LooSettings Settings { get; init; }
    /// <summary>Units of work running at once on each silo (--parallel): how the study runs, not what it computes, so a resume may change it.</summary>
    [Id(1)] public int ParallelPerSilo { get; init; } = 1;
}

/// <summary>An `influence correct` job's settings, and how many of its units each silo runs at once.</summary>
[GenerateSerializer, Immutable]
public sealed record CorrectJobRequest
{
    [Id(0)] public required Influence.Core.Correction.CorrectSettings Settings { get; init; }
    /// <summary>Units running at once on each silo (--parallel).</summary>
    [Id(1)] public int ParallelPerSilo { get; init; } = 1;
}

/// <summary>An `influence fading` job's settings, and how many of its units each silo runs at once.</summary>
[GenerateSerializer, Immutable]
public sealed record FadingJobRequest
{
    [Id(0)] public required Influence.Core.Fading.FadingSettings Settings { get; init; }
    /// <summary>Units running at once on each silo (--parallel).</summary>
    [Id(1)] public int ParallelPerSilo { get; init; } = 1;
}

/// <summary>One unit of a study's frozen plan, for a worker grain.</summary>
[GenerateSerializer, Immutable]
public sealed class RetrainAssignment
{
    /// <summary>The study; its settings and plan are in the store (jobs/ID/loo/).</summary>
    [Id(0)] public required string JobId { get; init; }
    [Id(2)] public int UnitId { get; init; }
    /// <summary>The job's kind: a LOO study's retrains, or a correct job's fine-tuning runs.</summary>
    [Id(3)] public ShortTrainingKind Kind { get; init; } = ShortTrainingKind.Loo;
}

/// <summary>The jobs whose units are many short trainings, run by the same worker grains.</summary>
public enum ShortTrainingKind { Loo, Correct, Fading }

[GenerateSerializer, Immutable]
public sealed class RetrainReport
{
    [Id(0)] public UnitState State { get; init; }
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
    /// <summary>The damping as the spec gave it (a number or auto); the δ used is in the row's summary.</summary>
    [Id(6)] public string DampingGiven { get; init; } = "auto";
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
