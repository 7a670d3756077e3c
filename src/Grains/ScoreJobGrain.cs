using System.Diagnostics;
using System.Threading.Channels;
using Influence.Abstractions;
using Influence.Core.Jobs;
using Influence.Core.Scoring;
using Influence.Core.Storage;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>
/// Coordinates a score job: trains (or loads) the model, runs the method's preparation
/// (<see cref="ScorePipeline"/>: partial Hessians, rounds of curvature products, LiSSA repeats or
/// Kronecker factors on shard grains, combined here), has shards score their rows, merges the
/// top-k lists and writes the outputs. The job runs in the background; every step is idempotent over the artifact store.
/// </summary>
public sealed partial class ScoreJobGrain(
    [PersistentState("job", JobGrainNames.StorageName)] IPersistentState<JobRecord<ScoreSettings>> record,
    ComputeExecutor executor,
    ArtifactCache cache,
    IArtifactStore store,
    Microsoft.Extensions.Options.IOptions<InputFileOptions> inputs,
    ILogger<ScoreJobGrain> logger) : JobGrain<ScoreSettings>(record, logger), IScoreJobGrain
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan ProductPollInterval = TimeSpan.FromMilliseconds(10);

    protected override string Kind => JobKinds.Score;

    private ComputeExecutor Executor => executor;

    protected override Func<Task> Prepare(ScoreSettings settings)
    {
        settings.Validate();
        return () => RunAsync(settings);
    }

    private void Set(JobPhase phase, long done, long total, string message, string? outputPrefix = null) =>
        Tracker.Set(phase, done, total, message, outputPrefix: outputPrefix);

    private async Task RunAsync(ScoreSettings settings)
    {
        Set(JobPhase.Training, 0, 0, "loading data");
        var job = new ScoreJob(store, JobId, settings) { Stopping = executor.Stopping, AllowLocalFiles = inputs.Value.AllowLocalFiles };
        await executor.Run(() => { job.ClaimSettings(); return 0; }); // the shards read them
        var timings = new Dictionary<string, double>();
        var phase = Stopwatch.StartNew();
        var data = await executor.Run(job.LoadData);
        Set(JobPhase.Training, 0, 0, $"training on {data.Train.Count} examples");
        var progress = new MessageProgress(m => Set(JobPhase.Training, 0, 0, m));
        var checkpoint = await executor.Run(() => job.TrainOrLoad(data, progress));
        Cancellation.ThrowIfCancellationRequested();
        timings["train"] = Lap(phase);
        LogTrained(JobId, checkpoint.Spec.Describe(), checkpoint.GradientNorm, checkpoint.TrainSeconds);

        var ranges = settings.ShardRangesFor(data.Train.Count);
        var stages = new GrainStages(this, job, ranges);
        var report = await job.Method.PrepareAsync(job, checkpoint, data, stages, new MessageProgress(m => Set(JobPhase.Factorizing, 0, 0, m)));
        timings["prepare"] = Lap(phase);
        foreach (var w in report.Warnings) LogMethodWarning(JobId, settings.Method, w);

        var scoreReports = await RunShards(ScorePipeline.ScoreStage, 0, ranges, JobPhase.Scoring);
        timings["score"] = Lap(phase);

        Set(JobPhase.Writing, 0, 1, "writing outputs");
        var merged = TopKLists.Merge(scoreReports.Select(ToTopK).ToList(), settings.TopK);
        var runs = ranges.Select((r, k) => new ShardRun(k, r.Start, r.End, scoreReports[k].Silo ?? "?", stages.PrepareSeconds[k], scoreReports[k].Seconds)).ToList();
        timings["total_before_write"] = Tracker.ElapsedSeconds;
        await executor.Run(() =>
        {
            ScoreOutputs.Write(job, data, checkpoint, report, runs, merged, timings);
            job.DeleteWork();
            return 0;
        });
        cache.Evict(job.Prefix);
        Set(JobPhase.Completed, 1, 1, $"done in {Tracker.ElapsedSeconds:F1} s", job.Prefix);
        LogCompleted(JobId, Tracker.ElapsedSeconds);
    }

    /// <summary>
    /// The pipeline's stages on this cluster: shard stages on shard grains, coordinator steps on
    /// the compute executor, and iterative solvers on a thread of their own whose every product is
    /// a round of shard work driven from the grain's turn (a solver waiting on a compute thread
    /// would starve the shards of a one-thread silo).
    /// </summary>
    private sealed class GrainStages(ScoreJobGrain grain, ScoreJob job, IReadOnlyList<(int Start, int End)> ranges) : IScoreStages
    {
        private const int SolverStackBytes = 64 << 20;

        public double[] PrepareSeconds { get; } = new double[ranges.Count];

        public IReadOnlyList<(int Start, int End)> Ranges => ranges;

        public async Task RunShards(string stage, int round, IReadOnlyList<(int Start, int End)> units)
        {
            var reports = await grain.RunShards(stage, round, units, JobPhase.Curvature);
            // Units over the shards' own ranges add to each shard's preparation time (LiSSA's repeats are not per shard).
            if (units.SequenceEqual(ranges))
                for (int k = 0; k < reports.Length; k++) PrepareSeconds[k] += reports[k].Seconds;
        }

        public async Task<IReadOnlyList<(int Start, int End)>> PerSiloRanges()
        {
            // Shard grains are placed by index over the active silos (SpreadByIndexPlacement): unit k of S lands on silo k.
            var hosts = await grain.Grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
            return ScorePipeline.Merge(ranges, Math.Min(hosts.Count, ranges.Count));
        }

        public Task<T> Compute<T>(Func<T> step) => grain.Executor.Run(step);

        public async Task<T> Solve<T>(Func<Func<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>, T> solver)
        {
            var rounds = Channel.CreateUnbounded<(int Round, TaskCompletionSource Done)>();
            var products = ScorePipeline.Products(job, ranges.Count, r =>
            {
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                rounds.Writer.TryWrite((r, done));
                done.Task.GetAwaiter().GetResult(); // blocks the solver's own thread only
            });
            var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            // A thread of its own, with a main thread's stack: libtorch's kernels run on it (the
            // 1.5 MB default of secondary threads is not what native BLAS code is built for).
            var thread = new Thread(() =>
            {
                try { result.SetResult(solver(products)); }
                catch (Exception e) { result.SetException(e); }
                finally { rounds.Writer.TryComplete(); }
            }, SolverStackBytes) { IsBackground = true, Name = $"solver {job.JobId}" };
            thread.Start();
            var solving = result.Task;
            await foreach (var (round, done) in rounds.Reader.ReadAllAsync())
            {
                try
                {
                    await RunShards(ScorePipeline.CurvatureProductStage, round, ranges);
                    done.SetResult();
                }
                catch (Exception e) { done.SetException(e); }
            }
            return await solving;
        }
    }

    private static TopKLists ToTopK(ShardReport r) => new(
        r.Proponents!.Select(l => l.Select(e => new Scored(e.TrainIndex, e.Influence)).ToArray()).ToArray(),
        r.Opponents!.Select(l => l.Select(e => new Scored(e.TrainIndex, e.Influence)).ToArray()).ToArray());

    /// <summary>
    /// Runs one stage on every shard, each on its own grain (keyed by job, stage, round and
    /// shard). A shard that reports Idle lost its activation (its silo went away) and is started
    /// again; the work is idempotent. A shard that fails fails the job.
    /// </summary>
    private async Task<ShardReport[]> RunShards(string stage, int round, IReadOnlyList<(int Start, int End)> ranges, JobPhase phase)
    {
        var assignments = ranges.Select((r, k) => new ShardAssignment
        {
            JobId = JobId, Stage = stage, Round = round, ShardIndex = k, Start = r.Start, End = r.End,
        }).ToArray();
        string what = stage == ScorePipeline.CurvatureProductStage ? $"curvature products, round {round + 1}" : stage.Replace('_', ' ');
        Set(phase, 0, ranges.Sum(r => (long)(r.End - r.Start)), $"{what} on {assignments.Length} shard{(assignments.Length == 1 ? "" : "s")}");
        var policy = new DispatchPolicy
        {
            // Product rounds take milliseconds to seconds and there may be hundreds: poll them closely.
            PollInterval = stage == ScorePipeline.CurvatureProductStage ? ProductPollInterval : PollInterval,
            MaxAttempts = 1,
            CoolDown = TimeSpan.Zero, // a slot is not a worker: the shard's grain is the same wherever it is started from
        };
        var dispatcher = new UnitDispatcher<ShardAssignment, int, ShardReport>(new ShardGrains(Grains, assignments.Length), policy, JobId, logger)
        {
            Size = a => a.End - a.Start,
            Describe = a => $"shard {a.ShardIndex} ({a.Stage})",
            Progress = p => Set(phase, p.Done + p.InFlight, p.Total, $"{what}: {p.UnitsFinished}/{p.Units} shards done"),
        };
        return (await dispatcher.RunAsync(assignments, Cancellation))!;
    }

    /// <summary>One slot per shard; a shard's stage runs on the grain of that shard and stage, whichever slot starts it.</summary>
    private sealed class ShardGrains(IGrainFactory grains, int shards) : IUnitWorkers<ShardAssignment, int, ShardReport>
    {
        private static IScoreShardGrain Grain(IGrainFactory grains, ShardAssignment a) =>
            grains.GetGrain<IScoreShardGrain>($"{a.JobId}/{a.Stage}/{a.Round}/{a.ShardIndex}");

        public Task<IReadOnlyList<int>> RefreshPool(IReadOnlyList<int> current) => Task.FromResult<IReadOnlyList<int>>(Enumerable.Range(0, shards).ToArray());
        public Task Start(int slot, ShardAssignment unit) => Grain(grains, unit).Start(unit);
        public async Task<UnitReport<ShardReport>> GetReport(int slot, ShardAssignment unit)
        {
            var r = await Grain(grains, unit).GetReport();
            return new UnitReport<ShardReport>(r.State, r.Done, r.Error, r);
        }
        public Task<bool> IsFinished(ShardAssignment unit, ShardReport? result) => Task.FromResult(true); // its report is the result
    }

    private sealed class MessageProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: trained {Model}, |grad| = {GradientNorm:E2} in {Seconds:F1} s")]
    private partial void LogTrained(string jobId, string model, double gradientNorm, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId}: completed in {Seconds:F1} s")]
    private partial void LogCompleted(string jobId, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Job {JobId}: {Method}: {Warning}")]
    private partial void LogMethodWarning(string jobId, string method, string warning);

}
