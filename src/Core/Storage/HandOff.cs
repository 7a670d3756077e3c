using static TorchSharp.torch;

namespace Influence.Core.Storage;

/// <summary>
/// The last large artifact this process wrote to the store (a tensor, a factorised Hessian), kept
/// in memory for a reader in the same process, which takes it instead of reading it back. The store
/// still gets every write (a resumed or moved job reads it from there); this only saves the read
/// where writer and reader share a process, as on a single silo: the partial Hessian its shard
/// hands to the coordinator, and the factor the coordinator hands to the shards' self-influence
/// (at 2,000 rows each is 493 MB, and reading one back cost 0.5–1 s of a 10 s job). One item at
/// most: keeping another disposes the earlier one, so an item nobody takes (its reader on another
/// silo) costs one item's memory until the next, not a leak.
/// </summary>
public sealed class HandOff
{
    /// <summary>This process's hand-off, which jobs use.</summary>
    public static HandOff Process { get; } = new();

    private readonly Lock gate = new();
    private (IArtifactStore Store, string Key, IDisposable Item)? held;

    /// <summary>Keeps <paramref name="item"/> (just written under <paramref name="key"/>) for <see cref="Take{T}"/>; it now belongs to the hand-off.</summary>
    public void Keep(IArtifactStore store, string key, IDisposable item)
    {
        if (item is Tensor t) t.DetachFromDisposeScope();
        (IArtifactStore, string, IDisposable)? earlier;
        lock (gate) (earlier, held) = (held, (store, key, item));
        earlier?.Item3.Dispose();
    }

    /// <summary>The item kept for this store and key (the caller now owns it), or null: read it from the store.</summary>
    public T? Take<T>(IArtifactStore store, string key) where T : class, IDisposable
    {
        lock (gate)
        {
            if (held is not { } h || !ReferenceEquals(h.Store, store) || h.Key != key || h.Item is not T item) return null;
            held = null;
            return item;
        }
    }
}
