namespace Influence.Grains;

/// <summary>
/// Per-silo cache of loaded artifacts (datasets, checkpoints, factorisations), so that several
/// shards of one job on the same silo load each once. Keeps the most recently used entries;
/// values of a finished job (<see cref="Evict"/>) that are IDisposable (tensors) are disposed.
/// </summary>
public sealed class ArtifactCache(int capacity = 6)
{
    private readonly object sync = new();
    private readonly LinkedList<(string Key, Lazy<object> Value)> entries = new();

    public T GetOrAdd<T>(string key, Func<T> load) where T : class
    {
        Lazy<object> lazy;
        lock (sync)
        {
            var node = entries.First;
            while (node is not null && node.Value.Key != key) node = node.Next;
            if (node is not null)
            {
                entries.Remove(node);
                entries.AddFirst(node);
                lazy = node.Value.Value;
            }
            else
            {
                lazy = new Lazy<object>(() => load(), LazyThreadSafetyMode.ExecutionAndPublication);
                entries.AddFirst((key, lazy));
                // An entry pushed out here may still be in use by a task on another compute thread
                // (a silo runs several): disposing it would free native memory under that task (a
                // segfault in libtorch was seen with two compute tasks). It is dropped, not
                // disposed; its tensors' finalizers free the memory once nothing uses them.
                // Evict(prefix), called when a job has finished, still disposes at once.
                while (entries.Count > capacity) entries.RemoveLast();
            }
        }
        try { return (T)lazy.Value; }
        catch
        {
            lock (sync)
            {
                var node = entries.First;
                while (node is not null && !ReferenceEquals(node.Value.Value, lazy)) node = node.Next;
                if (node is not null) entries.Remove(node); // do not cache failures
            }
            throw;
        }
    }

    /// <summary>Drops every entry whose key starts with the prefix (a finished job).</summary>
    public void Evict(string prefix)
    {
        lock (sync)
        {
            var node = entries.First;
            while (node is not null)
            {
                var next = node.Next;
                if (node.Value.Key.StartsWith(prefix, StringComparison.Ordinal))
                {
                    entries.Remove(node);
                    if (node.Value.Value.IsValueCreated && node.Value.Value.Value is IDisposable d) d.Dispose();
                }
                node = next;
            }
        }
    }
}
