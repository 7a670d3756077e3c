using Orleans.Placement;

namespace Influence.Grains;

/// <summary>
/// Places a grain whose string key ends in "/{index}" on silo number index mod n (silos in
/// address order), so the shards of one job spread evenly over the cluster. Orleans' default
/// placement prefers the calling silo and would put every shard there.
/// </summary>
[Serializable, GenerateSerializer, Immutable, SuppressReferenceTracking]
public sealed class SpreadByIndexPlacement : PlacementStrategy
{
    public static readonly SpreadByIndexPlacement Instance = new();

    /// <summary>Request-context key of a SiloAddress the activation should go to, if that silo is up (a coordinator placing a worker on a silo that just joined).</summary>
    public const string SiloHintKey = "influence.silo-hint";
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SpreadByIndexPlacementAttribute() : PlacementAttribute(SpreadByIndexPlacement.Instance);
