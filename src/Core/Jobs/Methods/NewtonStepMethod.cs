using System.Text.Json.Nodes;
using Influence.Core.Compute;
using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using Influence.Core.Storage;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>
/// Leave-one-out by one Newton step of each leave-one-out objective from θ̂, with that objective's
/// own curvature: θ̃₋ⱼ = θ̂ + (1/N) H₋ⱼ⁻¹ g_j, H₋ⱼ = H + δI − (1/N)∇²L(z_j), g_j = ∇L(z_j) (F₋ⱼ keeps
/// the 1/N normaliser, so ∇F₋ⱼ(θ̂) = −g_j/N). The predicted change is the test loss evaluated at
/// θ̃₋ⱼ; the linearised variant (<c>newton-step-linear</c>) takes ∇L_testᵀ(θ̃₋ⱼ − θ̂) instead, so the
/// two second-order effects (the example's own curvature, the test loss's curvature) can be told apart.
///
/// Logistic regression, in closed form: with x̄ = [x; 1], B_j = I_C ⊗ x̄_j (P×C), A_j the output
/// curvature (C×C) and r_j = ∂L/∂z, g_j = B_j r_j and ∇²L(z_j) = B_j A_j B_jᵀ, so by Woodbury
/// H₋ⱼ⁻¹ g_j = H⁺ B_j w_j with w_j = (I − A_j S_j / N)⁻¹ r_j and S_j = B_jᵀ H⁺ B_j (C×C). The test
/// logits move by Δz_t = (1/N) (I_C ⊗ x̄_t)ᵀ H⁺ B_j w_j: dot products of w_j ⊗ x̄_j (a gradient
/// with w in place of r) with the Q·C preconditioned logit directions H⁺(e_c ⊗ x̄_t). Nothing of
/// size N × P is formed. Its self-influence is the leverage-corrected g_jᵀ H₋ⱼ⁻¹ g_j = r_jᵀ S_j w_j.
///
/// The influence column is −N × the predicted change (so that predicted_delta = −influence/N, as
/// for every method, is the change itself).
/// </summary>
public sealed class NewtonStepMethod(bool linearised) : InfluenceMethod
{
    public override string Name => linearised ? Methods.NewtonStepLinear : Methods.NewtonStep;
    public override string Summary => linearised
        ? "newton-step with the test loss linearised at θ̂: the removed example's own curvature alone"
        : "one Newton step of each leave-one-out objective from θ̂ with its own curvature (Woodbury on the exact Hessian, or on EK-FAC's for networks beyond its size), the test loss evaluated there: second-order leave-one-out";
    public override SelfInfluenceSource SelfInfluenceSource => SelfInfluenceSource.Preconditioner;
    public override bool IsSeeded => false;
    public override bool ScoresWithGradients => false;
    /// <summary>Its test loss is evaluated by a forward pass per training row on a network: too costly to run unasked.</summary>
    public override bool InDefaultComparison => false;

    private static readonly ExactMethod Exact = new();
    private static readonly KroneckerMethod Ekfac = new(eigenvalueCorrected: true);
    private static string StateKey(ScoreJob job) => job.WorkKey("newton-step.safetensors");

    /// <summary>Whether this job's network rows update EK-FAC's inverse (--newton-inverse) rather than the exact Hessian's.</summary>
    internal static bool UsesEkfac(ScoreSettings settings, ModelSpec spec) => !spec.IsLogisticRegression && settings.Options.NewtonInverse switch
    {
        NewtonInverse.Ekfac => true,
        NewtonInverse.Exact => false,
        _ => spec.ParameterCount > ExactHessian.MaxParameters,
    };

    /// <summary>Logistic regression needs its exact Hessian; a network of any size has EK-FAC's.</summary>
    public override void CheckSize(ModelSpec spec)
    {
        if (spec.IsLogisticRegression) Exact.CheckSize(spec);
    }

    public override void CheckJob(ScoreSettings settings, ModelSpec spec)
    {
        if (spec.IsLogisticRegression && settings.Options.NewtonInverse == NewtonInverse.Ekfac)
            throw new ArgumentException("--newton-inverse ekfac is for networks: logistic regression's newton-step has its exact Hessian in closed form");
        if (UsesEkfac(settings, spec)) return; // the queries are preconditioned in blocks, as for ekfac
        Exact.CheckSize(spec);
        // Logistic regression holds Q·C preconditioned logit directions of P float64 (a network, Q test gradients).
        double bytes = (double)settings.TestIndices.Length * (spec.IsLogisticRegression ? spec.OutputDim : 1) * spec.ParameterCount * 8;
        if (bytes > settings.MemoryBudgetMb * (double)(1 << 20))
            throw new ArgumentException(FormattableString.Invariant(
                $"--method {Name} holds {settings.TestIndices.Length:N0} test points × {spec.OutputDim} logits preconditioned directions of {spec.ParameterCount:N0} parameters ({bytes / (1 << 20):N0} MB), more than --memory-budget-mb {settings.MemoryBudgetMb}: choose fewer test points or a larger budget"));
    }

    public override async Task<MethodReport> PrepareAsync(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IScoreStages stages, IProgress<string>? progress)
    {
        if (UsesEkfac(job.Settings, checkpoint.Spec))
        {
            await Ekfac.RunFactorStages(job, checkpoint, stages, progress);
            progress?.Report($"preconditioning the {job.Settings.TestIndices.Length:N0} queries with EK-FAC");
            return await stages.Compute(() => FinishEkfac(job, checkpoint, data, stages.Ranges.Count));
        }
        var units = await stages.PerSiloRanges();
        if (!job.HasScoreTerms) await stages.RunShards(ExactMethod.PartialHessianStage, 0, units);
        long p = checkpoint.Spec.ParameterCount;
        progress?.Report($"factorising the {p}×{p} Hessian and forming its inverse");
        return await stages.Compute(() => Finish(job, checkpoint, data, units));
    }

    public override long RunStage(string stage, ScoreJob job, Checkpoint checkpoint, Dataset train, ShardUnit unit, IProgress<long>? progress) =>
        stage == ExactMethod.PartialHessianStage ? Exact.RunStage(stage, job, checkpoint, train, unit, progress)
        : Ekfac.OwnsStage(stage) ? Ekfac.RunStage(stage, job, checkpoint, train, unit, progress)
        : base.RunStage(stage, job, checkpoint, train, unit, progress);

    /// <summary>
    /// Coordinator step: H + δI factorised as for the exact method, its pseudo-inverse H⁺ formed,
    /// and what every shard reads: H⁺ in per-class blocks, the preconditioned logit directions, and
    /// the test points' probabilities, residuals and labels at θ̂. The term is the usual
    /// preconditioned query H⁺∇L_test (the first-order influence's), for the pipeline's reference rates.
    /// </summary>
    private MethodReport Finish(ScoreJob job, Checkpoint checkpoint, TrainTestData data, IReadOnlyList<(int Start, int End)> units)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        var (inverse, report) = ExactMethod.FactorizeHessian(job, checkpoint, data, units);
        Tensor hPlus;
        using (inverse) hPlus = inverse.Explicit();
        var device = Devices.Default;
        var theta = checkpoint.Theta(device);
        using var test = DataTensors.From(data.Test.Select(job.Settings.TestIndices), spec, device);
        report.Details["second_order"] = spec.IsLogisticRegression
            ? "Woodbury on H + δI − ∇²L(z)/N per training example (the removed example's curvature)"
            : "Woodbury on H + δI − JᵀAJ/N per training example (the removed example's Gauss-Newton curvature), H the exact Hessian";
        report.Details["test_loss"] = TestLoss;
        report.Details["inverse"] = "exact";
        if (!spec.IsLogisticRegression)
        {
            // A network's shards need H⁺ itself, the test rows and their gradients.
            var gradients = ShardScorer.Gradients(spec, theta, test).to(ScalarType.Float64);
            TensorArchive.Write(job.Store, StateKey(job),
            [
                new("inverse", hPlus), new("test_gradients", gradients), new("test_inputs", test.X.to(ScalarType.Float64)),
                new("test_labels", test.Y.to(ScalarType.Float64)),
            ]);
            return job.FinishPreconditioning(theta, hPlus.matmul(gradients.t()).t().contiguous(), report);
        }
        var logits = Network.Logits(spec, theta, test.X).to(ScalarType.Float64);
        var residuals = PerExampleGradients.Backward(spec, theta, test).OutputGradients[0].to(ScalarType.Float64); // Q × C, ∂L/∂z
        var logitQueries = hPlus.matmul(LogitDirections(spec, test.X.to(ScalarType.Float64)).t()).t().contiguous(); // Q·C × P
        long q = test.Count, c = spec.OutputDim;
        var queries = logitQueries.view(q, c, -1).mul(residuals.unsqueeze(2)).sum(1L, false); // H⁺∇L_test = Σ_c r_c H⁺(e_c ⊗ x̄)
        TensorArchive.Write(job.Store, StateKey(job),
        [
            new("class_blocks", ClassBlocks(spec, hPlus)), new("logit_queries", logitQueries),
            new("test_probabilities", OutputCurvature.Probabilities(spec, logits)), new("test_residuals", residuals),
            new("test_labels", test.Y.to(ScalarType.Float64)),
        ]);
        return job.FinishPreconditioning(theta, queries, report);
    }

    private string TestLoss => linearised ? "linearised at θ̂" : "evaluated at the Newton step";

    /// <summary>
    /// Coordinator step with EK-FAC's inverse (a network beyond the exact size, or asked for): the
    /// factors and their report as for ekfac, the test rows for the shards' forward passes, and the
    /// queries preconditioned by (F̂ + (λ + δ)I)⁻¹ in blocks (the first-order influence's).
    /// </summary>
    private MethodReport FinishEkfac(ScoreJob job, Checkpoint checkpoint, TrainTestData data, int shards)
    {
        if (job.HasScoreTerms) return job.LoadMethodReport();
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        var (factors, report) = Ekfac.LoadWithReport(job, spec, shards);
        using (factors)
        {
            report.Details["second_order"] = "Woodbury on EK-FAC's F + (λ + δ)I − JᵀAJ/N per training example (the removed example's Gauss-Newton curvature), layer by layer in the Kronecker eigenbasis";
            report.Details["test_loss"] = TestLoss;
            report.Details["inverse"] = "ekfac";
            var device = Devices.Default;
            using var test = DataTensors.From(data.Test.Select(job.Settings.TestIndices), spec, device);
            TensorArchive.Write(job.Store, StateKey(job), [new("test_inputs", test.X.to(ScalarType.Float64)), new("test_labels", test.Y.to(ScalarType.Float64))]);
            return job.FinishPreconditioning(checkpoint, data, checkpoint.Theta(device), g => factors.PreconditionRows(g, report.Damping, ekfac: true), report);
        }
    }

    /// <summary>The Q·C directions e_c ⊗ x̄_t in θ's layout (W row-major, then the biases): Q·C × P.</summary>
    internal static Tensor LogitDirections(ModelSpec spec, Tensor x)
    {
        long q = x.shape[0], c = spec.OutputDim, d = spec.InputDim;
        var r = zeros(q, c, spec.ParameterCount, dtype: x.dtype, device: x.device);
        for (long k = 0; k < c; k++)
        {
            r.select(1, k).narrow(1, k * d, d).copy_(x);
            r.select(1, k).select(1, c * d + k).fill_(1.0);
        }
        return r.view(q * c, spec.ParameterCount);
    }

    /// <summary>
    /// H⁺ rearranged so that one product gives every S_j: entry (k, (c, e, l)) is H⁺ between
    /// coordinate k of class c's [w_c; b_c] and coordinate l of class e's, (d+1) × C·C·(d+1).
    /// </summary>
    private static Tensor ClassBlocks(ModelSpec spec, Tensor hPlus)
    {
        long c = spec.OutputDim, d = spec.InputDim;
        var order = new long[c * (d + 1)];
        for (long k = 0; k < c; k++)
        {
            for (long i = 0; i < d; i++) order[k * (d + 1) + i] = k * d + i;
            order[k * (d + 1) + d] = c * d + k;
        }
        using var index = tensor(order, device: hPlus.device);
        using var rows = hPlus.index_select(0, index);
        using var blocked = rows.index_select(1, index).view(c, d + 1, c, d + 1);
        return blocked.permute(1, 0, 2, 3).reshape(d + 1, c * c * (d + 1)).contiguous();
    }

    /// <summary>What the shards read (<see cref="Finish"/>), once per plan.</summary>
    private sealed class State(ModelSpec spec, TensorArchive archive, KroneckerFactors? factors = null, double damping = 0) : IDisposable
    {
        // A network's with EK-FAC's inverse: the factors and the damping (with the test rows below).
        public readonly KroneckerFactors? Factors = factors;
        public readonly double Damping = damping;
        // Logistic regression's closed form.
        public readonly Tensor? ClassBlocks = archive.TakeOptional("class_blocks");
        public readonly PerExampleGradients.Queries? LogitQueries = archive.Has("logit_queries") ? new(spec, archive["logit_queries"]) : null;
        public readonly Tensor? TestProbabilities = archive.TakeOptional("test_probabilities");
        public readonly Tensor? TestResiduals = archive.TakeOptional("test_residuals");
        // A network's.
        public readonly Tensor? Inverse = archive.TakeOptional("inverse");
        public readonly Tensor? TestGradients = archive.TakeOptional("test_gradients");
        public readonly Tensor? TestInputs = archive.TakeOptional("test_inputs");
        public readonly Tensor TestLabels = archive.Take("test_labels").to(spec.IsBinary ? ScalarType.Float64 : ScalarType.Int64);

        public void Dispose()
        {
            foreach (var t in new[] { ClassBlocks, TestProbabilities, TestResiduals, Inverse, TestGradients, TestInputs, TestLabels }) t?.Dispose();
            LogitQueries?.Dispose();
            Factors?.Dispose();
            archive.Dispose();
        }
    }

    public override IDisposable? LoadScoringState(ScoreJob job, Checkpoint checkpoint) =>
        UsesEkfac(job.Settings, checkpoint.Spec)
            ? new State(checkpoint.Spec, TensorArchive.Read(job.Store, StateKey(job), Devices.Default), Ekfac.LoadPreconditioner(job, checkpoint.Spec), job.LoadMethodReport().Damping)
            : new State(checkpoint.Spec, TensorArchive.Read(job.Store, StateKey(job), Devices.Default));

    /// <summary>The self-influence comes from <see cref="ScoreRows"/> with the rest (the leverage-corrected form).</summary>
    public override SelfInfluence? SelfInfluence(ScoreJob job, Checkpoint checkpoint, MethodReport report) => null;

    public override ShardScores ScoreRows(ScoreJob job, Checkpoint checkpoint, Dataset train, DataTensors rows, ScorePlan plan, int shard, int start, int end, IProgress<long>? progress)
    {
        var state = plan.State as State ?? throw new InvalidOperationException($"{Name}: the plan has no newton-step state");
        var spec = checkpoint.Spec;
        int n = end - start, q = (int)plan.QueryCount;
        double trainCount = train.Count;
        var influence = new double[(long)q * n];
        var self = new double[n];
        var theta = checkpoint.Theta(rows.X.device);
        var spec64 = spec with { Precision = Precision.Float64 };
        var firstOrderQueries = plan.QueriesFor(spec64, 0, q, out bool owned)[0];
        using var differenceSquares = zeros(q, dtype: ScalarType.Float64, device: rows.X.device);
        using var firstOrderSquares = zeros(q, dtype: ScalarType.Float64, device: rows.X.device);
        long notPositiveDefinite = 0;
        int batchSize = Math.Max(1, job.Settings.BatchSize / 2); // the B × C² × (d+1) product for S is the largest temporary
        for (int b0 = 0; b0 < n; b0 += batchSize)
        {
            using var scope = NewDisposeScope();
            int len = Math.Min(batchSize, n - b0);
            using var batch = rows.Rows(b0, len);
            Tensor change, first;
            NewtonPieces step;
            if (spec.IsLogisticRegression)
            {
                step = Step(spec, theta, batch, state.ClassBlocks!, trainCount);
                var pieces = new PerExampleGradients.Pieces([batch.X.to(ScalarType.Float64)], [step.W]);
                var dz = PerExampleGradients.DotWithQueries(spec64, pieces, state.LogitQueries!)
                    .div(trainCount).view(len, q, spec.OutputDim); // B × Q × C: Δz of each test point when this row is removed
                change = linearised
                    ? dz.mul(state.TestResiduals!.unsqueeze(0)).sum(2L, false)
                    : LossChange(spec, state.TestProbabilities!, state.TestLabels, dz);
                // The first-order prediction of the same rows (the influence function's, −I/N), for the size of the correction.
                var firstPieces = new PerExampleGradients.Pieces([batch.X.to(ScalarType.Float64)], [step.Residuals]);
                first = PerExampleGradients.DotWithQueries(spec64, firstPieces, firstOrderQueries).div(trainCount); // B × Q
            }
            else if (state.Factors is not null)
                (step, change, first) = EkfacStep(spec, theta, batch, state, trainCount, firstOrderQueries);
            else
                (step, change, first) = NetworkStep(spec, theta, batch, state, trainCount);
            differenceSquares.add_(change.sub(first).square().sum(0L, false));
            notPositiveDefinite += step.NotPositiveDefinite;
            firstOrderSquares.add_(first.square().sum(0L, false));
            var block = change.mul(-trainCount).t().contiguous().cpu().data<double>().ToArray(); // q × len
            for (int k = 0; k < q; k++) Array.Copy(block, (long)k * len, influence, (long)k * n + b0, len);
            Array.Copy(step.SelfInfluence.cpu().data<double>().ToArray(), 0, self, b0, len);
            progress?.Report(len);
        }
        if (owned) firstOrderQueries.Dispose();
        TensorArchive.Write(job.Store, CorrectionKey(job, shard), [new(DifferenceSquares, differenceSquares), new(FirstOrderSquares, firstOrderSquares),
            new(NotPositiveDefinite, TensorArchive.Scalar(notPositiveDefinite))]);
        return new ShardScores(start, n, q, influence, self, TopKLists.FromBlock(influence, q, n, start, job.Settings.TopK));
    }

    private const string DifferenceSquares = "difference_squares", FirstOrderSquares = "first_order_squares", NotPositiveDefinite = "not_positive_definite";
    /// <summary>A shard's per-test-point sums over its rows of (prediction − first-order prediction)² and (first-order prediction)².</summary>
    private static string CorrectionKey(ScoreJob job, int shard) => job.WorkKey($"newton-step-correction-{shard:D4}.safetensors");

    /// <summary>
    /// summary.json's method.details.second_order_correction: per test point, ‖Δ − Δ₁‖ / ‖Δ₁‖ over
    /// the training rows, Δ this method's predicted changes and Δ₁ the influence function's (−I/N).
    /// Where it is small the first-order answer suffices.
    /// </summary>
    public override MethodReport CompleteReport(ScoreJob job, IReadOnlyList<ShardRun> shards, MethodReport report)
    {
        int q = job.Settings.TestIndices.Length;
        var (difference, firstOrder) = (new double[q], new double[q]);
        long indefinite = 0;
        foreach (var shard in shards)
        {
            using var a = TensorArchive.Read(job.Store, CorrectionKey(job, shard.Index), Devices.Default);
            var d = a.Take(DifferenceSquares).cpu().data<double>().ToArray();
            var f = a.Take(FirstOrderSquares).cpu().data<double>().ToArray();
            if (d.Length != q || f.Length != q) throw new InvalidDataException($"{CorrectionKey(job, shard.Index)}: {d.Length} test points, not {q}");
            indefinite += a.Long(NotPositiveDefinite);
            for (int k = 0; k < q; k++) { difference[k] += d[k]; firstOrder[k] += f[k]; }
        }
        var relative = difference.Zip(firstOrder, (d, f) => Math.Sqrt(d / f)).ToArray();
        var sorted = relative.OrderBy(v => v).ToArray();
        if (indefinite > 0)
            report.Warnings.Add($"for {indefinite} training row{(indefinite == 1 ? "" : "s")} the leave-one-out curvature (H + δI less the row's own) is not positive definite: their Newton step is not a descent step (raise --damping)");
        report.Details["second_order_correction"] = new JsonObject
        {
            ["definition"] = $"per test point, the norm over training rows of (this prediction - the first-order one with the same inverse, -influence/N of {(report.Details["inverse"]?.GetValue<string>() == "ekfac" ? "ekfac" : "exact")}) over the norm of the first-order one",
            ["median"] = sorted[sorted.Length / 2],
            ["max"] = sorted[^1],
            ["per_test"] = new JsonArray(relative.Select((v, k) => (JsonNode)new JsonObject { ["test_index"] = job.Settings.TestIndices[k], ["relative_size"] = v }).ToArray()),
        };
        return report;
    }

    /// <summary>One batch's Newton-step pieces: w_j (B × C) and the leverage-corrected self-influence r_jᵀ S_j w_j.</summary>
    internal sealed record NewtonPieces(Tensor W, Tensor SelfInfluence, Tensor S, Tensor Residuals, long NotPositiveDefinite);

    /// <summary>
    /// Rows whose H₋ⱼ + δI = H + δI − B_jA_jB_jᵀ/N is not positive definite (given H + δI is): where
    /// the largest eigenvalue of A^½ S A^½ / N reaches 1.
    /// </summary>
    private static long CountNotPositiveDefinite(Tensor a, Tensor s, double trainCount)
    {
        using var scope = NewDisposeScope();
        var (values, vectors) = linalg.eigh(a);
        var root = vectors.mul(values.clamp_min(0).sqrt().unsqueeze(1)).matmul(vectors.transpose(1, 2));
        var largest = linalg.eigvalsh(root.matmul(s).matmul(root)).select(1, -1);
        return largest.div(trainCount).ge(1.0).sum().item<long>();
    }

    /// <summary>
    /// A network's rows (the exact Hessian's H⁺, P small): E = J H⁺ from each row's logit Jacobian J
    /// (C × P), S = E Jᵀ, w = (I − A S/N)⁻¹ r, Δθ = Eᵀw/N; the test loss evaluated at θ̂ + Δθ by a
    /// forward pass per row (or linearised), and the first-order Eᵀr/N's prediction beside it.
    /// </summary>
    private (NewtonPieces Step, Tensor Change, Tensor First) NetworkStep(ModelSpec spec, Tensor theta, DataTensors batch, State state, double trainCount)
    {
        long len = batch.Count, c = spec.OutputDim, p = spec.ParameterCount;
        var jacobians = PerExampleGradients.Jacobians(spec, theta, batch.X).to(ScalarType.Float64); // B × C × P
        var e = jacobians.view(len * c, p).matmul(state.Inverse!).view(len, c, p);
        var s = e.bmm(jacobians.transpose(1, 2));
        var step = Woodbury(spec, theta, batch, s, trainCount);
        var (w, r) = (step.W, step.Residuals);
        var steps = e.transpose(1, 2).bmm(w.unsqueeze(2)).squeeze(2).div(trainCount);          // B × P
        var firstSteps = e.transpose(1, 2).bmm(r.unsqueeze(2)).squeeze(2).div(trainCount);    // B × P
        var first = firstSteps.matmul(state.TestGradients!.t());                               // B × Q
        var change = linearised ? steps.matmul(state.TestGradients!.t()) : TestLossChanges(spec, theta, steps, state);
        return (step, change, first);
    }

    /// <summary>Each test point's loss at θ̂ + Δθ_b less its loss at θ̂, for every row b of <paramref name="steps"/> (B × P): B × Q, one forward pass of the test points per row.</summary>
    private static Tensor TestLossChanges(ModelSpec spec, Tensor theta, Tensor steps, State state)
    {
        var theta64 = theta.to(ScalarType.Float64);
        var inputs = state.TestInputs!.to(spec.ScalarType);
        var labels = state.TestLabels.to(spec.IsBinary ? spec.ScalarType : ScalarType.Int64);
        var before = Objective.PerExampleLoss(spec, Network.Logits(spec, theta, inputs), labels).to(ScalarType.Float64);
        return stack(Enumerable.Range(0, (int)steps.shape[0]).Select(b =>
        {
            var moved = theta64.add(steps[b]).to(spec.ScalarType);
            return Objective.PerExampleLoss(spec, Network.Logits(spec, moved, inputs), labels).to(ScalarType.Float64).sub(before);
        }).ToList());
    }

    /// <summary>
    /// A network's rows with EK-FAC's inverse H̃⁻¹, H̃ = Q(Λ + λ + δ)Qᵀ per layer, without any P×P
    /// or C×P matrix per row. Each logit's per-example gradient of a Linear layer is δ_c āᵀ (summed
    /// over positions for a convolution), which the eigenbasis rotates to (Q_Sᵀδ_c)(Q_Aᵀā)ᵀ, so
    /// S = J H̃⁻¹ Jᵀ (C×C) is Σ_layers Σ_ik d̂_ci d̂_c'i â_k² / (Λ_ik + λ + δ). Then w = (I − A S/N)⁻¹ r
    /// as for the exact Hessian; the step Δθ = H̃⁻¹Jᵀw/N is the per-example gradient with w in place
    /// of the residuals r (the output gradients are linear in the logits' cotangent), so the
    /// linearised change is its dot product with the preconditioned queries H̃⁻¹∇L_test, and the
    /// evaluated one preconditions Δθ row by row and runs the test points forward at θ̂ + Δθ.
    /// </summary>
    private (NewtonPieces Step, Tensor Change, Tensor First) EkfacStep(ModelSpec spec, Tensor theta, DataTensors batch, State state, double trainCount,
        PerExampleGradients.Queries queries)
    {
        var factors = state.Factors!;
        long len = batch.Count;
        int c = spec.OutputDim, layers = spec.Layers.Count;
        var spec64 = spec with { Precision = Precision.Float64 };
        // The rows of each example's Jacobian as layer pieces: one backward pass per logit.
        var perLogit = Enumerable.Range(0, c).Select(k => PerExampleGradients.Backward(spec, theta, batch.X, z => z.select(1, k).sum())).ToArray();
        var inputs = perLogit[0].Inputs.Select(t => t.to(ScalarType.Float64)).ToArray();
        var outputs = Enumerable.Range(0, layers).Select(l => stack(perLogit.Select(p => p.OutputGradients[l].to(ScalarType.Float64)).ToList(), 1)).ToArray(); // B × C × (L ×) Out
        var s = zeros(len, c, c, dtype: ScalarType.Float64, device: theta.device);
        for (int l = 0; l < layers; l++)
        {
            var rotatedInputs = KfacFactorSums.Augment(inputs[l]).matmul(factors.QA[l]);   // B × (L ×) (In+1)
            var rotatedOutputs = outputs[l].matmul(factors.QS[l]);                         // B × C × (L ×) Out
            var inverse = factors.Eigenvalues(l, ekfac: true).add(spec.L2 + state.Damping).reciprocal(); // Out × (In+1)
            if (inputs[l].dim() == 3)
            {
                long positions = inputs[l].shape[1];
                var g = KfacFactorSums.RotatedGradients(rotatedOutputs.flatten(0, 1),
                    rotatedInputs.unsqueeze(1).expand(-1, c, -1, -1).reshape(len * c, positions, -1)).view(len, c, -1); // B × C × Out·(In+1)
                s.add_(g.mul(inverse.flatten()).bmm(g.transpose(1, 2)));
            }
            else
            {
                var m = rotatedInputs.square().matmul(inverse.t()); // B × Out: Σ_k â_k² / (Λ_ik + λ + δ)
                s.add_(rotatedOutputs.mul(m.unsqueeze(1)).bmm(rotatedOutputs.transpose(1, 2)));
            }
        }
        var step = Woodbury(spec, theta, batch, s, trainCount);
        var (w, r) = (step.W, step.Residuals);
        // Σ_c v_c ∂z_c/∂θ per example, as layer pieces.
        PerExampleGradients.Pieces Along(Tensor v) => new(inputs, outputs.Select(o =>
            o.mul(v.view(o.dim() == 4 ? [len, c, 1, 1] : [len, c, 1])).sum(1L, false)).ToList());
        var first = PerExampleGradients.DotWithQueries(spec64, Along(r), queries).div(trainCount);  // B × Q
        var stepPieces = Along(w);
        Tensor change;
        if (linearised) change = PerExampleGradients.DotWithQueries(spec64, stepPieces, queries).div(trainCount);
        else
        {
            var gradients = zeros(len, spec.ParameterCount, dtype: ScalarType.Float64, device: theta.device);
            PerExampleGradients.Materialize(spec64, stepPieces, gradients);
            change = TestLossChanges(spec, theta, factors.PreconditionRows(gradients, state.Damping, ekfac: true).div_(trainCount), state);
        }
        return (step, change, first);
    }

    /// <summary>
    /// S_j = B_jᵀ H⁺ B_j from the class blocks, A_j and r_j at θ̂, and w_j = (I − A_j S_j / N)⁻¹ r_j
    /// for the batch's rows (float64).
    /// </summary>
    internal static NewtonPieces Step(ModelSpec spec, Tensor theta, DataTensors batch, Tensor classBlocks, double trainCount)
    {
        long len = batch.Count, c = spec.OutputDim, d = spec.InputDim;
        var x = batch.X.to(ScalarType.Float64);
        var xBar = cat([x, ones(len, 1, dtype: ScalarType.Float64, device: x.device)], 1);
        var s = xBar.matmul(classBlocks).view(len, c, c, d + 1).mul(xBar.view(len, 1, 1, d + 1)).sum(3L, false); // B × C × C
        return Woodbury(spec, theta, batch, s, trainCount);
    }

    /// <summary>
    /// Given each row's S_j = J_j H⁺ J_jᵀ (B × C × C, any inverse): A_j and r_j = ∂L/∂z at θ̂,
    /// w_j = (I − A_j S_j / N)⁻¹ r_j, the leverage-corrected self-influence r_jᵀ S_j w_j, and the
    /// rows whose leave-one-out curvature is not positive definite.
    /// </summary>
    private static NewtonPieces Woodbury(ModelSpec spec, Tensor theta, DataTensors batch, Tensor s, double trainCount)
    {
        long len = batch.Count, c = spec.OutputDim;
        var logits = Network.Logits(spec, theta, batch.X).to(ScalarType.Float64);
        var a = OutputCurvature.Matrix(spec, logits);
        var r = PerExampleGradients.Backward(spec, theta, batch).OutputGradients[^1].to(ScalarType.Float64); // B × C
        var system = eye(c, dtype: ScalarType.Float64, device: theta.device).unsqueeze(0).sub(a.matmul(s).div(trainCount));
        var w = linalg.solve(system, r.unsqueeze(2)).squeeze(2);
        var selfInfluence = r.unsqueeze(1).matmul(s).matmul(w.unsqueeze(2)).view(len);
        return new NewtonPieces(w, selfInfluence, s, r, CountNotPositiveDefinite(a, s, trainCount));
    }

    /// <summary>
    /// L(z + Δ, y) − L(z, y) for every (row, test point) without cancellation: softmax cross-entropy
    /// log(Σ_c p_c e^{Δ_c}) − Δ_y = log1p(Σ_c p_c expm1(Δ_c)) − Δ_y; the sigmoid's likewise with
    /// p = σ(z): log1p(p·expm1(Δ)) − yΔ.
    /// </summary>
    internal static Tensor LossChange(ModelSpec spec, Tensor probabilities, Tensor labels, Tensor dz)
    {
        // dz: B × Q × C; probabilities: Q × C; labels: Q.
        var spread = dz.expm1().mul(probabilities.unsqueeze(0)).sum(2L, false).log1p();
        var atLabel = spec.IsBinary
            ? dz.squeeze(2).mul(labels.to(ScalarType.Float64).unsqueeze(0))
            : dz.gather(2, labels.view(1, -1, 1).expand(dz.shape[0], -1, 1)).squeeze(2);
        return spread.sub(atLabel);
    }

    public override void ReportOptions(ScoreSettings settings, ModelSpec spec, JsonObject options)
    {
        options["newton_inverse"] = SettingsJson.Word(settings.Options.NewtonInverse);
        if (!UsesEkfac(settings, spec)) return;
        // EK-FAC's options: its Fisher labels, sampled with the method seed.
        Ekfac.ReportOptions(settings, spec, options);
        options["method_seed"] = settings.Options.MethodSeed;
    }

    public override string Describe(MethodReport report) =>
        $"{base.Describe(report)}, {(report.Details["inverse"]?.GetValue<string>() == "ekfac" ? "EK-FAC's inverse" : "exact inverse")}, {(linearised ? "test loss linearised" : "test loss evaluated at the step")}";
}
