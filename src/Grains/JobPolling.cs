using Influence.Abstractions;

namespace Influence.Grains;

/// <summary>
/// Watching a job grain to its end, the one way the client and the coordinators of composed jobs
/// (a LOO study's score job, a study's LOO jobs) do it. A status call that fails or times out is
/// tried again at the next poll. A job that answers Pending lost its activation (its silo died
/// and it came back empty elsewhere): starting it again resumes it from the artifact store.
/// </summary>
public static class JobPolling
{
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The job's next status: <paramref name="last"/> if the call failed, or the status of a restart if it answered Pending.</summary>
    public static async Task<JobStatus> NextAsync(Func<Task<JobStatus>> start, Func<Task<JobStatus>> getStatus, JobStatus last, CancellationToken ct = default)
    {
        JobStatus next;
        try { next = await getStatus().WaitAsync(CallTimeout, ct); }
        catch (Exception e) when (e is OrleansException or TimeoutException) { return last; }
        return next.Phase == JobPhase.Pending ? await start() : next;
    }

    /// <summary>Starts the job and polls it every <paramref name="interval"/> until it ends, passing each unfinished status to <paramref name="onStatus"/>.</summary>
    public static async Task<JobStatus> RunToEndAsync(Func<Task<JobStatus>> start, Func<Task<JobStatus>> getStatus, TimeSpan interval,
        Func<JobStatus, Task>? onStatus = null, CancellationToken ct = default)
    {
        var status = await start();
        while (!status.IsFinished)
        {
            if (onStatus is not null) await onStatus(status);
            await Task.Delay(interval, ct);
            status = await NextAsync(start, getStatus, status, ct);
        }
        return status;
    }
}
