using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;

namespace Influence.Core.Jobs;

/// <summary>Where a method's self-influence s(z) = ∇L(z)ᵀ P ∇L(z) comes from.</summary>
public enum SelfInfluenceSource
{
    /// <summary>From the preconditioner the scoring pass already holds (a factorisation, eigenpairs, factors, a norm).</summary>
    Preconditioner,
    /// <summary>One more solve per training example, when asked (--solve-self-influence): the method has a solver, not a matrix.</summary>
    Solves,
    /// <summary>Not defined for the method (<see cref="InfluenceMethod.NoSelfInfluenceReason"/> says why).</summary>
    None,
}

/// <summary>
/// One influence estimator, end to end: its name and capabilities, the shard stages and
/// coordinator steps that turn the trained model into score terms (<see cref="PrepareAsync"/>),
/// what a shard scores with (<see cref="SelfInfluence"/>, <see cref="ScoreRows"/>), and what
/// summary.json reports of it. Every method is one instance in <see cref="Methods.All"/>, which the
/// command line (`influence methods`, --method), the pipeline, compare-methods and a test of the
/// docs' table read; docs/methods.md tells how to add one.
/// </summary>
public abstract class InfluenceMethod
{
    /// <summary>The name on the command line and in summary.json (--method NAME).</summary>
    public abstract string Name { get; }

    /// <summary>One line for --help and the docs: what the method estimates, and how.</summary>
    public abstract string Summary { get; }

    public abstract SelfInfluenceSource SelfInfluenceSource { get; }

    /// <summary>Why a job of this method writes no self_influence.csv.</summary>
    public virtual string NoSelfInfluenceReason =>
        $"{Name} needs one solve per training example; pass --solve-self-influence";

    /// <summary>Whether the method sums over the training run's checkpoints (it needs minibatch training).</summary>
    public virtual bool NeedsCheckpoints => false;

    /// <summary>Whether the method reads --method-seed (a random start, batches, labels or projection).</summary>
    public virtual bool IsSeeded => true;

    /// <summary>Whether its scores are preconditioned queries scored through per-layer blocks (--query-rank applies).</summary>
    public virtual bool ScoresWithGradients => true;

    /// <summary>Whether compare-methods runs it by default (at the default damping of 0).</summary>
    public virtual bool InDefaultComparison => true;

    /// <summary>Refuses a model this method cannot hold (ArgumentException with the numbers).</summary>
    public virtual void CheckSize(ModelSpec spec) { }

    /// <summary>Refuses a job this method cannot run (the model, or the settings with it); by default <see cref="CheckSize"/>.</summary>
    public virtual void CheckJob(ScoreSettings settings, ModelSpec spec) => CheckSize(spec);

    /// <summary>What the method's own <see cref="ScoreRows"/> reads besides the terms, loaded once per plan and disposed with it; null for most.</summary>
    public virtual IDisposable? LoadScoringState(ScoreJob job, Checkpoint checkpoint) => null;

    /// <summary>
    /// The shard stages and coordinator steps that end in the job's score terms and method report.
    /// Every step is idempotent over the store: a step whose artifact exists is skipped.
    /// </summary>
    public abstract Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress);

    /// <summary>
    /// One unit of one of the method's shard stages (named by <see cref="PrepareAsync"/>); returns the
    /// curvature-vector products it made (for the metrics). Stage names are snake_case plain names,
    /// not "score" or "curvature_product" (the pipeline's own); a unit whose artifact exists is skipped.
    /// </summary>
    /// <param name="progress">Rows done, for stages that report them as they go.</param>
    public virtual long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress) =>
        throw new ArgumentException($"{Name} has no shard stage '{Safety.Echo.Cap(stage)}'");

    /// <summary>What the scoring pass adds for each row's self-influence, or null when the pass gives none.</summary>
    public abstract SelfInfluence? SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report);

    /// <summary>Whether scores are cosines (each training gradient divided by its norm).</summary>
    public virtual bool Cosine => false;

    /// <summary>Influence of rows [start, end) on every query and their self-influence; by default one backward pass per batch against the plan.</summary>
    public virtual ShardScores ScoreRows(ScoreJob job, Checkpoint checkpoint, Dataset train, DataTensors rows, ScorePlan plan, int shard, int start, int end, IProgress<long>? progress) =>
        ShardScorer.Score(checkpoint.Spec, plan, rows, start, job.Settings.TopK, job.Settings.BatchSize, job.ShardMemoryBudgetBytes, progress);

    /// <summary>The method's report as summary.json gives it, once every shard has scored (what the shards measured can join it).</summary>
    public virtual MethodReport CompleteReport(ScoreJob job, IReadOnlyList<ShardRun> shards, MethodReport report) => report;

    /// <summary>Adds the method's own settings to summary.json's settings.method_options (their settings names).</summary>
    public virtual void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options) { }

    /// <summary>The method's settings and outcome in one line, for comparison tables.</summary>
    public virtual string Describe(MethodReport report) => $"δ = {report.Damping:G3}";

    public override string ToString() => Name;
}

/// <summary>One unit of a shard stage: rows [Start, End) (or a repeat's index), in round <see cref="Round"/> of a repeated stage.</summary>
public readonly record struct ShardUnit(int Index, int Start, int End, int Round = 0)
{
    public int Count => End - Start;
}
