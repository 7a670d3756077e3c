using Influence.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Influence.Grains;

public static class JobGrainNames
{
    /// <summary>The grain-state provider job records live in: memory in the embedded mode, Redis in a cluster.</summary>
    public const string StorageName = "jobs";
    public const string RegistryKey = "jobs";
    public const string KeepAliveReminder = "keep-alive";
}

/// <summary>A coordinator's persisted record: what it was asked to do, and how it ended.</summary>
[GenerateSerializer]
public sealed class JobRecord<TRequest> where TRequest : class
{
    [Id(0)] public TRequest? Request { get; set; }
    [Id(1)] public JobStatus? Final { get; set; }
    [Id(2)] public bool CancelRequested { get; set; }
}

/// <summary>
/// What the score, LOO and study coordinators share: a persisted record of the request, so that a
/// coordinator re-activated on another silo (its silo died) resumes the job by itself; a reminder
/// that re-activates it even when no client is polling; cancellation; and registration in the
/// cluster's job list. The work itself is idempotent over the artifact store, so resuming redoes
/// only what was in flight.
/// </summary>
public abstract partial class JobGrain<TRequest>(IPersistentState<JobRecord<TRequest>> record, ILogger logger) : Grain, IJobGrain, IRemindable
    where TRequest : class
{
    private CancellationTokenSource cancellation = new();
    protected JobStatusTracker Tracker { get; private set; } = null!;

    /// <summary>
    /// The silo's grain factory, resolved at activation. Coordinators call other grains through it,
    /// never through Grain.GrainFactory, which throws once the activation is deactivating (its silo
    /// stopping) while the coordinator's loop may still be running a turn.
    /// </summary>
    protected IGrainFactory Grains { get; private set; } = null!;
    protected string JobId => this.GetPrimaryKeyString();
    private JobStatusTracker NewTracker() => new(JobId, SiloName, s =>
    {
        if (!s.IsFinished) InfluenceMetrics.JobProgress(JobId, Kind, s.Done, s.Total);
    });

    private string SiloName => ServiceProvider.GetRequiredService<ILocalSiloDetails>().SiloAddress.ToString();
    /// <summary>
    /// Cancelled when this silo stops: the job's work gives up and resumes elsewhere. Taken at
    /// activation: a deactivating grain's services may be gone by the time the work notices.
    /// </summary>
    private CancellationToken siloStopping;
    /// <summary>Cancelled when the user cancels the job.</summary>
    protected CancellationToken Cancellation => cancellation.Token;

    /// <summary>One of <see cref="JobKinds"/>.</summary>
    protected abstract string Kind { get; }

    /// <summary>Checks the request (ArgumentException: the job fails with its message) and returns the work.</summary>
    protected abstract Func<Task> Prepare(TRequest request);

    /// <summary>Cancels the jobs this one started (best effort).</summary>
    protected virtual Task CancelChildren() => Task.CompletedTask;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        Tracker = NewTracker();
        siloStopping = ServiceProvider.GetRequiredService<ComputeExecutor>().Stopping;
        Grains = ServiceProvider.GetRequiredService<IGrainFactory>();
        var state = record.State;
        if (state.Final is { } final) Tracker.Restore(final);
        else if (state.CancelRequested)
        {
            // Cancelled, but its silo died before it could record the end.
            Tracker.Cancelled("cancelled by the user");
            await Finish();
        }
        else if (state.Request is { } request)
        {
            // This job was running when its previous activation was lost: carry on from the store.
            LogResuming(JobId, Kind);
            _ = Launch(request);
        }
    }

    public async Task<JobStatus> Start(TRequest request)
    {
        // The id names the job's folder in the store (jobs/ID/...): one plain segment, whoever sent it.
        if (!Influence.Core.Safety.StoreKeys.IsJobId(JobId))
        {
            Tracker.Fail($"'{Influence.Core.Safety.Echo.Cap(JobId)}' is not a job id (letters, digits, '.', '_' and '-')");
            return await Tracker.Snapshot();
        }
        if (record.State.Final is { Phase: JobPhase.Completed } completed) return completed;
        if (record.State.Final is not null)
        {
            // Failed or cancelled before: starting it again resumes it (finished units are in the store).
            record.State.Final = null;
            cancellation = new CancellationTokenSource();
            Tracker = NewTracker();
        }
        if (!Tracker.Started)
        {
            record.State.Request = request;
            record.State.CancelRequested = false;
            await record.WriteStateAsync();
            await this.RegisterOrUpdateReminder(JobGrainNames.KeepAliveReminder, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));
            await RegisterAsync(JobId, Kind, parent: null);
        }
        return await Launch(request);
    }

    /// <summary>Adds a job to the cluster's list; a job already listed keeps its entry (and its parent).</summary>
    protected Task RegisterAsync(string jobId, string kind, string? parent) =>
        Grains.GetGrain<IJobRegistryGrain>(JobGrainNames.RegistryKey)
            .Register(new JobEntry { JobId = jobId, Kind = kind, SubmittedUtc = DateTime.UtcNow, Parent = parent });

    /// <summary>
    /// Runs a score job this job needs (θ̂ and its dense influence), showing its progress as this
    /// job's; skipped when its influence.npy and summary.json exist (a resume).
    /// </summary>
    protected async Task RunScoreJobAsync(Influence.Core.Storage.IArtifactStore store, ComputeExecutor executor, string id, Influence.Core.Jobs.ScoreSettings request, string what)
    {
        if (await executor.Run(() => store.Exists(Influence.Core.Storage.JobKeys.Output(id, "influence.npy")) && store.Exists(Influence.Core.Storage.JobKeys.Output(id, "summary.json")))) return;
        var grain = Grains.GetGrain<IScoreJobGrain>(id);
        await RegisterAsync(id, JobKinds.Score, parent: JobId);
        var s = await JobPolling.RunToEndAsync(() => grain.Start(request), grain.GetStatus, TimeSpan.FromMilliseconds(200), status =>
        {
            Tracker.Set(status.Phase, status.Done, status.Total, $"{what}: {status.Message}", 0, 0, null);
            return Task.CompletedTask;
        }, Cancellation);
        if (s.Phase == JobPhase.Cancelled) throw new OperationCanceledException(Cancellation);
        if (s.Phase == JobPhase.Failed) throw ChildFailed(s, $"the {what}");
    }

    /// <summary>
    /// What a job throws when a job it ran failed: rejected input stays rejected input (exit 2 at the
    /// client), with the child's message as it is (it names the file and row; the client says the job refused its input).
    /// </summary>
    protected static Exception ChildFailed(JobStatus child, string what) => child.InputRejected
        ? new ArgumentException(child.Error)
        : new InvalidOperationException($"{what} failed: {child.Error}");

    /// <summary>Seconds since the stopwatch last restarted; restarts it (a job's phase timings).</summary>
    protected static double Lap(System.Diagnostics.Stopwatch sw)
    {
        var s = sw.Elapsed.TotalSeconds;
        sw.Restart();
        return s;
    }

    private async Task<JobStatus> Launch(TRequest request)
    {
        var status = await Tracker.StartOnce(() => Work(request));
        if (status.IsFinished && record.State.Final is null) await Finish(); // rejected before it started
        return status;
    }

    private Func<Task> Work(TRequest request)
    {
        var work = Prepare(request);
        return async () =>
        {
            InfluenceMetrics.JobsStarted.Add(1, new KeyValuePair<string, object?>("kind", Kind));
            try { await work(); }
            catch (OperationCanceledException) when (Cancellation.IsCancellationRequested) { Tracker.Cancelled("cancelled by the user"); }
            catch (OperationCanceledException) when (siloStopping.IsCancellationRequested)
            {
                // Not an end: no final status is recorded, so the job resumes from the store when
                // its coordinator is re-activated (on another silo, or this one after a restart).
                LogStopped(JobId, Kind);
                return;
            }
            catch (Exception e)
            {
                var cause = e is AggregateException { InnerException: { } inner } ? inner : e;
                // Bad input (data, settings, files) is the user's to fix: its message says what and
                // where, and a stack trace would only bury it. Anything else is a bug: log it whole.
                var rejected = cause is ArgumentException or Influence.Core.Data.DataFormatException or InvalidDataException or FileNotFoundException;
                if (rejected) LogRejected(JobId, Kind, Influence.Core.Safety.Secrets.Redact(cause.Message));
                else LogFailed(e, JobId, Kind);
                Tracker.Fail(cause.Message, rejected);
            }
            await Finish();
        };
    }

    private async Task Finish()
    {
        var status = await Tracker.Snapshot();
        if (!status.IsFinished) return;
        record.State.Final = status;
        await record.WriteStateAsync();
        InfluenceMetrics.JobEnded(JobId, Kind, status.Phase.ToString().ToLowerInvariant());
        await StopReminder();
    }

    public Task<JobStatus> GetStatus() => Tracker.Snapshot();

    public async Task<JobStatus> Cancel()
    {
        if (record.State.Final is { } final) return final;
        record.State.CancelRequested = true;
        await record.WriteStateAsync();
        cancellation.Cancel();
        await CancelChildren();
        if (!Tracker.Started)
        {
            Tracker.Cancelled("cancelled before it started");
            await Finish();
        }
        LogCancelled(JobId, Kind);
        return await Tracker.Snapshot();
    }

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        // The activation itself is the point: OnActivateAsync resumed the job if it was running.
        if (record.State.Final is not null || record.State.CancelRequested) await StopReminder();
    }

    private async Task StopReminder()
    {
        try
        {
            if (await this.GetReminder(JobGrainNames.KeepAliveReminder) is { } reminder) await this.UnregisterReminder(reminder);
        }
        catch (Exception e) when (e is OrleansException or TimeoutException) { /* it fires once more and stops then */ }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Kind} job {JobId}: resuming after its coordinator was re-activated")]
    private partial void LogResuming(string jobId, string kind);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Kind} job {JobId}: stopped because the silo is shutting down; it resumes from its finished work when its coordinator is re-activated")]
    private partial void LogStopped(string jobId, string kind);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Kind} job {JobId} failed")]
    private partial void LogFailed(Exception e, string jobId, string kind);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Kind} job {JobId} failed on its input: {Problem}")]
    private partial void LogRejected(string jobId, string kind, string problem);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Kind} job {JobId}: cancelled")]
    private partial void LogCancelled(string jobId, string kind);
}
