using System.Collections.Concurrent;
using Influence.Core.Compute;
using Microsoft.Extensions.Options;

namespace Influence.Grains;

/// <summary>Heavy work on a silo (configuration section "Compute"; the embedded silo sets it from --parallel).</summary>
public sealed class ComputeSettings
{
    /// <summary>Heavy tasks that run at once on this silo (one per GPU is the usual choice).</summary>
    public int ConcurrentTasks { get; set; } = 1;
    /// <summary>libtorch threads per process; 0 leaves libtorch's default (the core count).</summary>
    public int TorchThreads { get; set; }

    public IEnumerable<string> Problems()
    {
        if (ConcurrentTasks < 1) yield return $"Compute:ConcurrentTasks must be at least 1, not {ConcurrentTasks}";
        if (TorchThreads < 0) yield return $"Compute:TorchThreads must be 0 (libtorch's default) or more, not {TorchThreads}";
    }
}

/// <summary>
/// Runs heavy TorchSharp work on dedicated threads, off the grain scheduler, a bounded number
/// at a time. Each work item runs start to finish on one thread, so TorchSharp's per-thread
/// dispose scopes and no_grad modes behave.
/// </summary>
public sealed class ComputeExecutor : IDisposable
{
    /// <summary>How long a stopping silo waits for work in progress (which checks <see cref="Stopping"/> between retrains).</summary>
    public static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(15);

    private readonly BlockingCollection<WorkItem> queue = new();
    private readonly List<Thread> threads = [];
    private readonly CancellationTokenSource stopping = new();

    private sealed record WorkItem(Action Run, Action<Exception> Cancel);

    public ComputeExecutor(IOptions<ComputeSettings> options)
    {
        var o = options.Value;
        if (o.Problems().FirstOrDefault() is { } problem) throw new ArgumentException(problem);
        Devices.ConfigureThreads(o.TorchThreads);
        for (int i = 0; i < o.ConcurrentTasks; i++)
        {
            var t = new Thread(Loop) { IsBackground = true, Name = $"influence-compute-{i}" };
            t.Start();
            threads.Add(t);
        }
    }


    /// <summary>Work items this silo runs at once (Compute:ConcurrentTasks): they share a job's memory budget.</summary>
    public int Concurrency => threads.Count;

    /// <summary>Cancelled when the silo stops: long work checks it at safe points and gives up.</summary>
    public CancellationToken Stopping => stopping.Token;

    public Task<T> Run<T>(Func<T> work)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var item = new WorkItem(() =>
        {
            try { tcs.SetResult(work()); }
            catch (Exception e) { tcs.SetException(e); }
        }, e => tcs.TrySetException(e));
        try { queue.Add(item); }
        catch (InvalidOperationException) { item.Cancel(new OperationCanceledException("the silo is stopping")); }
        return tcs.Task;
    }

    private void Loop()
    {
        foreach (var item in queue.GetConsumingEnumerable())
        {
            if (stopping.IsCancellationRequested) item.Cancel(new OperationCanceledException("the silo is stopping"));
            else item.Run();
        }
    }

    /// <summary>
    /// Stops taking work, drops what has not started and waits for what has (called by
    /// <see cref="ComputeDrain"/> when the host stops, before any singleton holding tensors is disposed). libtorch must not be
    /// inside an operation when the process exits: its static teardown under a running operator
    /// aborts the process.
    /// </summary>
    public void Drain()
    {
        if (!stopping.IsCancellationRequested) stopping.Cancel();
        if (!queue.IsAddingCompleted) queue.CompleteAdding();
        var deadline = DateTime.UtcNow + DrainTimeout;
        foreach (var t in threads) t.Join(Max(deadline - DateTime.UtcNow, TimeSpan.Zero));
    }

    public void Dispose()
    {
        Drain();
        if (threads.TrueForAll(t => !t.IsAlive)) queue.Dispose();
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}

/// <summary>Drains the compute executor when the host stops, before the service container disposes anything that holds tensors.</summary>
public sealed class ComputeDrain(ComputeExecutor executor) : Microsoft.Extensions.Hosting.IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.Run(executor.Drain, CancellationToken.None);
}
