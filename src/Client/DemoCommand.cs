using System.CommandLine;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Models;

namespace Influence.Client;

/// <summary>`influence demo`: a score job on the bundled digits data in an embedded silo, no arguments needed.</summary>
public static class DemoCommand
{
    private static readonly Option<string> Out = new("--out") { Description = "Output folder (the demo's own: a second run replaces the first's results)", DefaultValueFactory = _ => "influence-demo" };

    public static Command Create()
    {
        var command = new Command("demo", "Explain five digit predictions with exact influence (embedded silo, bundled data)");
        command.Options.Add(Out);
        command.Options.Add(ScoreCommand.Cluster);
        command.Options.Add(ScoreCommand.Store);
        command.Options.Add(ScoreCommand.Verbose);
        command.SetAction((parse, ct) =>
        {
            var data = Path.Combine(AppContext.BaseDirectory, "data");
            var request = new ScoreSettings
            {
                Train = new DatasetSpec(Path.Combine(data, "digits_train.csv")),
                Test = new DatasetSpec(Path.Combine(data, "digits_test.csv")),
                Model = ModelKind.Logreg,
                L2 = 1e-2,
                TestIndices = [0, 1, 2, 3, 4],
                Shards = 4,
                TopK = 10,
            };
            OutputFolder output;
            try { output = OutputFolder.Prepare(parse.GetValue(Out)!, overwrite: true, "demo"); }
            catch (ArgumentException e) { return Task.FromResult(ScoreCommand.Fail(e, 2)); }
            Console.WriteLine("Demo: softmax logistic regression on 1257 8×8 digit images (bundled), exact influence on test points 0-4.");
            return ScoreCommand.RunJobAsync(request, output, parse.GetValue(ScoreCommand.Cluster), parse.GetValue(ScoreCommand.Store)!, parse.GetValue(ScoreCommand.Verbose), showTopK: 3, ct);
        });
        return command;
    }
}
