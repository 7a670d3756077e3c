using Influence.Abstractions;

namespace Influence.Grains;

/// <summary>A retrain worker grain and the silo it is pinned to (null: wherever placement puts it).</summary>
public sealed record RetrainWorker(string Key, SiloAddress? Silo);

/// <summary>
/// The workers of a job whose units are short trainings (a LOO study, a correct job):
/// ParallelPerSilo retrain worker grains pinned to each active silo, a silo that joins getting its
/// own at the next refresh. The store, not a worker, records what is finished.
/// </summary>
/// <param name="id">A unit's id (its key in the store).</param>
/// <param name="isDone">Whether a unit's result is in the store (run on a compute thread).</param>
/// <param name="size">A unit's work (retrains, runs): the job's progress counts it when the unit finishes.</param>
public sealed class RetrainWorkerPool<TUnit>(IGrainFactory grains, ComputeExecutor executor, string jobId, ShortTrainingKind kind, int perSilo,
    Func<TUnit, int> id, Func<TUnit, bool> isDone, Func<TUnit, int> size) : IUnitWorkers<TUnit, RetrainWorker, RetrainReport>
{
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(5);

    public int Created { get; private set; }

    private RetrainWorker New(SiloAddress? silo) => new($"{jobId}/worker/{Created++}", silo);

    public async Task<IReadOnlyList<RetrainWorker>> RefreshPool(IReadOnlyList<RetrainWorker> current)
    {
        Dictionary<SiloAddress, SiloStatus>? hosts = null;
        try { hosts = await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).WaitAsync(CallTimeout); }
        catch (Exception e) when (e is OrleansException or TimeoutException) { /* keep the current pool */ }
        var workers = current.ToList();
        if (hosts is null)
        {
            while (workers.Count < perSilo) workers.Add(New(null));
            return workers;
        }
        workers.RemoveAll(w => w.Silo is not null && !hosts.ContainsKey(w.Silo)); // kept by the dispatcher while busy
        foreach (var silo in hosts.Keys.OrderBy(h => h.ToString(), StringComparer.Ordinal))
            while (workers.Count(w => silo.Equals(w.Silo)) < perSilo) workers.Add(New(silo));
        return workers;
    }

    public async Task Start(RetrainWorker worker, TUnit unit)
    {
        try
        {
            if (worker.Silo is not null) RequestContext.Set(SpreadByIndexPlacement.SiloHintKey, worker.Silo);
            await Grain(worker).Start(new RetrainAssignment { JobId = jobId, UnitId = id(unit), Kind = kind });
        }
        finally { RequestContext.Remove(SpreadByIndexPlacement.SiloHintKey); }
    }

    public async Task<UnitReport<RetrainReport>> GetReport(RetrainWorker worker, TUnit unit)
    {
        var r = await Grain(worker).GetReport(id(unit));
        return new UnitReport<RetrainReport>(r.State, r.Done, r.Error, r);
    }

    public Task<bool> IsFinished(TUnit unit, RetrainReport? result) => executor.Run(() =>
    {
        if (!isDone(unit)) return false;
        InfluenceMetrics.JobRetrainsDone.Add(size(unit), InfluenceMetrics.KindTag(kind));
        return true;
    });

    /// <summary>
    /// Runs every unit not yet finished in the store on a pool of these workers (the dispatch of
    /// every short-training job: retries, silo loss, progress), then has the workers drop the job's
    /// cached state. <paramref name="what"/> names the work in the progress line ("retrains").
    /// </summary>
    public static async Task RunAsync(IGrainFactory grains, ComputeExecutor executor, string jobId, ShortTrainingKind kind, int perSilo,
        IReadOnlyList<TUnit> units, Func<TUnit, int> id, Func<TUnit, bool> isDone, Func<TUnit, int> size, Func<TUnit, string> describe, string what,
        Action<DispatchProgress, string> report, CancellationToken cancellation, Microsoft.Extensions.Logging.ILogger logger)
    {
        var done = await executor.Run(() => units.Where(isDone).Select(id).ToHashSet());
        var pending = units.Where(u => !done.Contains(id(u))).ToList();
        var pool = new RetrainWorkerPool<TUnit>(grains, executor, jobId, kind, perSilo, id, isDone, size);
        var dispatcher = new UnitDispatcher<TUnit, RetrainWorker, RetrainReport>(pool,
            new DispatchPolicy { WorkerDeadline = WorkerDeadline, CoolDown = WorkerDeadline, CallTimeout = CallTimeout, PollInterval = TimeSpan.FromMilliseconds(200) }, jobId, logger)
        {
            Size = u => size(u),
            Describe = describe,
            Progress = p => report(p, $"{p.Done + p.InFlight}/{p.Total} {what}, {p.Rate:G3}/s, {p.UnitsRunning} units running on {p.Workers} workers"),
        };
        await dispatcher.RunAsync(pending, cancellation, units.Where(u => done.Contains(id(u))).Sum(size), units.Sum(size));
        await Release(grains, jobId, pool.Created);
    }

    /// <summary>How long a worker may go without answering before its unit is given to another.</summary>
    public static readonly TimeSpan WorkerDeadline = TimeSpan.FromSeconds(15);

    /// <summary>Best effort: workers on other silos drop the job's cached tensors.</summary>
    private static async Task Release(IGrainFactory grains, string jobId, int workers)
    {
        var tasks = Enumerable.Range(0, workers).Select(k => grains.GetGrain<IRetrainWorkerGrain>($"{jobId}/worker/{k}"))
            .Select(async g => { try { await g.Release(jobId).WaitAsync(CallTimeout); } catch (Exception e) when (e is OrleansException or TimeoutException) { } });
        await Task.WhenAll(tasks);
    }

    private IRetrainWorkerGrain Grain(RetrainWorker worker) => grains.GetGrain<IRetrainWorkerGrain>(worker.Key);
}
