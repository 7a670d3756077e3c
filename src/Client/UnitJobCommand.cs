using System.CommandLine;
using Influence.Abstractions;
using Influence.Core.Jobs;
using Influence.Core.Safety;

namespace Influence.Client;

/// <summary>The run of a command whose job is units of short trainings (correct, fading): checks, submission, resume, outputs.</summary>
public static class UnitJobCommand
{
    /// <param name="kind">The command's name: job ids and messages.</param>
    /// <param name="build">The request and its --parallel from the options (ArgumentException: exit 2).</param>
    /// <param name="settingsKeyOf">Where a job's settings are in the store (a resume must find them).</param>
    /// <param name="finishedFile">The file whose presence marks the job's outputs as complete.</param>
    /// <param name="printSummary">Prints a table from the exported output folder.</param>
    /// <param name="scoreOf">The request's score settings (report.html's data and model).</param>
    public static async Task<int> RunAsync<TRequest>(ParseResult parse, CancellationToken ct, string kind, Func<ParseResult, (TRequest Request, int Parallel)> build,
        Func<string, string> settingsKeyOf, Func<TRequest, string> describe, Func<ClusterConnection, string, TRequest, CancellationToken, Task<JobStatus>> run,
        string finishedFile, Action<string> printSummary, Func<TRequest, ScoreSettings> scoreOf)
    {
        TRequest request;
        int parallel;
        OutputFolder output;
        string? resume = parse.GetValue(LooCommand.Resume);
        try
        {
            (request, parallel) = build(parse);
            if (parallel < 1) throw new ArgumentException($"--parallel must be ≥ 1, not {parallel}");
            if (resume is not null) StoreKeys.CheckJobId(resume, "--resume");
            output = ScoreCommand.PrepareOut(parse, kind);
        }
        catch (ArgumentException e) { return ScoreCommand.Fail(e, 2); }

        string storeRoot = parse.GetValue(ScoreCommand.Store)!;
        await using var connection = await ClusterConnection.OpenAsync(parse.GetValue(ScoreCommand.Cluster), storeRoot, parse.GetValue(ScoreCommand.Verbose), ct, parallel);
        var jobId = resume ?? JobRunner.NewJobId(kind);
        if (resume is not null && !connection.Store.Exists(settingsKeyOf(resume)))
            return ScoreCommand.Fail($"--resume {resume}: no such {kind} job in the store {storeRoot}", 2);
        Console.WriteLine($"Job {jobId} on the {connection.Description}: {describe(request)}{(resume is null ? "" : " (resumed)")}");
        var status = await run(connection, jobId, request, ct);
        if (status.Phase == JobPhase.Cancelled) return ScoreCommand.Fail($"job {jobId} was cancelled (resume with --resume {jobId})", 4);
        if (status.Phase == JobPhase.Failed) return ScoreCommand.FailedJob($"job {jobId}", status, $"resume with --resume {jobId}");
        output.Export(connection.Store, jobId, ScoreOutputs.Files, finishedFile);
        ReportPage.Write(output, $"influence {kind}: job {jobId}", [finishedFile], scoreOf(request));
        printSummary(output.FullPath);
        Console.WriteLine($"Done in {status.ElapsedSeconds:F1} s. Report: {Path.Combine(output.FullPath, finishedFile)}");
        return 0;
    }
}
