using System.CommandLine;
using System.Globalization;
using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Jobs;
using Influence.Core.Models;
using Influence.Core.Scoring;
using Influence.Core.Training;
using Influence.Core.Safety;
using Influence.Core.Storage;
using Spectre.Console;

namespace Influence.Client;

/// <summary>`influence score`: the influence of every training example on chosen test points, by the chosen method.</summary>
public static class ScoreCommand
{
    public static readonly Option<string> Train = new("--train") { Description = "Training set: CSV (label first, header), Parquet (a label column and numeric feature columns), or features as IDX images or .npy (labels in --train-labels)", Required = true };
    public static readonly Option<string> Test = new("--test") { Description = "Test set, same format as --train", Required = true };
    public static readonly Option<string?> TrainLabels = new("--train-labels") { Description = "Labels for IDX or .npy --train: IDX labels (default: MNIST naming) or a .npy vector of class indices" };
    public static readonly Option<string?> TestLabels = new("--test-labels") { Description = "Labels for IDX or .npy --test" };
    public static readonly Option<double> PixelScale = new("--pixel-scale") { Description = "Divide every feature by this (255 for raw pixels)", DefaultValueFactory = _ => 1.0 };
    public static readonly Option<string> Model = new("--model") { Description = $"{Words<ModelKind>()}", DefaultValueFactory = _ => SettingsJson.Word(D.Model) };
    public static readonly Option<string> Hidden = new("--hidden") { Description = "MLP (and CNN after its convolutions) hidden widths, e.g. 8,8", DefaultValueFactory = _ => "" };
    public static readonly Option<string?> Conv = new("--conv") { Description = $"cnn: convolutions CHANNELS:KERNEL[:POOL],… (stride 1, no padding, then the activation, then max-pooling; default {ConvLayer.LeNet})" };
    public static readonly Option<string?> Image = new("--image") { Description = "cnn: each row's image shape CxHxW (default 1 channel, square)" };
    public static readonly Option<string> ActivationOpt = new("--activation") { Description = Words<Activation>(), DefaultValueFactory = _ => SettingsJson.Word(D.Activation) };
    public static readonly Option<double> L2 = new("--l2") { Description = "L2 strength λ of (λ/2)‖W‖²", DefaultValueFactory = _ => D.L2 };
    public static readonly Option<string> DecayOn = new("--weight-decay-on") { Description = $"MLP: {Words<DecayOn>()} (logistic regression: weights)", DefaultValueFactory = _ => SettingsJson.Word(D.WeightDecayOn) };
    public static readonly Option<string> DType = new("--dtype") { Description = Words<Precision>(), DefaultValueFactory = _ => SettingsJson.Word(D.DType) };
    public static readonly Option<int> Seed = new("--seed") { Description = "Initialisation seed", DefaultValueFactory = _ => D.Seed };
    public static readonly Option<string> Method = new("--method") { Description = string.Join(", ", Methods.Names) + " (docs/methods.md)", DefaultValueFactory = _ => D.Method };
    public static readonly Option<string> Damping = new("--damping") { Description = "δ added to the curvature's diagonal, or auto (from its extreme eigenvalues); reported in summary.json", DefaultValueFactory = _ => D.Damping.ToString(CultureInfo.InvariantCulture) };
    public static readonly Option<string> TestIndices = new("--test-indices") { Description = "Test rows to explain, e.g. 0-9,15", DefaultValueFactory = _ => "0-9" };
    public static readonly Option<int> Shards = new("--shards") { Description = "Shards of the training set (spread over silos); more where a shard's scores would not fit --memory-budget-mb", DefaultValueFactory = _ => D.Shards };
    public static readonly Option<int> TopK = new("--top-k") { Description = "Proponents and opponents kept per test point", DefaultValueFactory = _ => D.TopK };
    public static readonly Option<int> BatchSize = new("--batch-size") { Description = "Examples per batch of per-example gradients", DefaultValueFactory = _ => D.BatchSize };
    public static readonly Option<string> Dense = new("--dense") { Description = $"influence.npy, the test × train influence matrix (numpy: np.load(path, mmap_mode=\"r\")): {Words<DenseOutput>()}", DefaultValueFactory = _ => SettingsJson.Word(D.Dense) };
    public static readonly Option<string> InfluenceCsv = new("--influence-csv") { Description = FormattableString.Invariant($"influence.csv, one line per (test, train) pair: {Words<PairsCsv>()} (auto: while there are at most {ScoreSettings.CsvPairLimit:N0} pairs)"), DefaultValueFactory = _ => SettingsJson.Word(D.InfluenceCsv) };
    public static readonly Option<string> Out = new("--out") { Description = "Output folder (new or empty; one holding an earlier run's results needs --overwrite)", Required = true };
    public static readonly Option<bool> Overwrite = new("--overwrite") { Description = "Replace the results of an earlier run in --out (its files are removed first)" };
    public static readonly Option<string?> Cluster = new("--cluster")
    {
        Description = $"A running cluster: redis://HOST:PORT[,password=...], or localhost:GATEWAY_PORT; default ${ClusterConnection.ClusterVariable}, else an embedded silo",
        DefaultValueFactory = _ => ClusterConnection.DefaultCluster(),
    };
    public static readonly Option<string> Store = new("--store") { Description = "Artifact store the silos use: a folder, azblob:CONTAINER (connection string in $INFLUENCE_BLOB_CONNECTION_STRING) or a container URL with a SAS token", DefaultValueFactory = _ => LocalArtifactStore.DefaultRoot() };
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Show the cluster's log" };
    public static readonly Option<string?> CheckpointOpt = new("--checkpoint") { Description = "Score this trained model (checkpoint.json of an earlier score or loo run) instead of training one" };
    public static readonly Option<string?> WeightsOpt = new("--weights") { Description = "Score a model trained in PyTorch: its state_dict as .safetensors, or .pt/.pth from torch.save(model.state_dict(), …) (docs/pytorch.md)" };
    public static readonly Option<string?> WeightsMap = new("--weights-map") { Description = "--weights: the state_dict's layer prefixes in the model's order, e.g. conv,fc1,out (default: the names' natural order, as nn.Sequential numbers them)" };
    public static readonly Option<bool> TrainFromWeights = new("--train-from-weights") { Description = "--weights: train on from them to an optimum first (influence assumes one), instead of scoring them as they are" };
    public static readonly Option<long> MemoryBudget = new("--memory-budget-mb") { Description = "Memory a shard may use for query vectors (more queries are scored in passes) and its block of scores (more shards)", DefaultValueFactory = _ => D.MemoryBudgetMb };

    // Estimator parameters (summary.json reports the ones the method used).
    public static readonly Option<string> CurvatureOpt = new("--curvature") { Description = $"{MethodsWhere(m => m is CurvatureProductMethod)}: {Words<Curvature>()} (Gauss-Newton)", DefaultValueFactory = _ => SettingsJson.Word(M.Curvature) };
    public static readonly Option<double> CgTolerance = new("--cg-tolerance") { Description = "cg: stop at ‖r‖ ≤ tolerance·‖b‖", DefaultValueFactory = _ => M.CgTolerance };
    public static readonly Option<int> CgMaxIterations = new("--cg-max-iterations") { Description = "cg: iteration cap", DefaultValueFactory = _ => M.CgMaxIterations };
    public static readonly Option<int> ArnoldiIterations = new("--arnoldi-iterations") { Description = "arnoldi: Krylov dimension (also the damping estimate's run length)", DefaultValueFactory = _ => M.ArnoldiIterations };
    public static readonly Option<int> ArnoldiTop = new("--arnoldi-top") { Description = "arnoldi: eigenpairs kept", DefaultValueFactory = _ => M.ArnoldiTop };
    public static readonly Option<int> LissaDepth = new("--lissa-depth") { Description = "lissa: recursion depth", DefaultValueFactory = _ => M.LissaDepth };
    public static readonly Option<int> LissaRepeats = new("--lissa-repeats") { Description = "lissa: independent repeats averaged (spread over silos)", DefaultValueFactory = _ => M.LissaRepeats };
    public static readonly Option<int> LissaBatch = new("--lissa-batch") { Description = "lissa: training rows per curvature product", DefaultValueFactory = _ => M.LissaBatch };
    public static readonly Option<double> LissaScale = new("--lissa-scale") { Description = "lissa: scale s > λ_max + δ (0: 3·(λ_max + δ) from Arnoldi)", DefaultValueFactory = _ => M.LissaScale };
    public static readonly Option<string> FisherLabelsOpt = new("--fisher-labels") { Description = $"kfac, ekfac: {Words<FisherLabels>()} (sampled is the true Fisher)", DefaultValueFactory = _ => SettingsJson.Word(M.FisherLabels) };
    public static readonly Option<int> ProjectionDim = new("--projection-dim") { Description = "trak: dimension k of the random projection of per-example gradients", DefaultValueFactory = _ => M.ProjectionDim };
    public static readonly Option<string> NewtonInverseOpt = new("--newton-inverse") { Description = $"newton-step on a network: the inverse its per-row Woodbury step updates, {Words<NewtonInverse>()} (auto: exact up to {Influence.Core.Hessians.ExactHessian.MaxParameters:N0} parameters, ekfac beyond)", DefaultValueFactory = _ => SettingsJson.Word(M.NewtonInverse) };
    public static readonly Option<string> ProjectionOpt = new("--projection") { Description = $"trak: {Words<ProjectionKind>()} (seeded by --method-seed)", DefaultValueFactory = _ => SettingsJson.Word(M.Projection) };
    public static readonly Option<bool> SolveSelfInfluence = new("--solve-self-influence") { Description = $"{MethodsWhere(m => m.SelfInfluenceSource == SelfInfluenceSource.Solves)}: also solve for every training example's self-influence (one solve each)" };
    public static readonly Option<int> QueryRank = new("--query-rank") { Description = "Score with each preconditioned query's per-layer block at this rank (0: exact); cheaper for many queries on wide layers", DefaultValueFactory = _ => M.QueryRank };
    public static readonly Option<int> MethodSeed = new("--method-seed") { Description = "Seed of a seeded method's randomness (its start vector, batches, sampled labels or projection; 'influence methods' shows which are seeded)", DefaultValueFactory = _ => M.MethodSeed };
    public static readonly Option<string> OptimizerOpt = new("--optimizer") { Description = "lbfgs (full batch, tight optimum), sgd or adam (minibatch, checkpoints for tracin)", DefaultValueFactory = _ => TrainingChoice.Word(T.Optimizer) };
    public static readonly Option<double> LearningRate = new("--learning-rate", "--lr") { Description = "sgd/adam learning rate", DefaultValueFactory = _ => T.LearningRate };
    public static readonly Option<int> Epochs = new("--epochs") { Description = "sgd/adam epochs", DefaultValueFactory = _ => T.Epochs };
    public static readonly Option<int> TrainBatch = new("--train-batch") { Description = "sgd/adam minibatch size", DefaultValueFactory = _ => T.TrainBatch };
    public static readonly Option<int> CheckpointEvery = new("--checkpoint-every") { Description = "sgd/adam: keep θ every N epochs (tracin's checkpoints)", DefaultValueFactory = _ => T.CheckpointEvery };

    private static ScoreSettings D => ScoreSettings.Defaults;
    private static MethodOptions M => ScoreSettings.Defaults.Options;
    private static TrainingChoice T => ScoreSettings.Defaults.Training;
    private static string Words<TEnum>() where TEnum : struct, Enum => SettingsJson.Choices(SettingsJson.Words<TEnum>());
    private static string MethodsWhere(Func<InfluenceMethod, bool> applies) => string.Join(", ", Methods.All.Where(applies).Select(m => m.Name));

    /// <summary>Every option of a score job, shared by the commands that run one.</summary>
    public static Option[] All =>
    [
        Train, Test, TrainLabels, TestLabels, PixelScale, Model, Hidden, Conv, Image, ActivationOpt, L2, DecayOn, DType, Seed, Method, Damping,
        TestIndices, Shards, TopK, BatchSize, Dense, InfluenceCsv, MemoryBudget, CurvatureOpt, CgTolerance, CgMaxIterations, ArnoldiIterations, ArnoldiTop,
        LissaDepth, LissaRepeats, LissaBatch, LissaScale, FisherLabelsOpt, NewtonInverseOpt, ProjectionDim, ProjectionOpt, SolveSelfInfluence, QueryRank, MethodSeed, OptimizerOpt, LearningRate, Epochs, TrainBatch,
        CheckpointEvery, CheckpointOpt, WeightsOpt, WeightsMap, TrainFromWeights, Out, Overwrite, Cluster, Store, Verbose,
    ];

    public static Command Create()
    {
        var command = new Command("score", "Influence of every training example on the chosen test points, by the chosen method");
        foreach (var o in All) command.Options.Add(o);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    /// <summary>The settings the options describe, checked as far as they can be without the data (ArgumentException otherwise).</summary>
    /// <param name="methodsRun">The methods whose jobs these settings start, for the size check (default: --method's).</param>
    public static ScoreSettings BuildSettings(ParseResult p, IReadOnlyList<string>? methodsRun = null)
    {
        var hidden = p.GetValue(Hidden)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(h => int.TryParse(h, NumberStyles.None, CultureInfo.InvariantCulture, out int w) && w > 0 ? w : throw new ArgumentException($"--hidden: '{Echo.Cap(h)}' is not a positive width"))
            .ToArray();
        var (damping, auto) = ScoreSettings.ParseDamping(p.GetValue(Damping)!, "--damping");
        double scale = p.GetValue(PixelScale);
        if (!(scale > 0)) throw new ArgumentException($"--pixel-scale must be positive, not {scale}");
        string optimizer = p.GetValue(OptimizerOpt)!.Trim().ToLowerInvariant();
        var settings = new ScoreSettings
        {
            Train = Source(p.GetValue(Train)!, p.GetValue(TrainLabels), scale),
            Test = Source(p.GetValue(Test)!, p.GetValue(TestLabels), scale),
            Model = SettingsJson.Parse<ModelKind>(p.GetValue(Model)!, "--model"),
            Hidden = hidden,
            Conv = p.GetValue(Conv) is { } conv ? ConvLayer.ParseList(conv) : null,
            Image = p.GetValue(Image) is { } image ? ImageShape.Parse(image) : null,
            Activation = SettingsJson.Parse<Activation>(p.GetValue(ActivationOpt)!, "--activation"),
            L2 = p.GetValue(L2),
            WeightDecayOn = SettingsJson.Parse<DecayOn>(p.GetValue(DecayOn)!, "--weight-decay-on"),
            DType = SettingsJson.Parse<Precision>(p.GetValue(DType)!, "--dtype"),
            Seed = p.GetValue(Seed),
            Method = p.GetValue(Method)!,
            Damping = damping,
            AutoDamping = auto,
            MemoryBudgetMb = p.GetValue(MemoryBudget),
            Checkpoint = p.GetValue(CheckpointOpt) is string c ? InputFile("--checkpoint", c) : null,
            Weights = p.GetValue(WeightsOpt) is string w ? InputFile("--weights", w) : null,
            WeightsMap = p.GetValue(WeightsMap)?.Split(',', StringSplitOptions.TrimEntries),
            TrainFromWeights = p.GetValue(TrainFromWeights),
            Options = new MethodOptions
            {
                Curvature = SettingsJson.Parse<Curvature>(p.GetValue(CurvatureOpt)!, "--curvature"),
                CgTolerance = p.GetValue(CgTolerance), CgMaxIterations = p.GetValue(CgMaxIterations),
                ArnoldiIterations = p.GetValue(ArnoldiIterations), ArnoldiTop = p.GetValue(ArnoldiTop),
                LissaDepth = p.GetValue(LissaDepth), LissaRepeats = p.GetValue(LissaRepeats), LissaBatch = p.GetValue(LissaBatch), LissaScale = p.GetValue(LissaScale),
                FisherLabels = SettingsJson.Parse<FisherLabels>(p.GetValue(FisherLabelsOpt)!, "--fisher-labels"),
                NewtonInverse = SettingsJson.Parse<NewtonInverse>(p.GetValue(NewtonInverseOpt)!, "--newton-inverse"),
                MethodSeed = p.GetValue(MethodSeed),
                ProjectionDim = p.GetValue(ProjectionDim),
                Projection = SettingsJson.Parse<ProjectionKind>(p.GetValue(ProjectionOpt)!, "--projection"),
                SolveSelfInfluence = p.GetValue(SolveSelfInfluence), QueryRank = p.GetValue(QueryRank),
            },
            Training = new TrainingChoice
            {
                Optimizer = optimizer == TrainingChoice.Word(null) ? null : SettingsJson.Parse<Optimizer>(optimizer, $"--optimizer ({TrainingChoice.Word(null)} or minibatch)"),
                LearningRate = p.GetValue(LearningRate), Epochs = p.GetValue(Epochs),
                TrainBatch = p.GetValue(TrainBatch), CheckpointEvery = p.GetValue(CheckpointEvery),
            },
            TestIndices = IndexList.Parse(p.GetValue(TestIndices)!),
            Shards = p.GetValue(Shards),
            TopK = p.GetValue(TopK),
            BatchSize = p.GetValue(BatchSize),
            Dense = SettingsJson.Parse<DenseOutput>(p.GetValue(Dense)!, "--dense"),
            InfluenceCsv = SettingsJson.Parse<PairsCsv>(p.GetValue(InfluenceCsv)!, "--influence-csv"),
        };
        // Every setting that can be checked without the data is checked here: a bad option exits 2 before any cluster starts.
        settings.Validate();
        // The model's size from the training file's header and labels alone: a model too large for
        // the method or the machine exits 2 before the features are loaded or anything trained.
        // (Labels that cannot be read this way count as two classes, a lower bound: the job checks again.)
        if (settings.Train.PeekShape() is { Features: > 0 } shape)
            foreach (var method in methodsRun ?? [settings.Method])
                (settings with { Method = method }).CheckSize(settings.BuildSpec(shape.Features, shape.Classes ?? 2), memoryOfThisProcess: p.GetValue(Cluster) is null);
        if (settings.Checkpoint is { } checkpoint && !StoredFiles.IsStored(checkpoint))
        {
            try { using var s = File.OpenRead(checkpoint); Influence.Core.Models.Checkpoint.Load(s); }
            catch (InvalidDataException e) { throw new ArgumentException($"--checkpoint {Echo.Cap(checkpoint)}: {e.Message}"); }
        }
        return settings;
    }

    private static DatasetSpec Source(string path, string? labels, double scale)
    {
        // Caught here (exit 2) rather than when the job loads the data.
        if (labels is null && ArrayDatasetReader.IsNpy(path))
            throw new ArgumentException($"{Echo.Cap(path)}: a .npy feature array needs its labels: a .npy vector of class indices (--train-labels / --test-labels)");
        return new(InputFile("--train/--test", path), labels is null ? null : InputFile("--train-labels/--test-labels", labels), scale);
    }

    /// <summary>
    /// An input file as a request names it: store:KEY (an artifact already in the store; the key is
    /// checked here, its existence by the silo) or the full path of an existing local file.
    /// </summary>
    public static string InputFile(string option, string path)
    {
        if (StoredFiles.IsStored(path))
        {
            var key = path[StoredFiles.Scheme.Length..];
            return StoreKeys.Problem(key) is { } problem ? throw new ArgumentException($"{option} {Echo.Cap(path)}: {problem}") : path;
        }
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException) { throw new ArgumentException($"{option} '{Echo.Cap(path)}' is not a usable path: {e.Message}"); }
        if (Directory.Exists(full)) throw new ArgumentException($"{Echo.Cap(path)}: is a folder, not a file");
        if (!File.Exists(full)) throw new ArgumentException($"{Echo.Cap(path)}: file not found");
        return full;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        ScoreSettings request;
        OutputFolder output;
        try
        {
            request = BuildSettings(parse);
            output = PrepareOut(parse, "score");
        }
        catch (ArgumentException e) { return Fail(e, 2); }
        return await RunJobAsync(request, output, parse.GetValue(Cluster), parse.GetValue(Store)!, parse.GetValue(Verbose), showTopK: 0, ct);
    }

    /// <summary>The checked and claimed --out of a command (ArgumentException when it cannot be used).</summary>
    public static OutputFolder PrepareOut(ParseResult parse, string command) =>
        OutputFolder.Prepare(parse.GetValue(Out)!, parse.GetValue(Overwrite), command);

    /// <summary>Runs one score job end to end; returns the process exit code.</summary>
    public static async Task<int> RunJobAsync(ScoreSettings request, OutputFolder output, string? cluster, string storeRoot, bool verbose, int showTopK, CancellationToken ct)
    {
        await using var connection = await ClusterConnection.OpenAsync(cluster, storeRoot, verbose, ct);
        var jobId = JobRunner.NewJobId("score");
        Console.WriteLine($"Job {jobId} on the {connection.Description}: {SettingsJson.Word(request.Model)}, method {request.Method}, {request.TestIndices.Length} test points, {request.Shards} shards");
        var status = await JobRunner.RunScoreAsync(connection, jobId, request, ct);
        if (status.Phase == JobPhase.Cancelled) return Fail($"job {jobId} was cancelled", 4);
        if (status.Phase == JobPhase.Failed) return FailedJob($"job {jobId}", status);

        var written = output.Export(connection.Store, jobId, ScoreOutputs.Files, "summary.json");
        ReportPage.Write(output, $"influence score: job {jobId}", [], request);
        PrintSummary(output.FullPath, showTopK);
        Console.WriteLine($"Done in {status.ElapsedSeconds:F1} s. Files in {output.FullPath}: {ReportPage.Name}, {string.Join(", ", written)} (tables also as .parquet)");
        return 0;
    }

    private static void PrintSummary(string outDir, int showTopK)
    {
        var summary = ScoreSummary.Read(Path.Combine(outDir, "summary.json"));
        var t = summary.Training;
        var c = summary.Curvature;
        Console.WriteLine($"Model: {summary.Model.Description}, {summary.Model.Parameters} parameters");
        Console.WriteLine(FormattableString.Invariant($"Training: objective {t.Objective:G10}, |grad F| {t.GradientNorm:E2}, train accuracy {t.TrainAccuracy:P1}, test accuracy {t.TestAccuracy:P1}"));
        static string Eig(double? v) => v is double d ? d.ToString("E3", CultureInfo.InvariantCulture) : "?";
        Console.WriteLine(FormattableString.Invariant($"Method {summary.Settings.Method}: curvature eigenvalues [{Eig(c.MinEigenvalue)}, {Eig(c.MaxEigenvalue)}], damping {c.Damping:G6}"));
        if (summary.Settings.InfluenceCsvOmitted(summary.Training.TrainExamples, Flag) is { } omitted)
            Console.WriteLine($"influence.csv {omitted}: per test point topk.csv, per training example train_summary.csv and train_topk.csv"
                + (summary.Settings.Dense == DenseOutput.Off ? ", and with --dense float32 every pair in influence.npy" : ", every pair in influence.npy"));
        var sc = summary.Scoring;
        if (sc.PairsExamplesPerSecond is double pairs && sc.RatioToGemm is double ratio)
            Console.WriteLine(FormattableString.Invariant(
                $"Scoring: {sc.Examples:N0} training examples × {sc.Queries} test points at {pairs:N0} examples/s, {ratio:P0} of a same-shape matrix product's rate ({sc.GemmExamplesPerSecond:N0}/s){(sc.SelfInfluenceSeconds > 0 ? $"; self-influence {sc.SelfInfluenceSeconds:F1} s" : "")}"));
        foreach (var w in summary.DataWarnings) Console.WriteLine($"warning: {w}");
        foreach (var w in summary.MethodReport().Warnings) Console.WriteLine($"warning: {w}");
        if (showTopK <= 0) return;

        var rows = File.ReadLines(Path.Combine(outDir, "topk.csv")).Skip(1).Select(l => l.Split(',')).ToList();
        var table = new Table().Title("Most influential training examples").AddColumns("test", "kind", "rank", "train row", "influence", "predicted LOO Δ test loss");
        foreach (var r in rows.Where(r => int.Parse(r[2], CultureInfo.InvariantCulture) <= showTopK))
            table.AddRow(r[0], r[1], r[2], r[3], double.Parse(r[4], CultureInfo.InvariantCulture).ToString("E3", CultureInfo.InvariantCulture), double.Parse(r[5], CultureInfo.InvariantCulture).ToString("E3", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);
        Console.WriteLine("Proponents (negative influence) help the test point: removing one is predicted to raise its loss.");
    }

    /// <summary>The command line's name of a setting: its flag (cg_tolerance is --cg-tolerance).</summary>
    public static string Flag(string setting) => "--" + setting.Replace('_', '-');

    /// <summary>Prints a refused setting or input; a <see cref="SettingError"/> names the flags.</summary>
    public static int Fail(Exception e, int code) => Fail(e is SettingError s ? s.Render(Flag) : e.Message, code);

    /// <summary>
    /// Prints a failed job: exit 2 when it refused its input (data, settings, files; fixing them means
    /// a new job), 1 otherwise, with <paramref name="resumeHint"/> since finished work is kept.
    /// </summary>
    public static int FailedJob(string what, JobStatus status, string? resumeHint = null) => status.InputRejected
        ? Fail($"{what} refused its input: {status.Error}", 2)
        : Fail($"{what} failed: {status.Error}{(resumeHint is null ? "" : $" ({resumeHint})")}", 1);

    public static int Fail(string message, int code)
    {
        Console.Error.WriteLine($"error: {Secrets.Redact(message)}");
        return code;
    }
}
