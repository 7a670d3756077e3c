using System.Globalization;
using Influence.Grains;
using Orleans.Runtime.Placement;

namespace Influence.Silo;

/// <summary>Chooses the silo a caller asked for (<see cref="SpreadByIndexPlacement.SiloHintKey"/>), else silo (index mod n) for keys ending in "/{index}"; other keys by a stable hash.</summary>
public sealed class SpreadByIndexPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var silos = context.GetCompatibleSilos(target).OrderBy(s => s.ToString(), StringComparer.Ordinal).ToArray();
        if (target.RequestContextData is { } data && data.TryGetValue(SpreadByIndexPlacement.SiloHintKey, out var hint) && hint is SiloAddress wanted && silos.Contains(wanted))
            return Task.FromResult(wanted);
        var key = target.GrainIdentity.Key.ToString() ?? "";
        var slash = key.LastIndexOf('/');
        int index = slash >= 0 && int.TryParse(key.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int k)
            ? k
            : (int)(StableHash(key) & int.MaxValue);
        return Task.FromResult(silos[index % silos.Length]);
    }

    private static uint StableHash(string s)
    {
        uint h = 2166136261;
        foreach (char c in s) h = (h ^ c) * 16777619;
        return h;
    }
}
