using System.CommandLine;
using Influence.Client;
using Influence.Core.Data;
using Influence.Core.Safety;

Influence.Core.Compute.NativeLifetimeGuard.EnsureActive(); // before any TorchSharp call: see its comment
Influence.Core.Compute.HugePages.Enable();               // before any TorchSharp call: see its comment
var root = new RootCommand("Influence: which training examples are responsible for a model's predictions, checked against leave-one-out retraining.");
root.Subcommands.Add(ScoreCommand.Create());
root.Subcommands.Add(LooCommand.Create());
root.Subcommands.Add(StudyCommand.Create());
root.Subcommands.Add(CorrectCommand.Create());
root.Subcommands.Add(FadingCommand.Create());
root.Subcommands.Add(MislabelCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(CompareMethodsCommand.Create());
root.Subcommands.Add(MethodsCommand.Create());
root.Subcommands.Add(ExportWeightsCommand.Create());
root.Subcommands.Add(ClusterCommands.Cluster());
root.Subcommands.Add(ClusterCommands.Jobs());
root.Subcommands.Add(StoreCommand.Create());

var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    // A bad option is a usage error: exit 2, as every other bad setting (System.CommandLine's own default is 1).
    foreach (var e in parse.Errors) ScoreCommand.Fail(Echo.Cap(e.Message, 200), 2);
    var names = new List<string>();
    for (System.CommandLine.Parsing.SymbolResult? r = parse.CommandResult; r is System.CommandLine.Parsing.CommandResult c; r = c.Parent) names.Insert(0, c.Command.Name);
    names[0] = "influence";
    Console.Error.WriteLine($"({string.Join(' ', names)} --help lists the options)");
    return 2;
}
bool verbose = args.Contains("--verbose");
try
{
    return await parse.InvokeAsync(new InvocationConfiguration
    {
        EnableDefaultExceptionHandler = false,
        // Ctrl+C / SIGTERM cancel the command; an embedded silo then needs a few seconds to stop its compute safely.
        ProcessTerminationTimeout = TimeSpan.FromSeconds(30),
    });
}
catch (OperationCanceledException)
{
    // Ctrl+C or SIGTERM while watching a job. A job on a cluster keeps running there; an embedded
    // one stopped with this process (LOO jobs and studies resume from their finished work).
    Console.Error.WriteLine(JobRunner.Submitted switch
    {
        null => "interrupted before any job was submitted",
        { Embedded: false } j => $"interrupted: job {j.JobId} keeps running on the cluster (influence job show {j.JobId} --cluster ...)",
        { Kind: "loo" or "study" } j => $"interrupted: an embedded LOO job or study resumes with --resume {j.JobId}",
        var j => $"interrupted: the embedded job {j.Value.JobId} stopped with this process; run the command again",
    });
    return 130;
}
// Bad --cluster or --store: say what is wrong, without a stack trace.
catch (ConnectionException e) { return ScoreCommand.Fail(e.Message, 3); }
// The job finished but its outputs cannot be brought into --out: they stay in the store.
catch (JobOutputException e) { return ScoreCommand.Fail(e.Message, 1); }
// Bad data found on this side (the stack trace is for --verbose).
catch (DataFormatException e) when (!verbose) { return ScoreCommand.Fail(e.Message, 2); }
