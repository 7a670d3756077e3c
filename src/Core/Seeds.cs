namespace Influence.Core;

/// <summary>
/// Seeds of the random streams derived from one user seed (--method-seed, a removal set's seed).
/// Each use has its own stream, kept apart by a large multiplier and an offset, so that two uses
/// never draw the same numbers; the formulas are fixed, so a run repeats exactly.
/// </summary>
public static class Seeds
{
    /// <summary>LiSSA repeat <paramref name="repeat"/> of the preconditioning stage.</summary>
    public static int LissaRepeat(int seed, int repeat) => unchecked(seed * 7919 + repeat);

    /// <summary>LiSSA's self-influence solves of the column block starting at <paramref name="firstColumn"/> (apart from the repeats by 1e6).</summary>
    public static int LissaSelfInfluence(int seed, int firstColumn) => unchecked(seed * 7919 + 1_000_000 + firstColumn);

    /// <summary>Sampled Fisher labels of a shard: pass 0 the K-FAC factors, pass 1 the EK-FAC corrections.</summary>
    public static int FisherLabels(int seed, int shard, int pass) => unchecked(seed * 100_003 + 2 * shard + pass);

    /// <summary>The rows kept in LDS subset <paramref name="index"/>.</summary>
    public static int LdsSubset(int seed, int index) => unchecked(seed * 1_000_003 + index) & int.MaxValue;

    /// <summary>`influence correct`'s random selection for one target: stream 0 any training row, 1 rows of its class.</summary>
    public static int CorrectSelection(int seed, int testIndex, int stream) => unchecked(seed * 1_000_003 + testIndex * 7919 + stream * 104_729) & int.MaxValue;

    /// <summary>`influence fading`'s minibatch order (the same for the baseline and every perturbed run).</summary>
    public static int FadingBatches(int seed) => unchecked(seed * 1_000_033 + 17) & int.MaxValue;

    /// <summary>TRAK's random projection, block <paramref name="block"/> of its rows (a golden-ratio multiplier spreads the seeds).</summary>
    public static ulong ProjectionBlock(int seed, long block) => unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)block);
}
