using Influence.Core.Safety;

namespace Influence.Core.Storage;

/// <summary>
/// Where a job's artifacts live in the store: everything of job ID under jobs/ID/. The job id is
/// checked here (one plain segment), since any client that reaches a gateway can send one.
/// </summary>
public static class JobKeys
{
    /// <summary>jobs/ID: the folder of one job (a score job, a LOO study and its score job, a study).</summary>
    public static string Prefix(string jobId) => $"jobs/{StoreKeys.CheckJobId(jobId, "job")}";

    /// <summary>The list of output files a job writes beyond a score job's (LOO studies, study grids).</summary>
    public static string Manifest(string jobId) => $"{Prefix(jobId)}/outputs.json";

    /// <summary>A score job's settings, recorded by its coordinator: every shard reads them (a resume must match them).</summary>
    public static string ScoreSettings(string jobId) => $"{Prefix(jobId)}/settings.json";

    /// <summary>A LOO study's persisted settings (a resume must match them); every retrain worker reads them.</summary>
    public static string LooSettings(string jobId) => $"{Prefix(jobId)}/loo/settings.json";
}
