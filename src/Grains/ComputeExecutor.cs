using System.Collections.Concurrent;
using Influence.Core.Compute;
using Microsoft.Extensions.Options;

namespace Influence.Grains;

public sealed class ComputeOptions
{
    /// <summary>Heavy tasks that run at once on this silo (one per GPU is the usual choice).</summary>
    public int ConcurrentTasks { get; set; } = 1;
    /// <summary>libtorch threads per process; 0 leaves libtorch's default (the core count).</summary>
    public int TorchThreads { get; set; }
}

/// <summary>
/// Runs heavy TorchSharp work on dedicated threads, off the grain scheduler, a bounded number
/// at a time. Each work item runs start to finish on one thread, so TorchSharp's per-thread
/// dispose scopes and no_grad modes behave.
/// </summary>
public sealed class ComputeExecutor : IDisposable
{
    private readonly BlockingCollection<Action> queue = new();
    private readonly List<Thread> threads = [];

    public ComputeExecutor(IOptions<ComputeOptions> options)
    {
        var o = options.Value;
        if (o.ConcurrentTasks < 1) throw new ArgumentException("ComputeOptions.ConcurrentTasks must be ≥ 1");
        Devices.ConfigureThreads(o.TorchThreads);
        for (int i = 0; i < o.ConcurrentTasks; i++)
        {
            var t = new Thread(Loop) { IsBackground = true, Name = $"influence-compute-{i}" };
            t.Start();
            threads.Add(t);
        }
    }

    public int Queued => queue.Count;

    public Task<T> Run<T>(Func<T> work)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        queue.Add(() =>
        {
            try { tcs.SetResult(work()); }
            catch (Exception e) { tcs.SetException(e); }
        });
        return tcs.Task;
    }

    private void Loop()
    {
        foreach (var item in queue.GetConsumingEnumerable()) item();
    }

    public void Dispose()
    {
        queue.CompleteAdding();
        foreach (var t in threads) t.Join(TimeSpan.FromSeconds(5));
        queue.Dispose();
    }
}
