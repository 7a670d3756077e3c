using Influence.Abstractions;

namespace Influence.Grains;

[GenerateSerializer]
public sealed class JobRegistryState
{
    [Id(0)] public List<JobEntry> Jobs { get; set; } = [];
}

/// <summary>The cluster's list of jobs (the most recent <see cref="Capacity"/>), in grain storage.</summary>
public sealed class JobRegistryGrain(
    [PersistentState("registry", JobGrainNames.StorageName)] IPersistentState<JobRegistryState> state) : Grain, IJobRegistryGrain
{
    public const int Capacity = 1000;

    public async Task Register(JobEntry entry)
    {
        var jobs = state.State.Jobs;
        if (jobs.Any(j => j.JobId == entry.JobId && j.Kind == entry.Kind)) return;
        jobs.Add(entry);
        if (jobs.Count > Capacity) jobs.RemoveRange(0, jobs.Count - Capacity);
        await state.WriteStateAsync();
    }

    public Task<JobEntry[]> List() => Task.FromResult(state.State.Jobs.ToArray());
}
