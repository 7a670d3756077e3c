using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// The steps of each estimator besides the exact one. Shard steps (curvature products, LiSSA
/// repeats, Kronecker factor and correction sums) write one artifact each and skip work whose
/// artifact exists; coordinator steps combine them and end in the score terms every shard scores against.
/// </summary>
public sealed partial class ScoreJob
{
    public string RhsKey => $"{Prefix}/work/rhs.bin";
    public string EigenKey => $"{Prefix}/work/eigen.bin";
    public string FactorsKey => $"{Prefix}/work/factors.bin";
    public string ProductInputKey(int round) => $"{Prefix}/work/hvp/{round:D5}/v.bin";
    public string ProductPartKey(int round, int shard) => $"{Prefix}/work/hvp/{round:D5}/part-{shard:D4}.bin";
    public string FactorSumsKey(int shard) => $"{Prefix}/work/kfac-{shard:D4}.bin";
    public string CorrectionSumsKey(int shard) => $"{Prefix}/work/ekfac-{shard:D4}.bin";
    public string LissaKey(int repeat) => $"{Prefix}/work/lissa-{repeat:D3}.bin";

    private static Device Device => Compute.Devices.Default;
    private string Method => Settings.Method;

    /// <summary>Q×P gradients of the chosen test points' losses at θ (the queries' layout in the score terms).</summary>
    private Tensor QueryGradients(Checkpoint checkpoint, TrainTestData data, Tensor theta)
    {
        using var test = DataTensors.From(data.Test.Select(Settings.TestIndices), checkpoint.Spec, Device);
        return ShardScorer.Gradients(checkpoint.Spec, theta, test);
    }

    /// <summary>P×Q gradients of the chosen test points' losses at θ (right-hand sides of the solvers).</summary>
    public Tensor TestGradients(Checkpoint checkpoint, TrainTestData data, Tensor theta)
    {
        using var g = QueryGradients(checkpoint, data, theta);
        return g.t().contiguous();
    }

    /// <summary>True once the method's terms exist: the scoring stage can start.</summary>
    /// <summary>The method's score terms (preconditioned queries, factors) are in the store: preparation is done.</summary>
    public bool HasScoreTerms => Store.Exists(TermsKey);

    public MethodReport LoadMethodReport()
    {
        using var s = Store.OpenRead(MethodReportKey);
        return MethodReport.Load(s);
    }

    /// <summary>Writes the report, then the single term (θ̂, Q×P preconditioned queries): the terms' existence marks the step done.</summary>
    private MethodReport FinishPreconditioning(Tensor theta, Tensor queries, MethodReport report) => FinishTerms([new ScoreTerm(theta, queries, 1.0)], report);

    private MethodReport FinishTerms(IReadOnlyList<ScoreTerm> terms, MethodReport report)
    {
        Store.Write(MethodReportKey, report.Save);
        Store.Write(TermsKey, s => ScorePlan.WriteTerms(s, terms));
        return report;
    }

    /// <summary>What a shard scores with: the terms, and the method's self-influence.</summary>
    public ScorePlan LoadPlan(Checkpoint checkpoint)
    {
        List<ScoreTerm> terms;
        using (var s = Store.OpenRead(TermsKey)) terms = ScorePlan.ReadTerms(s, Device);
        var report = LoadMethodReport();
        SelfInfluence? self = Method switch
        {
            Methods.Exact => new SelfInfluence.Exact(LoadInverse()),
            Methods.Arnoldi => LoadEigen(checkpoint.Spec),
            Methods.Kfac or Methods.Ekfac => new SelfInfluence.Kronecker(LoadFactors(checkpoint.Spec), report.Damping, Method == Methods.Ekfac),
            Methods.TracIn or Methods.GradDot => new SelfInfluence.SquaredNorm(),
            _ => null,
        };
        return new ScorePlan(terms, self, cosine: Method == Methods.GradCos, Settings.Options.QueryRank);
    }

    // ---- Curvature products (cg, lissa, arnoldi) ----

    /// <summary>Shard step: Σ over rows [start, end) of the curvature times the round's vectors V (P×K); returns K (0 when already done).</summary>
    public long CurvatureProduct(Checkpoint checkpoint, Dataset train, int round, int shard, int start, int end)
    {
        var key = ProductPartKey(round, shard);
        if (Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        using var rows = DataTensors.From(train.Slice(start, end), spec, Device);
        Tensor v;
        using (var s = Store.OpenRead(ProductInputKey(round))) using (var r = new BinaryReader(s)) v = TensorIO.Read(r, Device);
        var sum = HessianVectorProducts.DataSum(spec, checkpoint.Theta(Device), rows, v.to(spec.ScalarType), Settings.Options.Curvature);
        Store.Write(key, s => TensorIO.Write(s, sum));
        return v.shape[1];
    }

    public void WriteProductInput(int round, Tensor v) => Store.Write(ProductInputKey(round), s => TensorIO.Write(s, v));

    /// <summary>Adds the shards' partial products of a round, then deletes the round's artifacts (they are as large as V).</summary>
    public Tensor SumProductParts(int round, int shards)
    {
        var sum = SumStored(Enumerable.Range(0, shards).Select(k => ProductPartKey(round, k)));
        Store.DeletePrefix($"{Prefix}/work/hvp/{round:D5}/");
        return sum;
    }

    /// <summary>The sum of tensors stored under the keys (shards' partial sums).</summary>
    private Tensor SumStored(IEnumerable<string> keys)
    {
        Tensor? sum = null;
        foreach (var key in keys)
        {
            using var s = Store.OpenRead(key);
            using var r = new BinaryReader(s);
            var part = TensorIO.Read(r, Device);
            if (sum is null) sum = part; else { sum.add_(part); part.Dispose(); }
        }
        return sum ?? throw new InvalidOperationException("no partial sums to add");
    }

    /// <summary>
    /// Coordinator step for cg, arnoldi and lissa: every curvature product goes through
    /// <paramref name="dataSum"/> (one distributed round: Σ_shards of the data term for V); the
    /// regulariser and damping are added here. Chooses the damping when asked, then solves
    /// (cg), builds the eigenbasis (arnoldi) or fixes LiSSA's scale for the repeats to come.
    /// </summary>
    public MethodReport SolveWithProducts(Checkpoint checkpoint, TrainTestData data, Func<Tensor, Tensor> dataSum, IProgress<string>? progress = null)
    {
        if (HasScoreTerms || (Method == Methods.Lissa && Store.Exists(RhsKey) && Store.Exists(MethodReportKey))) return LoadMethodReport();
        using var scope = NewDisposeScope();
        dataSum = Checked(dataSum);
        var spec = checkpoint.Spec;
        var options = Settings.Options;
        var dtype = spec.ScalarType;
        var theta = checkpoint.Theta(Device);
        var rhs = TestGradients(checkpoint, data, theta);
        var flat = Network.FlatDirections(spec, Device)?.to(dtype);
        var regularizer = Objective.RegularizerHessianDiagonal(spec, Device).to(dtype);
        long n = data.Train.Count;
        var plain = new CurvatureOperator(dataSum, n, regularizer, 0);
        var report = new MethodReport(Settings.Damping);
        report.Details["curvature"] = options.Curvature == Curvature.Hessian ? "hessian" : "gauss-newton";

        if (Settings.AutoDamping || (Method == Methods.Lissa && options.LissaScale == 0))
        {
            progress?.Report($"estimating the curvature's extreme eigenvalues ({options.Krylov}-step Arnoldi, twice)");
            var spectrum = DampingChoice.Choose(plain.Apply, spec.ParameterCount, options.Krylov, options.Seed, dtype, Device, convex: spec.IsLogisticRegression, flat);
            report.LargestEigenvalue = spectrum.LargestEigenvalue;
            report.SmallestEigenvalue = spectrum.SmallestEigenvalue;
            report.Details["spectrum_products"] = spectrum.Products;
            if (Settings.AutoDamping) report.Damping = spectrum.Damping;
            report.Details["damping_rule"] = Settings.AutoDamping ? spectrum.Rule : "given";
            if (spectrum.Indefinite)
                report.Warnings.Add($"the curvature is indefinite at θ̂ (λ_min ≈ {spectrum.SmallestEigenvalue:E3}); " +
                    (report.Damping > -spectrum.SmallestEigenvalue ? $"δ = {report.Damping:E3} makes H + δI positive definite" : $"δ = {report.Damping:E3} does not make H + δI positive definite: use --damping auto or a larger δ"));
        }
        double damping = report.Damping;

        switch (Method)
        {
            case Methods.Cg:
            {
                progress?.Report($"conjugate gradient on {rhs.shape[1]} right-hand sides (tolerance {options.Tolerance:G3}, at most {options.MaxIterations} rounds)");
                var op = new CurvatureOperator(dataSum, n, regularizer, damping);
                var (x, solves) = ConjugateGradient.Solve(op.Apply, rhs, options.Tolerance, options.MaxIterations, flat);
                report.Details["tolerance"] = options.Tolerance;
                report.Details["max_iterations"] = options.MaxIterations;
                report.Details["products"] = op.Products;
                report.Details["iterations"] = new JsonArray(solves.Select(r => (JsonNode)r.Iterations).ToArray());
                report.Details["relative_residuals"] = new JsonArray(solves.Select(r => MethodReport.Number(r.RelativeResidual)).ToArray());
                report.Details["converged"] = solves.Count(r => r.Converged);
                report.Details["negative_curvature"] = solves.Count(r => r.NegativeCurvature);
                int unconverged = solves.Count(r => !r.Converged);
                if (solves.Any(r => r.NegativeCurvature))
                    report.Warnings.Add($"CG met negative curvature (pᵀ(H + δI)p ≤ 0) on {solves.Count(r => r.NegativeCurvature)} of {solves.Length} queries: H + δI is not positive definite; use --damping auto or a larger δ");
                if (unconverged > 0)
                    report.Warnings.Add($"CG did not converge on {unconverged} of {solves.Length} queries (largest relative residual {solves.Max(r => r.RelativeResidual):E2}); raise --cg-max-iterations or the damping");
                return FinishPreconditioning(theta, x.t().contiguous(), report);
            }
            case Methods.Arnoldi:
            {
                progress?.Report($"Arnoldi: {options.Krylov} distributed products, keeping the top {options.TopEigen} eigenpairs");
                using var result = Arnoldi.Run(plain.Apply, spec.ParameterCount, options.Krylov, options.TopEigen, options.Seed, dtype, Device, flat);
                var denominators = result.Eigenvalues.to(ScalarType.Float64).add(damping);
                var kept = result.Eigenvalues.to(ScalarType.Float64).cpu().data<double>().ToArray();
                report.Details["krylov_dimension"] = result.Iterations;
                report.Details["kept"] = kept.Length;
                report.Details["eigenvalues"] = new JsonArray(kept.Select(v => MethodReport.Number(v)).ToArray());
                report.Details["products"] = result.Products;
                report.LargestEigenvalue ??= kept.Max();
                if (kept.Any(v => v + damping <= 0))
                    report.Warnings.Add($"{kept.Count(v => v + damping <= 0)} kept eigenvalues have λ + δ ≤ 0 (H is indefinite at θ̂): their directions flip sign; use --damping auto");
                Store.Write(EigenKey, s =>
                {
                    using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
                    TensorIO.Write(w, result.Eigenvectors);
                    TensorIO.Write(w, denominators);
                });
                return FinishPreconditioning(theta, result.Solve(rhs, damping).t().contiguous(), report);
            }
            case Methods.Lissa:
            {
                double scale = options.LissaScale > 0 ? options.LissaScale : 3 * (report.LargestEigenvalue!.Value + damping);
                report.Details["scale"] = scale;
                report.Details["scale_rule"] = options.LissaScale > 0 ? "given" : "3 * (lambda_max + damping)";
                report.Details["depth"] = options.LissaDepth;
                report.Details["repeats"] = options.LissaRepeats;
                report.Details["batch_size"] = options.LissaBatch;
                Store.Write(RhsKey, s => TensorIO.Write(s, rhs));
                Store.Write(MethodReportKey, report.Save);
                return report;
            }
            default: throw new InvalidOperationException($"{Method} does not use curvature products");
        }
    }

    private SelfInfluence.LowRank LoadEigen(ModelSpec spec)
    {
        using var s = Store.OpenRead(EigenKey);
        using var r = new BinaryReader(s);
        var vectors = TensorIO.Read(r, Device);
        return new SelfInfluence.LowRank(spec, vectors, TensorIO.Read(r, Device));
    }

    /// <summary>Shard step for LiSSA: one seeded recursion over batches of the whole training set (repeats are the parallel unit).</summary>
    public long LissaRepeat(Checkpoint checkpoint, Dataset train, int repeat)
    {
        var key = LissaKey(repeat);
        if (Store.Exists(key)) return 0;
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        var report = LoadMethodReport();
        double scale = report.Details["scale"]!.GetValue<double>();
        Tensor rhs;
        using (var s = Store.OpenRead(RhsKey)) using (var r = new BinaryReader(s)) rhs = TensorIO.Read(r, Device);
        using var rows = DataTensors.From(train, spec, Device);
        var objective = new Objective(spec, rows, train.Count, Device);
        var theta = checkpoint.Theta(Device);
        var o = Settings.Options;
        var settings = new LissaSettings(report.Damping, scale, o.LissaDepth, Repeats: 1, o.LissaBatch, Seed: Seeds.LissaRepeat(o.Seed, repeat));
        var (estimate, lissa) = Lissa.Solve(Checked<long[]>((v, batch) => CurvatureOperator.OnRows(objective, theta, batch, report.Damping, v, o.Curvature)), rhs, train.Count, settings);
        Store.Write(key, s =>
        {
            using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
            w.Write(lissa.Diverged > 0);
            w.Write(lissa.FinalStepNorms[0]);
            w.Write(lissa.Products);
            TensorIO.Write(w, estimate);
        });
        return lissa.Products;
    }

    /// <summary>Coordinator step for LiSSA: the mean of the repeats that did not diverge.</summary>
    public MethodReport CombineLissa(Checkpoint checkpoint, int repeats)
    {
        if (HasScoreTerms) return LoadMethodReport();
        using var scope = NewDisposeScope();
        var report = LoadMethodReport();
        Tensor? sum = null;
        int kept = 0;
        long products = 0;
        var steps = new JsonArray();
        for (int r = 0; r < repeats; r++)
        {
            using var s = Store.OpenRead(LissaKey(r));
            using var reader = new BinaryReader(s);
            bool diverged = reader.ReadBoolean();
            double step = reader.ReadDouble();
            products += reader.ReadInt64();
            var estimate = TensorIO.Read(reader, Device);
            steps.Add(MethodReport.Number(step));
            if (diverged) continue;
            kept++;
            sum = sum is null ? estimate : sum.add(estimate);
        }
        report.Details["diverged"] = repeats - kept;
        report.Details["final_step_norms"] = steps;
        report.Details["products"] = products;
        if (kept == 0)
            throw new InvalidOperationException($"all {repeats} LiSSA repeats diverged: the scale {report.Details["scale"]} is below the largest eigenvalue of the batch curvature + δ; raise --lissa-scale or --lissa-batch");
        if (kept < repeats) report.Warnings.Add($"{repeats - kept} of {repeats} LiSSA repeats diverged and were left out of the mean");
        var flat = Network.FlatDirections(checkpoint.Spec, Device)?.to(sum!.dtype);
        var mean = Network.WithoutFlat(sum!.div(kept), flat);
        return FinishPreconditioning(checkpoint.Theta(Device), mean.t().contiguous(), report);
    }

    // ---- K-FAC and EK-FAC ----

    private int FisherSeed(int shard, int pass) => Seeds.FisherLabels(Settings.Options.Seed, shard, pass);

    /// <summary>Shard step: the Kronecker factor sums A = Σāāᵀ, S = Σδδᵀ per layer over rows [start, end).</summary>
    public void FactorSums(Checkpoint checkpoint, Dataset train, int shard, int start, int end)
    {
        var key = FactorSumsKey(shard);
        if (Store.Exists(key)) return;
        using var scope = NewDisposeScope();
        using var rows = DataTensors.From(train.Slice(start, end), checkpoint.Spec, Device);
        using var sums = KfacFactorSums.Accumulate(checkpoint.Spec, checkpoint.Theta(Device), rows, Settings.Options.FisherLabels, FisherSeed(shard, 0), Settings.BatchSize);
        Store.Write(key, s => KroneckerFactors.WriteSums(s, sums.Count, [.. sums.A, .. sums.S]));
    }

    /// <summary>Coordinator step: adds the shards' factor sums and eigendecomposes each factor once.</summary>
    public void CombineFactors(Checkpoint checkpoint, int shards)
    {
        if (Store.Exists(FactorsKey)) return;
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        int layers = spec.Layers.Count;
        KfacFactorSums? total = null;
        for (int k = 0; k < shards; k++)
        {
            using var s = Store.OpenRead(FactorSumsKey(k));
            var (count, t) = KroneckerFactors.ReadSums(s, Device);
            var part = new KfacFactorSums(t[..layers], t[layers..], count);
            total = total is null ? part : total.Add(part);
        }
        using var factors = KroneckerFactors.FromSums(spec, total!);
        Store.Write(FactorsKey, factors.Save);
    }

    private KroneckerFactors LoadFactors(ModelSpec spec)
    {
        using var s = Store.OpenRead(FactorsKey);
        return KroneckerFactors.Load(spec, s, Device);
    }

    /// <summary>Shard step (EK-FAC): Σ (Q_Sᵀ δ)² (Q_Aᵀ ā)²ᵀ per layer over rows [start, end), in the factors' eigenbasis.</summary>
    public void CorrectionSums(Checkpoint checkpoint, Dataset train, int shard, int start, int end)
    {
        var key = CorrectionSumsKey(shard);
        if (Store.Exists(key)) return;
        using var scope = NewDisposeScope();
        using var factors = LoadFactors(checkpoint.Spec);
        using var rows = DataTensors.From(train.Slice(start, end), checkpoint.Spec, Device);
        var sums = factors.CorrectionSums(checkpoint.Theta(Device), rows, Settings.Options.FisherLabels, FisherSeed(shard, 1), Settings.BatchSize);
        Store.Write(key, s => KroneckerFactors.WriteSums(s, end - start, sums));
    }

    /// <summary>
    /// Coordinator step: EK-FAC's corrected eigenvalues from the shards' sums, the damping (given,
    /// or Kronfluence's 0.1 × the mean eigenvalue), and the queries preconditioned layer by layer.
    /// </summary>
    public MethodReport FinishKronecker(Checkpoint checkpoint, TrainTestData data, int shards)
    {
        if (HasScoreTerms) return LoadMethodReport();
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        bool ekfac = Method == Methods.Ekfac;
        using var factors = LoadFactors(spec);
        if (ekfac && factors.Corrected is null)
        {
            Tensor[]? sums = null;
            long count = 0;
            for (int k = 0; k < shards; k++)
            {
                using var s = Store.OpenRead(CorrectionSumsKey(k));
                var (c, t) = KroneckerFactors.ReadSums(s, Device);
                count += c;
                sums = sums is null ? t : sums.Zip(t, (a, b) => a.add(b)).ToArray();
            }
            factors.SetCorrections(sums!, count);
            Store.Write(FactorsKey, factors.Save);
        }
        var eigenvalues = cat(spec.Layers.Select((_, l) => factors.Eigenvalues(l, ekfac).flatten()).ToArray());
        double mean = eigenvalues.mean().ToDouble();
        var report = new MethodReport(Settings.AutoDamping ? DampingChoice.FromMeanEigenvalue(mean) : Settings.Damping)
        {
            LargestEigenvalue = eigenvalues.max().ToDouble(),
            SmallestEigenvalue = eigenvalues.min().ToDouble(),
        };
        report.Details["fisher_labels"] = Settings.Options.FisherLabels.ToString().ToLowerInvariant();
        report.Details["damping_rule"] = Settings.AutoDamping ? $"{DampingChoice.MeanEigenvalueRule}, of the Fisher" : "given";
        report.Details["weight_decay_added"] = spec.L2;
        report.Details["eigenvalues_of"] = ekfac ? "EK-FAC's corrected eigenvalues" : "K-FAC's products of factor eigenvalues";
        report.Details["layers"] = new JsonArray(spec.Layers.Select(l => (JsonNode)$"{l.Out}x{l.In + 1}").ToArray());
        if (spec.DecayOn == DecayOn.Weights && spec.L2 > 0)
            report.Warnings.Add("the weight decay λ is added on every layer parameter, biases included (they are unpenalised in the objective): a small approximation");
        var theta = checkpoint.Theta(Device);
        var rhs = TestGradients(checkpoint, data, theta);
        return FinishPreconditioning(theta, factors.Solve(rhs, report.Damping, ekfac).t().contiguous(), report);
    }

    // ---- TracIn, grad-dot, grad-cos ----

    /// <summary>TracIn's checkpoints: their count, then the learning rate and θ of each.</summary>
    private static void WriteTrajectory(Stream stream, IReadOnlyList<Training.TrainingCheckpoint> trajectory)
    {
        using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        w.Write(trajectory.Count);
        foreach (var c in trajectory)
        {
            w.Write(c.LearningRate);
            TensorIO.Write(w, c.Theta);
        }
    }

    /// <summary>Coordinator step for the Hessian-free methods: the query gradients at θ̂, or at each TracIn checkpoint.</summary>
    public MethodReport GradientTerms(Checkpoint checkpoint, TrainTestData data)
    {
        if (HasScoreTerms) return LoadMethodReport();
        using var scope = NewDisposeScope();
        var report = new MethodReport(0);
        var terms = new List<ScoreTerm>();
        if (Method == Methods.TracIn)
        {
            using var s = Store.OpenRead(TrajectoryKey);
            using var r = new BinaryReader(s);
            for (int c = r.ReadInt32(); c > 0; c--)
            {
                double learningRate = r.ReadDouble();
                var theta = TensorIO.Read(r, Device);
                terms.Add(new ScoreTerm(theta, QueryGradients(checkpoint, data, theta), learningRate));
            }
            report.Details["checkpoints"] = terms.Count;
            report.Details["learning_rates"] = new JsonArray(terms.Select(t => (JsonNode)t.Weight).ToArray());
            report.Details["optimizer"] = Settings.Training.Describe();
        }
        else
        {
            var theta = checkpoint.Theta(Device);
            var g = QueryGradients(checkpoint, data, theta);
            if (Method == Methods.GradCos) g = g.div(g.norm(1, keepdim: true).clamp_min(1e-300));
            terms.Add(new ScoreTerm(theta, g, 1.0));
        }
        report.Details["hessian"] = "none (gradient similarity)";
        return FinishTerms(terms, report);
    }
}

public sealed partial class ScoreJob
{
    /// <summary>One unit of a preparatory shard stage (see <see cref="ShardWork"/>); returns the curvature-vector products it made.</summary>
    /// <param name="progress">Rows done, for the stages that report them as they go (self-influence solves).</param>
    public long RunShardWork(ShardWork work, Checkpoint checkpoint, Dataset train, int round, int unit, int start, int end, IProgress<long>? progress)
    {
        switch (work)
        {
            case ShardWork.PartialHessian: PartialHessian(checkpoint, train, unit, start, end); return 0;
            case ShardWork.CurvatureProduct: return CurvatureProduct(checkpoint, train, round, unit, start, end);
            case ShardWork.LissaRepeat: return LissaRepeat(checkpoint, train, unit);
            case ShardWork.FactorSums: FactorSums(checkpoint, train, unit, start, end); return 0;
            case ShardWork.CorrectionSums: CorrectionSums(checkpoint, train, unit, start, end); return 0;
            case ShardWork.ProjectedFeatures: ProjectFeatures(checkpoint, train, start, end); return 0;
            case ShardWork.SelfInfluenceSolves: SelfInfluenceSolves(checkpoint, train, unit, start, end, progress); return 0;
            default: throw new ArgumentOutOfRangeException(nameof(work), work, null);
        }
    }
}
