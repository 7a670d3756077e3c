namespace Influence.Grains;

/// <summary>
/// Where a silo may read a job's input files from. A silo of a cluster takes requests from anyone
/// who reaches its gateway, so it reads only store:KEY artifacts (the client uploads its files);
/// the embedded silo, inside the user's own client process, also opens local paths.
/// </summary>
public sealed class InputFileOptions
{
    public bool AllowLocalFiles { get; set; }
}
