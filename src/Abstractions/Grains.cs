using Influence.Core.Jobs;
using Orleans.Concurrency;

namespace Influence.Abstractions;

/// <summary>What every job coordinator answers, whatever its kind.</summary>
public interface IJobGrain : IGrainWithStringKey
{
    [AlwaysInterleave]
    Task<JobStatus> GetStatus();

    /// <summary>Stops the job (and the jobs it started). Finished work stays in the store, so the same job id can be resumed.</summary>
    [AlwaysInterleave]
    Task<JobStatus> Cancel();
}

/// <summary>The jobs this cluster has run (key: "jobs"), kept in grain storage.</summary>
public interface IJobRegistryGrain : IGrainWithStringKey
{
    Task Register(JobEntry entry);

    [ReadOnly]
    Task<JobEntry[]> List();
}

/// <summary>
/// Coordinates one score job (key: job id). <see cref="Start"/> returns at once; the job runs in
/// the background and the client polls <see cref="GetStatus"/>.
/// </summary>
public interface IScoreJobGrain : IJobGrain
{
    /// <summary>Starts the job, or returns its status if it is already running or finished.</summary>
    Task<JobStatus> Start(ScoreSettings settings);
}

/// <summary>
/// One contiguous range of the training set for one stage of one job (key:
/// "{job}/{stage}/{round}/{shard}"); SpreadByIndexPlacement puts shard k on silo k mod n.
/// <see cref="Start"/> returns at once; the coordinator polls.
/// Work is idempotent: an output already in the artifact store is not computed again.
/// </summary>
public interface IScoreShardGrain : IGrainWithStringKey
{
    Task Start(ShardAssignment assignment);

    [AlwaysInterleave]
    Task<ShardReport> GetReport();
}

/// <summary>
/// Coordinates a leave-one-out study (key: job id): runs the score job of the same id, freezes the
/// plan, hands units to worker grains a bounded number per silo, and writes the report. Finished
/// units live in the artifact store, so starting the same job again resumes it.
/// </summary>
public interface ILooJobGrain : IJobGrain
{
    Task<JobStatus> Start(LooJobRequest request);
}

/// <summary>
/// Runs units of short trainings: a LOO study's retrains or a correct job's fine-tunings (key: "{job}/worker/{k}", placed on silo k mod n). <see cref="Start"/>
/// returns at once; the coordinator polls <see cref="GetReport"/> by unit id. A unit whose result
/// exists in the store is not computed again.
/// </summary>
public interface IRetrainWorkerGrain : IGrainWithStringKey
{
    Task Start(RetrainAssignment assignment);

    [AlwaysInterleave]
    Task<RetrainReport> GetReport(int unitId);

    /// <summary>Drops this silo's cached state of the job (it has finished).</summary>
    [AlwaysInterleave]
    Task Release(string jobId);
}

/// <summary>
/// Coordinates an `influence correct` job (key: job id): the score job of the same id (θ̂ and the
/// method's influence), a grad-dot score job ("{job}-grad-dot") where grad-dot is a selection,
/// the frozen plan of mispredicted test points, their fine-tuning units on the retrain workers,
/// then correct.csv and correct.md. Finished units live in the store, so starting again resumes.
/// </summary>
public interface ICorrectJobGrain : IJobGrain
{
    Task<JobStatus> Start(CorrectJobRequest request);
}

/// <summary>
/// Coordinates an `influence fading` job (key: job id): the score job of the same id (θ₀ and the
/// influence at θ₀), the frozen plan of perturbed examples, their trajectory units on the retrain
/// workers, then fading.csv and fading.md. Finished units live in the store, so starting again resumes.
/// </summary>
public interface IFadingJobGrain : IJobGrain
{
    Task<JobStatus> Start(FadingJobRequest request);
}

/// <summary>
/// Runs a study grid (key: job id): one LOO study per configuration, in turn (each uses every
/// silo), keyed "{job}-c{i}" so that a restarted study skips finished configurations. Writes
/// study.csv after every configuration and study.md at the end.
/// </summary>
public interface IStudyJobGrain : IJobGrain
{
    Task<JobStatus> Start(StudyJobRequest request);
}
