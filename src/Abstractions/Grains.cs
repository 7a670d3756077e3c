using Orleans.Concurrency;

namespace Influence.Abstractions;

/// <summary>
/// Coordinates one score job (key: job id). <see cref="Start"/> returns at once; the job runs in
/// the background and the client polls <see cref="GetStatus"/>.
/// </summary>
public interface IScoreJobGrain : IGrainWithStringKey
{
    /// <summary>Starts the job, or returns its status if it is already running or finished.</summary>
    Task<JobStatus> Start(ScoreJobRequest request);

    [AlwaysInterleave]
    Task<JobStatus> GetStatus();
}

/// <summary>
/// One contiguous range of the training set for one job (key: "{job}/{shard}"); random placement
/// spreads shards over the silos. <see cref="Start"/> returns at once; the coordinator polls.
/// Work is idempotent: an output already in the artifact store is not computed again.
/// </summary>
public interface IScoreShardGrain : IGrainWithStringKey
{
    Task Start(ShardAssignment assignment);

    [AlwaysInterleave]
    Task<ShardReport> GetReport();
}
