using System.CommandLine;
using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Loo;
using Influence.Core.Models;
using Influence.Reports;

namespace Influence.Client;

/// <summary>`influence study SPEC`: a grid of LOO studies as one cluster job, one table row per configuration.</summary>
public static class StudyCommand
{
    private static readonly Argument<string> Spec = new("spec") { Description = "Study spec (YAML, or JSON for .json), e.g. studies/basu-iris.yaml" };

    public static Command Create()
    {
        var command = new Command("study", "Run a grid of leave-one-out studies (model shapes × weight decays × dampings × seeds) and tabulate them");
        command.Arguments.Add(Spec);
        foreach (var o in new Option[] { ScoreCommand.Out, ScoreCommand.Overwrite, LooCommand.Parallel, LooCommand.Resume, ScoreCommand.Cluster, ScoreCommand.Store, ScoreCommand.Verbose }) command.Options.Add(o);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    public static StudyJobRequest BuildRequest(StudySpec spec, int parallel)
    {
        var points = spec.Grid().Select(p => new StudyPoint
        {
            Label = p.Label, Depth = p.Depth, Width = p.Width, WeightDecay = p.WeightDecay, DampingGiven = p.Damping, Seed = p.Seed,
            Study = new LooJobRequest
            {
                Settings = new LooSettings
                {
                    Score = new ScoreSettings
                    {
                        Train = new DatasetSpec(spec.Train, spec.TrainLabels, spec.PixelScale),
                        Test = new DatasetSpec(spec.Test, spec.TestLabels, spec.PixelScale),
                        Model = SettingsJson.Parse<ModelKind>(spec.Model, "model"),
                        Hidden = Enumerable.Repeat(p.Width, p.Depth).ToArray(),
                        Activation = SettingsJson.Parse<Activation>(spec.Activation, "activation"),
                        L2 = p.WeightDecay,
                        WeightDecayOn = spec.Model == "logreg" ? DecayOn.Weights : SettingsJson.Parse<DecayOn>(spec.WeightDecayOn, "weight_decay_on"),
                        DType = SettingsJson.Parse<Precision>(spec.Dtype, "dtype"),
                        Seed = p.Seed,
                        Method = spec.Method, Damping = ScoreSettings.ParseDamping(p.Damping, "dampings").Damping,
                        AutoDamping = ScoreSettings.ParseDamping(p.Damping, "dampings").Auto, TestIndices = IndexList.Parse(spec.TestIndices), Shards = spec.Shards,
                    },
                    Remove = spec.Remove,
                    Modes = LooCommand.ParseModes(string.Join(",", spec.Retrain)),
                    NoiseSeeds = spec.NoiseSeeds,
                },
                ParallelPerSilo = parallel,
            },
        }).ToArray();
        foreach (var p in points) p.Study.Settings.Validate();
        return new StudyJobRequest { Name = spec.Name, Points = points };
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        StudyJobRequest request;
        OutputFolder output;
        try
        {
            request = BuildRequest(StudySpec.Load(parse.GetValue(Spec)!), parse.GetValue(LooCommand.Parallel));
            if (parse.GetValue(LooCommand.Resume) is { } resume) Influence.Core.Safety.StoreKeys.CheckJobId(resume, "--resume");
            output = ScoreCommand.PrepareOut(parse, "study");
        }
        catch (ArgumentException e) { return ScoreCommand.Fail(e, 2); }

        await using var connection = await ClusterConnection.OpenAsync(parse.GetValue(ScoreCommand.Cluster), parse.GetValue(ScoreCommand.Store)!, parse.GetValue(ScoreCommand.Verbose), ct,
            parse.GetValue(LooCommand.Parallel));
        var jobId = parse.GetValue(LooCommand.Resume) ?? JobRunner.NewJobId($"study-{request.Name}");
        Console.WriteLine($"Study {jobId} on the {connection.Description}: {request.Points.Length} configurations");
        var status = await JobRunner.RunStudyAsync(connection, jobId, request, ct);
        if (status.Phase == JobPhase.Cancelled) return ScoreCommand.Fail($"study {jobId} was cancelled (resume with --resume {jobId})", 4);
        if (status.Phase == JobPhase.Failed) return ScoreCommand.FailedJob($"study {jobId}", status, $"resume with --resume {jobId}");
        output.Export(connection.Store, jobId, ["study.csv", "study.md"], "study.csv");
        ReportPage.Write(output, $"influence study: job {jobId}", ["study.md"], null);
        Console.WriteLine(File.ReadAllText(Path.Combine(output.FullPath, "study.md")));
        Console.WriteLine($"Done in {status.ElapsedSeconds:F1} s. Table: {Path.Combine(output.FullPath, "study.csv")}; each configuration's report is in the store under jobs/{jobId}-cNNN/.");
        return 0;
    }
}
