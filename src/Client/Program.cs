using System.CommandLine;
using Influence.Client;

Influence.Core.Compute.NativeLifetimeGuard.EnsureActive(); // before any TorchSharp call: see its comment
var root = new RootCommand("Influence: which training examples are responsible for a model's predictions, checked against leave-one-out retraining.");
root.Subcommands.Add(ScoreCommand.Create());
root.Subcommands.Add(LooCommand.Create());
root.Subcommands.Add(StudyCommand.Create());
root.Subcommands.Add(MislabelCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(CompareMethodsCommand.Create());
root.Subcommands.Add(ClusterCommands.Cluster());
root.Subcommands.Add(ClusterCommands.Jobs());
root.Subcommands.Add(StoreCommand.Create());
try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration
    {
        EnableDefaultExceptionHandler = false,
        // Ctrl+C / SIGTERM cancel the command; an embedded silo then needs a few seconds to stop its compute safely.
        ProcessTerminationTimeout = TimeSpan.FromSeconds(30),
    });
}
catch (OperationCanceledException)
{
    // Ctrl+C or SIGTERM while watching a job. A job on a cluster keeps running there
    // (influence job show JOB); an embedded one stopped with this process (--resume JOB).
    Console.Error.WriteLine("interrupted: a job submitted to a cluster keeps running there (influence job show JOB); an embedded LOO job or study resumes with --resume JOB");
    return 130;
}
catch (ConnectionException e)
{
    // Bad --cluster or --store: say what is wrong, without a stack trace.
    Console.Error.WriteLine($"error: {e.Message}");
    return 3;
}
