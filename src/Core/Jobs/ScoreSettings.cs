using Influence.Core.Data;
using Influence.Core.Models;

namespace Influence.Core.Jobs;

/// <summary>Whether a score job writes the dense influence matrix (influence.npy), and in which precision.</summary>
public enum DenseOutput { Off, Float32, Float64 }

/// <summary>Whether a score job writes influence.csv, one line per (test, train) pair: auto writes it while the pairs are few (<see cref="ScoreSettings.CsvPairLimit"/>).</summary>
public enum PairsCsv { Auto, On, Off }

/// <summary>
/// A score job's settings: what the command line builds, what Orleans carries to the coordinator,
/// what jobs/ID/settings.json holds for every shard, and summary.json's "settings" (one JSON form,
/// <see cref="SettingsJson"/>). Each property is its command-line flag (Model is --model,
/// DType --dtype), and each default is written here once: the CLI reads <see cref="Defaults"/>.
/// </summary>
public sealed record ScoreSettings
{
    /// <summary>Every default, for the command line's option defaults and help.</summary>
    public static readonly ScoreSettings Defaults = new() { Train = new DatasetSpec(""), Test = new DatasetSpec(""), TestIndices = [] };

    public required DatasetSpec Train { get; init; }
    public required DatasetSpec Test { get; init; }
    public ModelKind Model { get; init; } = ModelKind.Logreg;
    /// <summary>MLP (and CNN after its convolutions) hidden widths.</summary>
    public int[] Hidden { get; init; } = [];
    /// <summary>CNN: the convolution layers (--conv; default LeNet's).</summary>
    public ConvLayer[]? Conv { get; init; }
    /// <summary>CNN: the image shape of each row (default one channel, square).</summary>
    public ImageShape? Image { get; init; }
    public Activation Activation { get; init; } = Activation.Tanh;
    /// <summary>λ of the (λ/2)‖W‖² penalty.</summary>
    public double L2 { get; init; } = 1e-3;
    public DecayOn WeightDecayOn { get; init; } = DecayOn.Weights;
    [System.Text.Json.Serialization.JsonPropertyName("dtype")]
    public Precision DType { get; init; } = Precision.Float64;
    /// <summary>Initialisation seed.</summary>
    public int Seed { get; init; }
    /// <summary>A name in <see cref="Methods.All"/>.</summary>
    public string Method { get; init; } = Methods.Exact;
    public double Damping { get; init; }
    /// <summary>Choose δ from the curvature's extreme eigenvalues (<see cref="Hessians.DampingChoice"/>) instead of <see cref="Damping"/> (--damping auto).</summary>
    public bool AutoDamping { get; init; }

    /// <summary>
    /// A damping as the user writes it (--damping, a study's dampings): a number ≥ 0, or auto.
    /// The range is <see cref="Validate"/>'s check; here only the form.
    /// </summary>
    public static (double Damping, bool Auto) ParseDamping(string text, string name)
    {
        text = text.Trim();
        if (text.Equals("auto", StringComparison.OrdinalIgnoreCase)) return (0, true);
        if (double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double damping)) return (damping, false);
        throw new ArgumentException($"{name} must be a number ≥ 0 or auto, not '{Safety.Echo.Cap(text)}'");
    }
    [System.Text.Json.Serialization.JsonPropertyName("method_options")]
    public MethodOptions Options { get; init; } = new();
    public TrainingChoice Training { get; init; } = new();
    /// <summary>
    /// Memory a shard may use for query vectors and their intermediates (larger query sets are
    /// scored in passes) and for its block of scores (more shards than <see cref="Shards"/> where
    /// the blocks would not fit: <see cref="ScoringShards"/>).
    /// </summary>
    public long MemoryBudgetMb { get; init; } = 2048;
    /// <summary>A checkpoint.json (path or store:KEY) to score instead of training; its model must match the settings.</summary>
    public string? Checkpoint { get; init; }
    /// <summary>
    /// A PyTorch state_dict (.safetensors, or .pt/.pth from torch.save; path or store:KEY) holding
    /// the model's parameters: scored as they are, or the start of training with <see cref="TrainFromWeights"/>.
    /// </summary>
    public string? Weights { get; init; }
    /// <summary>The state_dict's layer prefixes in the model's layer order (default: the names' natural order, as nn.Sequential numbers them).</summary>
    public string[]? WeightsMap { get; init; }
    /// <summary>Train from <see cref="Weights"/> to the optimum (as without them) instead of scoring them as they are.</summary>
    public bool TrainFromWeights { get; init; }
    public required int[] TestIndices { get; init; }
    /// <summary>Shards of the training set; at least this many (<see cref="ScoringShards"/>).</summary>
    public int Shards { get; init; } = 4;
    public int TopK { get; init; } = 10;
    /// <summary>Examples per batch of per-example gradients.</summary>
    public int BatchSize { get; init; } = 512;
    /// <summary>The dense test × train influence matrix as influence.npy, in this precision (off: not written; it holds Q × N values).</summary>
    public DenseOutput Dense { get; init; } = DenseOutput.Off;
    /// <summary>influence.csv: on, off, or auto (written while N × Q ≤ <see cref="CsvPairLimit"/>).</summary>
    public PairsCsv InfluenceCsv { get; init; } = PairsCsv.Auto;

    /// <summary>
    /// Above this many (test, train) pairs auto writes no influence.csv: 10⁷ lines are already
    /// ~300 MB of text, and all of Fashion-MNIST's pairs would be 18 GB per 1,000 test points.
    /// </summary>
    public const long CsvPairLimit = 10_000_000;

    /// <summary>Why influence.csv is not written for <paramref name="trainCount"/> training rows, or null when it is.</summary>
    /// <param name="show">How a setting is named (its flag on the command line); its snake_case name by default.</param>
    public string? InfluenceCsvOmitted(long trainCount, Func<string, string>? show = null)
    {
        long pairs = trainCount * TestIndices.Length;
        string flag = (show ?? (n => n))(System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(nameof(InfluenceCsv)));
        return InfluenceCsv switch
        {
            PairsCsv.On => null,
            PairsCsv.Off => $"not written ({flag} off)",
            _ => pairs <= CsvPairLimit ? null : FormattableString.Invariant(
                $"not written: {pairs:N0} (test, train) pairs are more than {CsvPairLimit:N0} ({flag} on writes it anyway)"),
        };
    }

    /// <summary>The estimator <see cref="Method"/> names (ArgumentException for an unknown name).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public InfluenceMethod Estimator => Methods.Get(Method);

    /// <summary>Whether the job writes self_influence.csv: from the method's preconditioner, or by one solve per training example.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool GivesSelfInfluence => Estimator.SelfInfluenceSource == SelfInfluenceSource.Preconditioner || SolvesSelfInfluence;

    /// <summary>cg, lissa asked for self-influence: one solve per training example (<see cref="SelfSolvingMethod.SelfInfluenceSolvesStage"/>).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool SolvesSelfInfluence => Estimator.SelfInfluenceSource == SelfInfluenceSource.Solves && Options.SolveSelfInfluence;

    /// <summary>Checks what can be checked without the data; throws <see cref="SettingError"/> naming the setting.</summary>
    public void Validate()
    {
        static string N(string property) => SettingError.Name(property);
        if (!Methods.Exists(Method)) throw new SettingError($"{N(nameof(Method))} must be one of {string.Join(", ", Methods.Names)}, not '{Safety.Echo.Cap(Method)}'");
        var method = Methods.Get(Method);
        if (Model != ModelKind.Cnn && (Conv is not null || Image is not null)) throw new SettingError($"{N(nameof(Conv))} and {N(nameof(Image))} describe a CNN: use them with {N(nameof(Model))} cnn");
        if (Model == ModelKind.Mlp && Hidden.Length == 0) throw new SettingError($"{N(nameof(Model))} mlp needs {N(nameof(Hidden))}, e.g. 8,8");
        if (Hidden.Any(h => h < 1)) throw new SettingError($"{N(nameof(Hidden))} widths must be ≥ 1");
        Options.Validate();
        Training.Validate();
        if (method.NeedsCheckpoints && Training.Optimizer is null)
            throw new SettingError($"{N(nameof(Method))} {Method} sums over training checkpoints: train with {N(nameof(TrainingChoice.Optimizer))} sgd or adam (full-batch L-BFGS keeps none)");
        if (MemoryBudgetMb < 16) throw new SettingError($"{N(nameof(MemoryBudgetMb))} must be ≥ 16, not {MemoryBudgetMb}");
        if (!(L2 >= 0) || double.IsInfinity(L2)) throw new SettingError($"{N(nameof(L2))} must be a finite number ≥ 0, not {L2}");
        if (!(Train.FeatureScale > 0) || double.IsInfinity(Train.FeatureScale) || !(Test.FeatureScale > 0) || double.IsInfinity(Test.FeatureScale))
            throw new SettingError($"{N("PixelScale")} must be a finite positive number, not {Train.FeatureScale}");
        if (!(Damping >= 0) || double.IsInfinity(Damping)) throw new SettingError($"{N(nameof(Damping))} must be a finite number ≥ 0, not {Damping}");
        if (Weights is not null && Checkpoint is not null) throw new SettingError($"{N(nameof(Weights))} and {N(nameof(Checkpoint))} both give the model: choose one");
        if (Weights is null && (WeightsMap is not null || TrainFromWeights))
            throw new SettingError($"{N(WeightsMap is not null ? nameof(WeightsMap) : nameof(TrainFromWeights))} goes with {N(nameof(Weights))} (a PyTorch state_dict)");
        if (WeightsMap is { } map && (map.Length == 0 || map.Any(string.IsNullOrWhiteSpace))) throw new SettingError($"{N(nameof(WeightsMap))} must list the layer prefixes, e.g. fc1,fc2,out");
        if (TestIndices.Length == 0) throw new SettingError($"{N(nameof(TestIndices))} selects no test point");
        if (TestIndices.Any(i => i < 0)) throw new SettingError($"{N(nameof(TestIndices))} must be rows ≥ 0");
        if (Shards < 1) throw new SettingError($"{N(nameof(Shards))} must be ≥ 1, not {Shards}");
        if (TopK < 1) throw new SettingError($"{N(nameof(TopK))} must be ≥ 1, not {TopK}");
        if (BatchSize < 1) throw new SettingError($"{N(nameof(BatchSize))} must be ≥ 1, not {BatchSize}");
    }

    public ModelSpec BuildSpec(TrainTestData data) => BuildSpec(data.Train.FeatureCount, data.ClassCount);

    /// <summary>The model for rows of <paramref name="features"/> values and <paramref name="classes"/> classes (no data needed: a spec allocates nothing).</summary>
    public ModelSpec BuildSpec(int features, int classes)
    {
        var spec = Model switch
        {
            ModelKind.Logreg => ModelSpec.LogisticRegression(features, classes, L2, DType, Seed),
            ModelKind.Mlp => ModelSpec.Mlp(features, classes, Hidden, Activation, L2, WeightDecayOn, DType, Seed),
            _ => ModelSpec.Cnn(
                Image ?? ImageShape.SquareOf(features) ?? throw new SettingError($"{Train.Path}: rows have {features} features, not a square image: give {SettingError.Name(nameof(Image))} CxHxW"),
                classes, Conv ?? ConvLayer.ParseList(ConvLayer.LeNet), Hidden, Activation, L2, WeightDecayOn, DType, Seed),
        };
        if (Image is not null && Image.Size != features)
            throw new SettingError($"{SettingError.Name(nameof(Image))} {Image} has {Image.Size} values but the rows of {Train.Path} have {features} features");
        spec.Validate();
        return spec;
    }

    /// <summary>Parameter-sized vectors that training holds at least (θ, its gradient, two optimiser or search vectors).</summary>
    private const int ParameterCopiesInTraining = 4;

    /// <summary>
    /// Refuses, before anything is allocated or trained, a model the method or the machine cannot
    /// hold: an exact Hessian beyond <see cref="Hessians.ExactHessian.MaxParameters"/>, or parameter
    /// vectors that do not fit in this process's memory. Throws ArgumentException with the numbers.
    /// </summary>
    /// <param name="memoryOfThisProcess">Also check against this process's memory (false for a client that submits to a cluster: its silos have their own).</param>
    public void CheckSize(ModelSpec spec, bool memoryOfThisProcess = true)
    {
        long p = spec.ParameterCount;
        Estimator.CheckJob(this, spec);
        if (!memoryOfThisProcess) return;
        long bytesPerValue = DType == Precision.Float64 ? 8 : 4;
        double needed = (double)p * bytesPerValue * ParameterCopiesInTraining;
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (needed > available)
            throw new ArgumentException(FormattableString.Invariant($"{spec.Describe()} has {p:N0} parameters: training holds at least {needed / (1L << 30):F1} GiB of parameter vectors, more than the {available / (double)(1L << 30):F1} GiB this process may use"));
    }

    /// <summary>
    /// Bytes a scoring shard holds per (test point, training row) pair: its float64 block, and the
    /// tensor it is written to the store from.
    /// </summary>
    public const int ShardBytesPerPair = 16;

    /// <summary>
    /// The job's shard count: <see cref="Shards"/>, or more where a shard's score block (Q × its
    /// rows, <see cref="ShardBytesPerPair"/> each) would not fit <see cref="MemoryBudgetMb"/>, so that
    /// no process holds more of the N × Q scores than the budget, whatever Q (at most one shard per row).
    /// </summary>
    public int ScoringShards(int trainCount)
    {
        double pairs = (double)TestIndices.Length * trainCount;
        long needed = (long)Math.Ceiling(pairs * ShardBytesPerPair / (MemoryBudgetMb * (double)(1 << 20)));
        return (int)Math.Max(1, Math.Min(trainCount, Math.Max(Shards, needed)));
    }

    /// <summary>The job's shard ranges over N training rows (<see cref="ScoringShards"/> of them).</summary>
    public IReadOnlyList<(int Start, int End)> ShardRangesFor(int trainCount) => ShardRanges(trainCount, ScoringShards(trainCount));

    /// <summary>Contiguous, nearly equal ranges [start, end) of N rows over min(Shards, N) shards.</summary>
    public static IReadOnlyList<(int Start, int End)> ShardRanges(int count, int shards)
    {
        shards = Math.Max(1, Math.Min(shards, count));
        var ranges = new List<(int, int)>();
        for (int k = 0; k < shards; k++)
            ranges.Add(((int)((long)count * k / shards), (int)((long)count * (k + 1) / shards)));
        return ranges;
    }
}
