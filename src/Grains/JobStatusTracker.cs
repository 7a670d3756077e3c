using System.Diagnostics;
using Influence.Abstractions;

namespace Influence.Grains;

/// <summary>
/// A coordinator's status and clock: written by the job running in the background, read by the
/// interleaved GetStatus. Shared by the score, LOO and study coordinators.
/// </summary>
public sealed class JobStatusTracker(string jobId, string? coordinator = null, Action<JobStatus>? changed = null)
{
    private volatile JobStatus status = new() { JobId = jobId, Phase = JobPhase.Pending, Message = "not started" };
    private readonly Stopwatch clock = new();
    private Task? running;

    public JobStatus Current => status;
    /// <summary>Whether the work has been started in this activation.</summary>
    public bool Started => running is not null;
    public double ElapsedSeconds => clock.Elapsed.TotalSeconds;

    /// <summary>
    /// Starts the job unless it has started already. <paramref name="prepare"/> checks the request
    /// (an ArgumentException fails the job with its message) and returns the work, which then runs
    /// in the background with the clock going. Returns the status either way.
    /// </summary>
    public Task<JobStatus> StartOnce(Func<Func<Task>> prepare)
    {
        if (running is null)
        {
            Func<Task> work;
            try { work = prepare(); }
            catch (ArgumentException e)
            {
                Fail(e.Message);
                return Snapshot();
            }
            clock.Start();
            running = Timed(work);
        }
        return Snapshot();
    }

    private async Task Timed(Func<Task> work)
    {
        try { await work(); }
        finally { clock.Stop(); }
    }

    /// <summary>The current status with the elapsed time filled in.</summary>
    public Task<JobStatus> Snapshot()
    {
        var s = status;
        return Task.FromResult(s with { ElapsedSeconds = Started ? clock.Elapsed.TotalSeconds : s.ElapsedSeconds, Coordinator = coordinator ?? s.Coordinator });
    }

    public void Set(JobPhase phase, long done, long total, string message, double rate = 0, double eta = 0, string? outputPrefix = null)
    {
        status = new JobStatus { JobId = jobId, Phase = phase, Done = done, Total = total, Message = message, Rate = rate, EtaSeconds = eta, OutputPrefix = outputPrefix };
        changed?.Invoke(status);
    }

    /// <summary>Shows how a job ended in an earlier activation (from its persisted record).</summary>
    public void Restore(JobStatus final) => status = final;

    public void Cancelled(string message)
    {
        var s = status;
        status = new JobStatus { JobId = jobId, Phase = JobPhase.Cancelled, Message = message, Done = s.Done, Total = s.Total, OutputPrefix = s.OutputPrefix };
    }

    /// <summary>
    /// Marks the job failed, keeping the last message and progress for context. The error is kept
    /// short and free of secrets: it is persisted in the job record and shown to every client.
    /// </summary>
    public void Fail(string error, bool inputRejected = false)
    {
        var s = status;
        status = new JobStatus { JobId = jobId, Phase = JobPhase.Failed, Error = Influence.Core.Safety.Echo.Cap(Influence.Core.Safety.Secrets.Redact(error), 1000), Message = s.Message, Done = s.Done, Total = s.Total, InputRejected = inputRejected };
    }
}
