using System.Diagnostics;
using Influence.Abstractions;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

/// <summary>How a <see cref="UnitDispatcher{TUnit, TWorker, TResult}"/> waits, retries and gives up.</summary>
public sealed record DispatchPolicy
{
    /// <summary>Time between two rounds of report calls.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(200);
    /// <summary>A start or report call that takes longer has failed (the worker is tried again at the next poll).</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A worker that has not answered for this long has its unit handed to another worker.</summary>
    public TimeSpan WorkerDeadline { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>A worker that lost a unit (silent, idle, failed) gets no new unit for this long.</summary>
    public TimeSpan CoolDown { get; init; } = TimeSpan.FromSeconds(15);
    /// <summary>A unit whose worker reports Failed this many times fails the dispatch.</summary>
    public int MaxAttempts { get; init; } = 3;
    /// <summary>How often the worker pool is refreshed (silos join and leave).</summary>
    public TimeSpan PoolRefresh { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>What a worker says about the unit it was given.</summary>
public readonly record struct UnitReport<TResult>(UnitState State, long Done, string? Error = null, TResult? Result = default);

/// <summary>The dispatch's progress, in the units' own measure (rows, retrains).</summary>
/// <param name="Done">Finished work, including what was finished before this dispatch.</param>
/// <param name="InFlight">Work reported done by workers on units not yet finished.</param>
/// <param name="Rate">Work per second since the dispatch started (finished and in flight).</param>
public readonly record struct DispatchProgress(long Done, long InFlight, long Total, int UnitsFinished, int Units, int UnitsRunning, int Workers, double Rate, double EtaSeconds);

/// <summary>The calls a dispatch makes: the grains it drives, seen from the coordinator.</summary>
public interface IUnitWorkers<TUnit, TWorker, TResult>
{
    /// <summary>The workers to use from now on, given the current ones (a worker busy with a unit is kept until it is done, whether returned or not).</summary>
    Task<IReadOnlyList<TWorker>> RefreshPool(IReadOnlyList<TWorker> current);
    /// <summary>Asks <paramref name="worker"/> to run <paramref name="unit"/>; starting a unit it already runs or ran is a no-op.</summary>
    Task Start(TWorker worker, TUnit unit);
    Task<UnitReport<TResult>> GetReport(TWorker worker, TUnit unit);
    /// <summary>Whether a unit its worker reports Done has its result where the job reads it (the store, not the worker, is the record).</summary>
    Task<bool> IsFinished(TUnit unit, TResult? result);
}

/// <summary>
/// Runs idempotent units of work on a pool of workers until every unit is finished: the one
/// dispatch loop of the coordinators (a score job's shard stages, a LOO study's retrain units).
/// Each free worker is started on the next queued unit, and every worker with a unit is polled.
/// A unit goes back to the queue when its worker answers Idle (it lost the unit: re-activated
/// elsewhere, or its silo is stopping), is silent for <see cref="DispatchPolicy.WorkerDeadline"/>,
/// cannot be started, or reports Failed (up to <see cref="DispatchPolicy.MaxAttempts"/> times).
/// Running a unit twice is harmless (its result is written once under its key), so a unit that
/// finishes anywhere is finished everywhere.
/// </summary>
public sealed partial class UnitDispatcher<TUnit, TWorker, TResult>(
    IUnitWorkers<TUnit, TWorker, TResult> workers,
    DispatchPolicy policy,
    string jobId,
    ILogger logger)
{
    /// <summary>A unit's share of the job's total (rows, retrains); 1 by default.</summary>
    public Func<TUnit, long> Size { get; init; } = _ => 1;
    /// <summary>How errors and logs name a unit.</summary>
    public Func<TUnit, string> Describe { get; init; } = u => u?.ToString() ?? "unit";
    /// <summary>Called after every round of polls.</summary>
    public Action<DispatchProgress>? Progress { get; init; }

    private sealed class Slot(TWorker worker)
    {
        public TWorker Worker { get; } = worker;
        public int? Unit { get; set; }
        public long Progress { get; set; }
        public DateTime LastHeard { get; set; }
        public DateTime CoolUntil { get; set; }
    }

    /// <summary>
    /// Runs <paramref name="units"/> to the end; returns each unit's result, in their order.
    /// <paramref name="finishedBefore"/> and <paramref name="total"/> place them in a larger job
    /// (a resume) for the progress figures.
    /// </summary>
    public async Task<TResult?[]> RunAsync(IReadOnlyList<TUnit> units, CancellationToken ct, long finishedBefore = 0, long? total = null)
    {
        var results = new TResult?[units.Count];
        var finished = new bool[units.Count];
        var attempts = new int[units.Count];
        var queue = new Queue<int>(Enumerable.Range(0, units.Count));
        var slots = new List<Slot>();
        long all = total ?? finishedBefore + units.Sum(Size);
        long done = finishedBefore;
        int unitsFinished = 0;
        var clock = Stopwatch.StartNew();
        var lastRefresh = DateTime.MinValue;

        void HandBack(Slot slot, string why)
        {
            int unit = slot.Unit!.Value;
            slot.Unit = null;
            slot.CoolUntil = DateTime.UtcNow + policy.CoolDown;
            if (!finished[unit] && !queue.Contains(unit)) queue.Enqueue(unit);
            LogHandedBack(jobId, Describe(units[unit]), why);
        }

        while (unitsFinished < units.Count)
        {
            if (DateTime.UtcNow - lastRefresh >= policy.PoolRefresh || slots.Count == 0)
            {
                lastRefresh = DateTime.UtcNow;
                var wanted = await workers.RefreshPool(slots.Select(s => s.Worker).ToList());
                var kept = slots.Where(s => s.Unit is not null || wanted.Contains(s.Worker)).ToList();
                kept.AddRange(wanted.Where(w => !kept.Any(s => EqualityComparer<TWorker>.Default.Equals(s.Worker, w))).Select(w => new Slot(w)));
                slots = kept;
                if (slots.Count == 0) throw new InvalidOperationException($"job {jobId}: no worker to run its units on");
            }

            foreach (var slot in slots.Where(s => s.Unit is null && s.CoolUntil <= DateTime.UtcNow))
            {
                if (queue.Count == 0) break;
                int unit = queue.Dequeue();
                slot.Unit = unit;
                slot.Progress = 0;
                slot.LastHeard = DateTime.UtcNow;
                try { await workers.Start(slot.Worker, units[unit]).WaitAsync(policy.CallTimeout, ct); }
                catch (Exception e) when (e is OrleansException or TimeoutException) { HandBack(slot, $"start failed: {e.Message}"); }
            }

            await Task.Delay(policy.PollInterval, ct);
            foreach (var slot in slots.Where(s => s.Unit is not null))
            {
                int unit = slot.Unit!.Value;
                UnitReport<TResult> report;
                try { report = await workers.GetReport(slot.Worker, units[unit]).WaitAsync(policy.CallTimeout, ct); }
                catch (Exception e) when (e is OrleansException or TimeoutException)
                {
                    if (DateTime.UtcNow - slot.LastHeard > policy.WorkerDeadline)
                        HandBack(slot, $"worker silent for {policy.WorkerDeadline.TotalSeconds:G3} s ({e.GetType().Name})");
                    continue;
                }
                slot.LastHeard = DateTime.UtcNow;
                switch (report.State)
                {
                    case UnitState.Running:
                        slot.Progress = report.Done;
                        break;
                    case UnitState.Done when finished[unit]:
                        slot.Unit = null;
                        break;
                    case UnitState.Done when await workers.IsFinished(units[unit], report.Result):
                        finished[unit] = true;
                        results[unit] = report.Result;
                        done += Size(units[unit]);
                        unitsFinished++;
                        slot.Unit = null;
                        break;
                    case UnitState.Done:
                        Fail(slot, unit, "reported done, but its result is not in the store");
                        break;
                    case UnitState.Failed:
                        Fail(slot, unit, report.Error ?? "no error given");
                        break;
                    case UnitState.Idle:
                        HandBack(slot, "worker is not running it (re-activated elsewhere, or its silo is stopping)");
                        break;
                }
            }
            // A unit finished by another worker (a handed-back duplicate) needs no more waiting.
            foreach (var slot in slots.Where(s => s.Unit is { } u && finished[u])) slot.Unit = null;

            if (Progress is { } onProgress)
            {
                long inFlight = slots.Where(s => s.Unit is not null).Sum(s => s.Progress);
                double rate = (done - finishedBefore + inFlight) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                double eta = rate > 0 ? Math.Max(all - done - inFlight, 0) / rate : 0;
                onProgress(new DispatchProgress(done, inFlight, all, unitsFinished, units.Count, slots.Count(s => s.Unit is not null), slots.Count, rate, eta));
            }
        }
        return results;

        void Fail(Slot slot, int unit, string error)
        {
            if (++attempts[unit] >= policy.MaxAttempts)
                throw new InvalidOperationException(policy.MaxAttempts == 1
                    ? $"{Describe(units[unit])} failed: {error}"
                    : $"{Describe(units[unit])} failed {attempts[unit]} times: {error}");
            HandBack(slot, $"failed: {error}");
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Job {JobId}: {Unit} handed back ({Reason})")]
    private partial void LogHandedBack(string jobId, string unit, string reason);
}
