using Influence.Abstractions;
using Microsoft.Extensions.Logging.Abstractions;

namespace Influence.Grains.Tests;

/// <summary>The coordinators' dispatch loop against scripted workers: no cluster, no grains.</summary>
public sealed class UnitDispatcherTests
{
    private static readonly DispatchPolicy Fast = new()
    {
        PollInterval = TimeSpan.FromMilliseconds(1),
        CallTimeout = TimeSpan.FromSeconds(10),
        WorkerDeadline = TimeSpan.FromMilliseconds(100),
        CoolDown = TimeSpan.FromHours(1), // a worker that lost a unit gets none back in these tests
        PoolRefresh = TimeSpan.Zero,
    };

    /// <summary>A dispatch that loses a unit would wait for ever: these tests give up instead.</summary>
    private static CancellationToken Soon => new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token;

    public enum Behaviour { Works, Idle, Silent, Fails, DoneWithoutResult }

    /// <summary>
    /// Workers named by string whose behaviour is scripted; a unit runs for two polls, then is
    /// done with the result "unit U by W". Records who started what, and what is "stored".
    /// </summary>
    private sealed class ScriptedWorkers(params string[] pool) : IUnitWorkers<int, string, string>
    {
        public Dictionary<string, Behaviour> Behaviours { get; } = [];
        /// <summary>Failures left per unit for workers that fail.</summary>
        public Dictionary<int, int> FailuresLeft { get; } = [];
        public List<(string Worker, int Unit)> Starts { get; } = [];
        public HashSet<int> Stored { get; } = [];
        public Func<IReadOnlyList<string>, IReadOnlyList<string>>? Refresh { get; set; }
        private readonly Dictionary<(string, int), int> polls = [];

        private Behaviour Of(string worker) => Behaviours.GetValueOrDefault(worker, Behaviour.Works);

        public Task<IReadOnlyList<string>> RefreshPool(IReadOnlyList<string> current) =>
            Task.FromResult(Refresh?.Invoke(current) ?? pool);

        public Task Start(string worker, int unit)
        {
            Starts.Add((worker, unit));
            polls[(worker, unit)] = 0;
            return Task.CompletedTask;
        }

        public Task<UnitReport<string>> GetReport(string worker, int unit)
        {
            switch (Of(worker))
            {
                case Behaviour.Idle: return Task.FromResult(new UnitReport<string>(UnitState.Idle, 0));
                case Behaviour.Silent: throw new TimeoutException("no answer");
            }
            int n = polls[(worker, unit)] += 1;
            if (n < 3) return Task.FromResult(new UnitReport<string>(UnitState.Running, n));
            if (Of(worker) == Behaviour.Fails && FailuresLeft.GetValueOrDefault(unit) > 0)
            {
                FailuresLeft[unit]--;
                return Task.FromResult(new UnitReport<string>(UnitState.Failed, 0, $"unit {unit} broke"));
            }
            if (Of(worker) != Behaviour.DoneWithoutResult) Stored.Add(unit);
            return Task.FromResult(new UnitReport<string>(UnitState.Done, 10, Result: $"unit {unit} by {worker}"));
        }

        public Task<bool> IsFinished(int unit, string? result) => Task.FromResult(Stored.Contains(unit));
    }

    private static UnitDispatcher<int, string, string> Dispatcher(ScriptedWorkers workers, List<DispatchProgress>? progress = null, DispatchPolicy? policy = null) =>
        new(workers, policy ?? Fast, "test-job", NullLogger.Instance)
        {
            Size = _ => 10,
            Describe = u => $"unit {u}",
            Progress = p => progress?.Add(p),
        };

    [Fact]
    public async Task Every_unit_runs_once_on_the_pool_and_results_come_back_in_unit_order()
    {
        var workers = new ScriptedWorkers("a", "b");
        var progress = new List<DispatchProgress>();
        var results = await Dispatcher(workers, progress).RunAsync([0, 1, 2, 3, 4], Soon);

        Assert.Equal(5, results.Length);
        for (int u = 0; u < 5; u++) Assert.StartsWith($"unit {u} by ", results[u]);
        Assert.Equal([0, 1, 2, 3, 4], workers.Starts.Select(s => s.Unit).Order());
        Assert.Equal(2, workers.Starts.Select(s => s.Worker).Distinct().Count());
        Assert.True(progress.Max(p => p.UnitsRunning) <= 2);
        var last = progress[^1];
        Assert.Equal((50L, 50L, 5, 5, 0L), (last.Done, last.Total, last.UnitsFinished, last.Units, last.InFlight));
        Assert.Contains(progress, p => p.InFlight > 0); // running units' own progress is counted on the way
    }

    [Fact]
    public async Task Progress_counts_work_finished_before_a_resume()
    {
        var workers = new ScriptedWorkers("a");
        var progress = new List<DispatchProgress>();
        await Dispatcher(workers, progress).RunAsync([7], Soon, finishedBefore: 30, total: 40);
        Assert.Equal(30, progress[0].Done);
        Assert.Equal((40L, 40L), (progress[^1].Done, progress[^1].Total));
    }

    /// <summary>Idle: the worker lost the unit (re-activated, or its silo stopping); Silent: its calls time out past the deadline.</summary>
    [Theory]
    [InlineData(Behaviour.Idle)]
    [InlineData(Behaviour.Silent)]
    public async Task A_unit_whose_worker_lost_it_or_went_silent_is_handed_to_another_worker(Behaviour behaviour)
    {
        var workers = new ScriptedWorkers("lost", "good");
        workers.Behaviours["lost"] = behaviour;
        var results = await Dispatcher(workers).RunAsync([0, 1], Soon);

        Assert.All(results, r => Assert.EndsWith("by good", r));
        var handedOver = workers.Starts.Single(s => s.Worker == "lost").Unit; // then it cools down
        Assert.Contains(("good", handedOver), workers.Starts);
    }

    [Fact]
    public async Task A_unit_that_fails_is_retried_and_fails_the_dispatch_after_max_attempts()
    {
        var workers = new ScriptedWorkers("w1", "w2", "w3", "w4");
        foreach (var w in new[] { "w1", "w2", "w3", "w4" }) workers.Behaviours[w] = Behaviour.Fails;
        workers.FailuresLeft[0] = 2; // unit 0 fails twice, then works
        workers.FailuresLeft[1] = 3; // unit 1 fails three times: the dispatch fails
        var retryAtOnce = Fast with { CoolDown = TimeSpan.Zero };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Dispatcher(workers, policy: retryAtOnce).RunAsync([0, 1], Soon));
        Assert.Equal("unit 1 failed 3 times: unit 1 broke", e.Message);

        var once = new ScriptedWorkers("w1", "w2", "w3");
        foreach (var w in new[] { "w1", "w2", "w3" }) once.Behaviours[w] = Behaviour.Fails;
        once.FailuresLeft[0] = 2;
        var results = await Dispatcher(once, policy: retryAtOnce).RunAsync([0], Soon);
        Assert.StartsWith("unit 0 by ", results[0]);
        Assert.Equal(3, once.Starts.Count);
    }

    [Fact]
    public async Task With_one_attempt_a_failure_names_the_unit_and_its_error()
    {
        var workers = new ScriptedWorkers("w");
        workers.Behaviours["w"] = Behaviour.Fails;
        workers.FailuresLeft[4] = 1;
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Dispatcher(workers, policy: Fast with { MaxAttempts = 1 }).RunAsync([4], Soon));
        Assert.Equal("unit 4 failed: unit 4 broke", e.Message);
    }

    [Fact]
    public async Task A_unit_reported_done_without_its_result_in_the_store_is_run_again()
    {
        var workers = new ScriptedWorkers("liar", "good");
        workers.Behaviours["liar"] = Behaviour.DoneWithoutResult;
        var results = await Dispatcher(workers).RunAsync([0, 1], Soon);
        Assert.All(results, r => Assert.EndsWith("by good", r));
        Assert.Equal([0, 1], workers.Stored.Order());
    }

    [Fact]
    public async Task A_worker_that_joins_gets_units_and_one_that_leaves_keeps_its_unit_to_the_end()
    {
        var workers = new ScriptedWorkers();
        int refreshes = 0;
        workers.Refresh = current => ++refreshes switch
        {
            1 => ["first"],
            2 => ["first", "joined"],
            _ => ["joined"], // "first" left the pool while running a unit
        };
        var results = await Dispatcher(workers).RunAsync([0, 1, 2, 3], Soon);
        Assert.All(results, Assert.NotNull);
        Assert.Contains(workers.Starts, s => s.Worker == "joined");
        Assert.Equal(("first", 0), workers.Starts[0]);
        Assert.EndsWith("by first", results[0]); // finished where it started
        Assert.Single(workers.Starts, s => s.Worker == "first");
    }

    [Fact]
    public async Task Cancellation_stops_the_dispatch()
    {
        var workers = new ScriptedWorkers("silent");
        workers.Behaviours["silent"] = Behaviour.Silent;
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            Dispatcher(workers, policy: Fast with { WorkerDeadline = TimeSpan.FromHours(1) }).RunAsync([0], cts.Token));
    }
}
