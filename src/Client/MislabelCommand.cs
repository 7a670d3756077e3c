using System.CommandLine;
using System.Globalization;
using System.Text;
using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Diagnostics;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Spectre.Console;

namespace Influence.Client;

/// <summary>
/// `influence mislabel`: trains on noisy labels, ranks the training examples by self-influence,
/// training loss and gradient norm, and reports how many of the changed labels each ranking
/// finds in its top 10% and 20% (random ranking as the baseline).
/// </summary>
public static class MislabelCommand
{
    public static readonly Option<string> Labels = new("--labels") { Description = "CSV index,label_clean,label_noisy (one row per training row); the model trains on label_noisy", Required = true };
    public static readonly Option<int> RandomSeed = new("--random-seed") { Description = "Seed of the random baseline ranking", DefaultValueFactory = _ => 0 };
    private static readonly double[] Fractions = [0.10, 0.20];

    public static Command Create()
    {
        var command = new Command("mislabel", "Find mislabelled training examples: recall of changed labels by self-influence, loss and gradient norm");
        foreach (var o in LooCommand.ScoreOptions()) command.Options.Add(o);
        command.Options.Add(Labels);
        command.Options.Add(RandomSeed);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        ScoreSettings request;
        OutputFolder output;
        NoisyLabels labels;
        Dataset noisy;
        try
        {
            request = ScoreCommand.BuildSettings(parse);
            // mislabel ranks by self-influence: a method without it cannot rank.
            if (request.Estimator.SelfInfluenceSource == SelfInfluenceSource.None)
                throw new ArgumentException($"--method {request.Method} gives no self-influence ({request.Estimator.NoSelfInfluenceReason}); mislabel ranks by it: use another method");
            var train = request.Train.Load();
            labels = NoisyLabels.Read(Path.GetFullPath(parse.GetValue(Labels)!), train.Count);
            noisy = labels.ApplyNoisy(train);
            // The silos read the noisy training set from a file: write it (features already scaled).
            output = ScoreCommand.PrepareOut(parse, "mislabel");
            var noisyPath = output.PathOf("train_noisy_labels.csv");
            output.Write("train_noisy_labels.csv", s => WriteCsv(noisy, s));
            // mislabel ranks by self-influence: cg and lissa solve for it (one solve per training example).
            request = request with
            {
                Train = new DatasetSpec(noisyPath),
                Options = request.Options with { SolveSelfInfluence = true },
            };
        }
        catch (Exception e) when (e is ArgumentException or DataFormatException) { return ScoreCommand.Fail(e, 2); }

        int exit = await ScoreCommand.RunJobAsync(request, output, parse.GetValue(ScoreCommand.Cluster), parse.GetValue(ScoreCommand.Store)!, parse.GetValue(ScoreCommand.Verbose), showTopK: 0, ct);
        if (exit != 0) return exit;
        Report(output, noisy, labels, parse.GetValue(RandomSeed));
        ReportPage.Write(output, "influence mislabel", ["mislabel.md"], request);
        return 0;
    }

    private static void WriteCsv(Dataset data, Stream target)
    {
        using var w = new StreamWriter(target, new UTF8Encoding(false));
        w.WriteLine("label," + string.Join(",", Enumerable.Range(0, data.FeatureCount).Select(j => $"f{j}")));
        var sb = new StringBuilder();
        for (int i = 0; i < data.Count; i++)
        {
            sb.Clear().Append(data.Labels[i].ToString(CultureInfo.InvariantCulture));
            for (int j = 0; j < data.FeatureCount; j++) sb.Append(',').Append(data.Features[(long)i * data.FeatureCount + j].ToString("R", CultureInfo.InvariantCulture));
            w.WriteLine(sb);
        }
    }

    private static void Report(OutputFolder output, Dataset train, NoisyLabels labels, int randomSeed)
    {
        using var ckStream = File.OpenRead(Path.Combine(output.FullPath, "checkpoint.json"));
        var checkpoint = Checkpoint.Load(ckStream);
        var device = Influence.Core.Compute.Devices.Default;
        using var tensors = DataTensors.From(train, checkpoint.Spec, device);
        using var theta = checkpoint.Theta(device);
        var (loss, gradNorm) = MislabelRanking.PerExample(checkpoint.Spec, theta, tensors);
        var self = File.ReadLines(Path.Combine(output.FullPath, "self_influence.csv")).Skip(1)
            .Select(l => l.Split(',')).OrderBy(f => int.Parse(f[0], CultureInfo.InvariantCulture))
            .Select(f => double.Parse(f[1], CultureInfo.InvariantCulture)).ToArray();
        var changed = labels.Changed;
        var rankings = new (string Name, double[] Score)[]
        {
            ("self-influence", self), ("training loss", loss), ("gradient norm", gradNorm),
            ($"random (seed {randomSeed})", MislabelRanking.RandomScores(train.Count, randomSeed)),
        };

        var table = new Table().Title($"Recall of the {changed.Count(c => c)} changed labels among {train.Count} training examples").AddColumn("ranking");
        foreach (var f in Fractions) table.AddColumn($"top {f:P0}");
        var md = new StringBuilder();
        md.AppendLine("# Mislabel detection").AppendLine();
        md.AppendLine($"{checkpoint.Spec.Describe()} trained on the noisy labels; {changed.Count(c => c)} of {train.Count} labels differ from the clean ones. Recall: the fraction of changed labels among the top-ranked examples (a random ranking expects the fraction itself).").AppendLine();
        md.AppendLine("| ranking | " + string.Join(" | ", Fractions.Select(f => $"recall in top {f:P0}"))).AppendLine("|---|" + string.Concat(Fractions.Select(_ => "---|")));
        foreach (var (name, score) in rankings)
        {
            var recalls = Fractions.Select(f => MislabelRanking.Recall(score, changed, f)).ToArray();
            table.AddRow([name, .. recalls.Select(r => r.ToString("P1", CultureInfo.InvariantCulture))]);
            md.AppendLine($"| {name} | " + string.Join(" | ", recalls.Select(r => r.ToString("0.000", CultureInfo.InvariantCulture))) + " |");
        }
        output.WriteText("mislabel.md", md.ToString());
        output.Write("mislabel.csv", stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false));
            w.WriteLine("train_index,label_noisy,label_clean,changed,self_influence,loss,gradient_norm");
            for (int i = 0; i < train.Count; i++)
                w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{i},{labels.Noisy[i]},{labels.Clean[i]},{(changed[i] ? 1 : 0)},{self[i]:R},{loss[i]:R},{gradNorm[i]:R}"));
        });
        AnsiConsole.Write(table);
        Console.WriteLine($"Written: {Path.Combine(output.FullPath, "mislabel.md")}, mislabel.csv");
    }
}
