using Influence.Core.Safety;

namespace Influence.Core.Storage;

/// <summary>
/// The store's key layout, in one place: everything of job ID under jobs/ID/ — its settings, its
/// outputs, a LOO study's loo/ folder, and work/, the intermediate artifacts (each method names
/// its own files there). The job id is checked here (one plain segment), since any client that
/// reaches a gateway can send one.
/// </summary>
public static class JobKeys
{
    /// <summary>jobs/ID: the folder of one job (a score job, a LOO study and its score job, a study).</summary>
    public static string Prefix(string jobId) => $"jobs/{StoreKeys.CheckJobId(jobId, "job")}";

    /// <summary>The list of output files a job writes beyond a score job's (LOO studies, study grids).</summary>
    public static string Manifest(string jobId) => $"{Prefix(jobId)}/outputs.json";

    /// <summary>A score job's settings, recorded by its coordinator: every shard reads them (a resume must match them).</summary>
    public static string ScoreSettings(string jobId) => $"{Prefix(jobId)}/settings.json";

    /// <summary>θ̂ and the model it belongs to (trained by the score job, or the given --checkpoint).</summary>
    public static string Checkpoint(string jobId) => $"{Prefix(jobId)}/checkpoint.json";

    /// <summary>A job's output file (influence.csv, topk.csv, summary.json, a report's files, …).</summary>
    public static string Output(string jobId, string fileName) => StoreKeys.IsPlainFileName(fileName) ? $"{Prefix(jobId)}/{fileName}"
        : throw new ArgumentException($"'{Echo.Cap(fileName)}' is not a plain file name");

    /// <summary>jobs/ID/work: intermediate artifacts, deleted when the outputs are written.</summary>
    public static string WorkPrefix(string jobId) => $"{Prefix(jobId)}/work";

    /// <summary>One intermediate artifact, named by the step that writes it (a name may have folders: hvp/00001/v.safetensors).</summary>
    public static string Work(string jobId, string name) => $"{WorkPrefix(jobId)}/{name}";

    /// <summary>A LOO study's frozen plan of units.</summary>
    public static string LooPlan(string jobId) => $"{Prefix(jobId)}/loo/plan.json";

    /// <summary>One LOO unit's result rows, written once by the worker that ran it.</summary>
    public static string LooUnit(string jobId, int unitId) => $"{Prefix(jobId)}/loo/units/unit-{unitId:D5}.csv";

    /// <summary>A LOO study's persisted settings (a resume must match them); every retrain worker reads them.</summary>
    public static string LooSettings(string jobId) => $"{Prefix(jobId)}/loo/settings.json";
}
