using Influence.Core.Data;
using Influence.Core.Models;

namespace Influence.Core.Jobs;

/// <summary>A score job's settings in Core's terms (the grains map the wire request onto this).</summary>
public sealed record ScoreSettings
{
    public required DatasetSpec Train { get; init; }
    public required DatasetSpec Test { get; init; }
    /// <summary>"logreg", "mlp" or "cnn".</summary>
    public string ModelKind { get; init; } = "logreg";
    public int[] Hidden { get; init; } = [];
    /// <summary>CNN: the convolution layers (default LeNet's).</summary>
    public ConvLayer[]? Convolutions { get; init; }
    /// <summary>CNN: the image shape of each row (default one channel, square).</summary>
    public ImageShape? Image { get; init; }
    public Activation Activation { get; init; } = Activation.Tanh;
    public double L2 { get; init; } = 1e-3;
    public DecayOn DecayOn { get; init; } = DecayOn.Weights;
    public Precision Precision { get; init; } = Precision.Float64;
    public int Seed { get; init; }
    public string Method { get; init; } = "exact";
    public double Damping { get; init; }
    /// <summary>Choose δ from the curvature's extreme eigenvalues (<see cref="Hessians.DampingChoice"/>) instead of <see cref="Damping"/>.</summary>
    public bool AutoDamping { get; init; }
    public MethodOptions Options { get; init; } = new();
    public TrainingChoice Training { get; init; } = new();
    /// <summary>Memory a shard may use for query vectors and their intermediates; larger query sets are scored in passes.</summary>
    public long MemoryBudgetMb { get; init; } = 2048;
    /// <summary>A checkpoint.json (path or store:KEY) to score instead of training; its model must match the settings.</summary>
    public string? InitialCheckpoint { get; init; }
    public required int[] TestIndices { get; init; }
    public int Shards { get; init; } = 4;
    public int TopK { get; init; } = 10;
    public int BatchSize { get; init; } = 512;

    /// <summary>The estimator <see cref="Method"/> names (ArgumentException for an unknown name).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public InfluenceMethod Estimator => Methods.Get(Method);

    /// <summary>Whether the job writes self_influence.csv: from the method's preconditioner, or by one solve per training example.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool GivesSelfInfluence => Estimator.SelfInfluenceSource == SelfInfluenceSource.Preconditioner || SolvesSelfInfluence;

    /// <summary>cg, lissa asked for self-influence: one solve per training example (<see cref="SelfSolvingMethod.SelfInfluenceSolvesStage"/>).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool SolvesSelfInfluence => Estimator.SelfInfluenceSource == SelfInfluenceSource.Solves && Options.SolveSelfInfluence;

    /// <summary>Checks what can be checked without the data; throws ArgumentException naming the setting.</summary>
    public void Validate()
    {
        if (ModelKind is not ("logreg" or "mlp" or "cnn")) throw new ArgumentException($"--model must be logreg, mlp or cnn, not '{ModelKind}'");
        if (ModelKind != "cnn" && (Convolutions is not null || Image is not null)) throw new ArgumentException("--conv and --image describe a CNN: use them with --model cnn");
        if (ModelKind == "mlp" && Hidden.Length == 0) throw new ArgumentException("--model mlp needs --hidden, e.g. --hidden 8,8");
        var method = Methods.Get(Method);
        Options.Validate();
        if (method.NeedsCheckpoints && Training.Optimizer is null)
            throw new ArgumentException($"--method {Method} sums over training checkpoints: train with --optimizer sgd or adam (full-batch L-BFGS keeps none)");
        if (Training.Optimizer is not null && (!(Training.LearningRate > 0) || double.IsInfinity(Training.LearningRate) || Training.Epochs < 1 || Training.BatchSize < 1 || Training.CheckpointEvery < 1))
            throw new ArgumentException("--lr must be a finite positive number and --epochs, --train-batch and --checkpoint-every ≥ 1");
        if (MemoryBudgetMb < 16) throw new ArgumentException($"--memory-budget-mb must be ≥ 16, not {MemoryBudgetMb}");
        if (!(L2 >= 0) || double.IsInfinity(L2)) throw new ArgumentException($"--l2 must be a finite number ≥ 0, not {L2}");
        if (!(Train.FeatureScale > 0) || double.IsInfinity(Train.FeatureScale) || !(Test.FeatureScale > 0) || double.IsInfinity(Test.FeatureScale))
            throw new ArgumentException($"--pixel-scale must be a finite positive number, not {Train.FeatureScale}");
        if (!(Damping >= 0) || double.IsInfinity(Damping)) throw new ArgumentException($"--damping must be a finite number ≥ 0, not {Damping}");
        if (TestIndices.Length == 0) throw new ArgumentException("--test-indices selects no test point");
        if (Shards < 1) throw new ArgumentException($"--shards must be ≥ 1, not {Shards}");
        if (TopK < 1) throw new ArgumentException($"--top-k must be ≥ 1, not {TopK}");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size must be ≥ 1, not {BatchSize}");
    }

    public ModelSpec BuildSpec(TrainTestData data) => BuildSpec(data.Train.FeatureCount, data.ClassCount);

    /// <summary>The model for rows of <paramref name="features"/> values and <paramref name="classes"/> classes (no data needed: a spec allocates nothing).</summary>
    public ModelSpec BuildSpec(int features, int classes)
    {
        var spec = ModelKind switch
        {
            "logreg" => ModelSpec.LogisticRegression(features, classes, L2, Precision, Seed),
            "mlp" => ModelSpec.Mlp(features, classes, Hidden, Activation, L2, DecayOn, Precision, Seed),
            _ => ModelSpec.Cnn(
                Image ?? ImageShape.SquareOf(features) ?? throw new ArgumentException($"{Train.Path}: rows have {features} features, not a square image: give --image CxHxW"),
                classes, Convolutions ?? ConvLayer.ParseList(ConvLayer.LeNet), Hidden, Activation, L2, DecayOn, Precision, Seed),
        };
        if (Image is not null && Image.Size != features)
            throw new ArgumentException($"--image {Image} has {Image.Size} values but the rows of {Train.Path} have {features} features");
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
        Estimator.CheckSize(spec);
        if (!memoryOfThisProcess) return;
        long bytesPerValue = Precision == Precision.Float64 ? 8 : 4;
        double needed = (double)p * bytesPerValue * ParameterCopiesInTraining;
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (needed > available)
            throw new ArgumentException(FormattableString.Invariant($"{spec.Describe()} has {p:N0} parameters: training holds at least {needed / (1L << 30):F1} GiB of parameter vectors, more than the {available / (double)(1L << 30):F1} GiB this process may use"));
    }

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
