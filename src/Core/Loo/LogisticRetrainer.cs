using System.Diagnostics;
using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Loo;

/// <summary>One warm leave-one-out retrain of a batch: the parameters and how it ended.</summary>
public sealed record RetrainOutcome(int Removed, double GradientNorm, int Iterations, double Distance, bool Converged);

/// <summary>
/// Warm leave-one-out retrains of logistic regression, many at once, to a gradient norm of 1e-12.
/// <para>
/// Removing example j changes the Hessian at θ̂ by a term of rank ≤ C: H₋ⱼ = H − (1/N) Bⱼ Aⱼ Bⱼᵀ,
/// where Bⱼ = I_C ⊗ x̃ⱼ (x̃ = [x, 1]) and Aⱼ the curvature of the loss in the logits (diag(p) − ppᵀ,
/// or p(1 − p) for the sigmoid). With H⁻¹ formed once, the push-through (Woodbury) identity gives
/// H₋ⱼ⁻¹ from Eⱼ = H⁻¹Bⱼ (C columns) and a C×C solve. Each retrain then iterates
/// θ ← θ − H₋ⱼ(θ̂)⁻¹ ∇F₋ⱼ(θ) from θ̂ (a Newton iteration with the Hessian frozen at θ̂, the
/// "chord" method): the first step is the exact Newton step, and the rest converge linearly at a
/// rate set by how much the curvature moves between θ̂ and θ̂₋ⱼ, which is small.
/// </para>
/// <para>
/// All retrains of a batch share their matrix products: the logits of every θ in the batch are
/// GEMMs over the training set (a block of rows at a time, so memory does not grow with N), and
/// H⁻¹ is applied to all their gradients at once. Internally the
/// parameters of class c are the row [W_c, b_c] (the "augmented" layout); results are returned in
/// the model's flat layout.
/// </para>
/// </summary>
public sealed class LogisticRetrainer : IDisposable
{
    private readonly ModelSpec spec;
    private readonly long n;          // the normaliser N (kept at N when an example is removed)
    private readonly int c;           // outputs: classes, or 1 for the sigmoid head
    private readonly long d1;         // features + 1 (bias)
    private readonly long p;
    private readonly Tensor xAug;     // N × (D+1), float64
    private readonly Tensor y;        // labels: int64 (softmax) or float64 0/1 (sigmoid)
    private readonly Tensor inverseAug; // P × P: (H + s·uuᵀ)⁻¹ in the augmented layout
    private readonly Tensor thetaHatAug; // P
    private readonly Tensor decayAug; // λ on weights, 0 on biases (augmented layout)
    private readonly Tensor toFlat;   // augmented index → flat index permutation
    private readonly Tensor curvatureHat; // N × C × C: A_i at θ̂
    private readonly ScalarType precision; // of the preconditioner
    private readonly Tensor gradientHat;  // ∇F(θ̂) (float64, augmented): ~1e-13, kept so the fixed point is exact
    private readonly Tensor logitGradientHat; // N × C: ∂L_i/∂logits at θ̂
    private readonly double? damping;     // PBRF's δ; null for leave-one-out

    /// <param name="spec">A float64 logistic-regression spec.</param>
    /// <param name="train">Training rows (all N of them), float64.</param>
    /// <param name="thetaHat">θ̂, the full-data optimum (flat layout).</param>
    /// <param name="pbrfDamping">
    /// Null for leave-one-out retrains. A damping δ ≥ 0 solves the proximal Bregman response
    /// function instead (see <see cref="Pbrf"/>): its gradient is ∇F₋ⱼ(θ) − ∇F(θ̂) + δ(θ − θ̂) and its
    /// Hessian at θ̂ is H₋ⱼ + δI, so H + δI is factorised.
    /// </param>
    /// <param name="preconditionerPrecision">
    /// Precision of H⁻¹ and the Woodbury terms. They only precondition: gradients are float64 and
    /// decide convergence, so float32 (the default, 1.5× the GEMM speed here and a third of the
    /// time to invert) changes the rate a little and the answer not at all.
    /// </param>
    public LogisticRetrainer(ModelSpec spec, DataTensors train, Tensor thetaHat, double? pbrfDamping = null, ScalarType preconditionerPrecision = ScalarType.Float32)
    {
        if (!spec.IsLogisticRegression || spec.Precision != Precision.Float64)
            throw new ArgumentException("the batched warm retrainer is for float64 logistic regression");
        if (pbrfDamping is < 0 || (pbrfDamping is { } dd && !double.IsFinite(dd))) throw new ArgumentOutOfRangeException(nameof(pbrfDamping));
        this.spec = spec;
        n = train.Count;
        c = spec.OutputDim;
        d1 = spec.InputDim + 1;
        p = spec.ParameterCount;
        damping = pbrfDamping;
        var device = thetaHat.device;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = train.X.to(ScalarType.Float64);
        xAug = cat([x, ones(n, 1, dtype: ScalarType.Float64, device: device)], 1).MoveToOuterDisposeScope();
        y = (spec.IsBinary ? train.Y.to(ScalarType.Float64) : train.Y.clone()).MoveToOuterDisposeScope();

        // Flat layout: W (C×D row-major) then b (C). Augmented: row c = [W_c, b_c].
        long dIn = spec.InputDim;
        var flatIndex = zeros(c, d1, dtype: ScalarType.Int64, device: device);
        flatIndex.narrow(1, 0, dIn).copy_(arange(c * dIn, dtype: ScalarType.Int64, device: device).view(c, dIn));
        flatIndex.narrow(1, dIn, 1).copy_(arange(c * dIn, c * dIn + c, dtype: ScalarType.Int64, device: device).view(c, 1));
        toFlat = flatIndex.view(-1).MoveToOuterDisposeScope();

        precision = preconditionerPrecision;
        var theta64 = thetaHat.to(ScalarType.Float64);
        var h = ExactHessian.AnalyticLogisticSum(spec, theta64, train).div_(n);
        h.diagonal().add_(Objective.RegularizerHessianDiagonal(spec, device));
        var flat = Network.FlatDirections(spec, device);
        // P×P matrices are 493 MB in float64 at Fashion-MNIST's P: each is freed as soon as the
        // next exists, and the factor overwrites its own matrix.
        var hp = h.to(precision);
        if (!ReferenceEquals(hp, h)) h.Dispose();
        using (var inverse = HessianInverse.Factorize(hp, pbrfDamping ?? 0, flat?.to(precision), computeSpectrum: false, overwrite: true))
        {
            hp.Dispose(); // it held M; the factor is its own tensor
            var formed = FormInverse(inverse, precision);
            inverse.Dispose();
            var rows = formed.index_select(0, toFlat);
            formed.Dispose();
            inverseAug = rows.index_select(1, toFlat).MoveToOuterDisposeScope();
            rows.Dispose();
        }
        thetaHatAug = theta64.index_select(0, toFlat).MoveToOuterDisposeScope();
        var decay = full(c, d1, spec.L2, dtype: ScalarType.Float64, device: device);
        decay.narrow(1, dIn, 1).zero_();
        decayAug = decay.view(-1).MoveToOuterDisposeScope();
        var hatLogits = Logits(thetaHatAug.unsqueeze(0));
        curvatureHat = Curvature(hatLogits.squeeze(1)).MoveToOuterDisposeScope();
        logitGradientHat = LogitGradient(hatLogits).squeeze(1).MoveToOuterDisposeScope();
        gradientHat = Gradients(thetaHatAug.unsqueeze(0), null).squeeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>True when this solves the PBRF rather than leave-one-out.</summary>

    /// <summary>The explicit inverse of the factorised matrix M = H + s·uuᵀ (its pseudo-inverse on the complement of u).</summary>
    private static Tensor FormInverse(HessianInverse inverse, ScalarType precision)
    {
        if (inverse.Kind == InverseKind.Cholesky) return cholesky_inverse(inverse.Factor.to(precision));
        var v = inverse.Factor.to(precision);
        return v.matmul(v.t().div(inverse.Eigenvalues!.to(precision).unsqueeze(1)));
    }

    /// <summary>Logits of every training row under every θ of a batch (B × P augmented): N × B × C.</summary>
    private Tensor Logits(Tensor thetas) => Logits(thetas, xAug);

    /// <summary>Logits of the given rows (R × (D+1)) under every θ of a batch: R × B × C.</summary>
    private Tensor Logits(Tensor thetas, Tensor rows)
    {
        long b = thetas.shape[0];
        return rows.matmul(thetas.view(b * c, d1).t()).view(rows.shape[0], b, c);
    }

    /// <summary>∂L/∂logits for every row and θ: softmax − onehot, or σ − y. logits N × B × C.</summary>
    private Tensor LogitGradient(Tensor logits) => LogitGradient(logits, y);

    /// <summary>∂L/∂logits of rows with the given labels: logits R × B × C, labels R.</summary>
    private Tensor LogitGradient(Tensor logits, Tensor labels)
    {
        long rows = logits.shape[0];
        if (spec.IsBinary) return logits.sigmoid().sub(labels.view(rows, 1, 1));
        var onehot = nn.functional.one_hot(labels, c).to(ScalarType.Float64).unsqueeze(1);
        return logits.softmax(2).sub(onehot);
    }

    private Tensor Curvature(Tensor logits) => Objectives.OutputCurvature.Matrix(spec, logits);

    /// <summary>
    /// Bytes of one R × B × C pass in <see cref="Gradients"/> (the logits, and their softmax beside
    /// them): the rows per pass are chosen to fit, whatever N. Lowered in tests to force many passes.
    /// </summary>
    public long GradientPassBytes { get; init; } = 64L << 20;

    private long RowsPerBlock(long b) => Math.Max(1, GradientPassBytes / (8 * b * c));

    /// <summary>∇F₋ⱼ(θ_b) for every θ of the batch (B × P, augmented), removed[b] = j; ∇F itself when removed is null.</summary>
    private Tensor Gradients(Tensor thetas, Tensor? removed)
    {
        long b = thetas.shape[0];
        // Σ_i r_i ⊗ x̃_i a block of rows at a time: the N × B × C logits of a whole batch are
        // 1 GB at 60,000 rows and B = 200, and there were three such tensors per unit.
        var sum = zeros(b * c, d1, dtype: ScalarType.Float64, device: xAug.device);
        long block = RowsPerBlock(b);
        for (long start = 0; start < n; start += block)
        {
            using var pass = NewDisposeScope();
            long len = Math.Min(block, n - start);
            var rows = xAug.narrow(0, start, len);
            var r = LogitGradient(Logits(thetas, rows), y.narrow(0, start, len));  // len × B × C
            sum.addmm_(r.view(len, b * c).t(), rows);
        }
        var g = sum.view(b, c, d1);
        if (removed is null) return g.view(b, p).div_(n).add_(thetas.mul(decayAug));
        // Each θ_b's own removed row: its logits are θ_b's classes against x̃ⱼ (B × C).
        var xj = xAug.index_select(0, removed);                                       // B × (D+1)
        var logitsJ = thetas.view(b, c, d1).mul(xj.unsqueeze(1)).sum(2L, false).unsqueeze(1); // B × 1 × C
        var rj = LogitGradient(logitsJ, y.index_select(0, removed)).squeeze(1);       // B × C
        g.sub_(rj.unsqueeze(2).mul(xj.unsqueeze(1)));
        g = g.view(b, p).div_(n).add_(thetas.mul(decayAug));
        if (damping is { } delta) g.sub_(gradientHat.unsqueeze(0)).add_(thetas.sub(thetaHatAug.unsqueeze(0)).mul_(delta));
        return g;
    }

    /// <summary>
    /// Retrains without each of <paramref name="removed"/>, from θ̂, until ‖∇F₋ⱼ‖ ≤ tolerance.
    /// Returns the parameters (B × P, flat layout) and an outcome per removal; a removal that did
    /// not converge within <paramref name="maxIterations"/> is reported, not hidden.
    /// </summary>
    public (Tensor Thetas, RetrainOutcome[] Outcomes) Retrain(IReadOnlyList<int> removed, double tolerance = LooContext.FastPathTolerance, int maxIterations = 60)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = xAug.device;
        int b = removed.Count;
        var state = new BatchState(this, removed);
        var thetas = thetaHatAug.unsqueeze(0).repeat(b, 1);
        var norms = Enumerable.Repeat(double.NaN, b).ToArray();
        var iterations = new int[b];

        // The first step needs no pass over the data: ∇F₋ⱼ(θ̂) = ∇F(θ̂) − (1/N) rⱼ ⊗ x̃ⱼ, so
        // H⁻¹∇F₋ⱼ(θ̂) = H⁻¹∇F(θ̂) − (1/N) Eⱼ rⱼ (for the PBRF the ∇F(θ̂) term cancels).
        var rj = logitGradientHat.index_select(0, state.RemovedIndex());         // B × C
        var y0 = state.E.matmul(rj.to(precision).unsqueeze(2)).squeeze(2).div(-n);
        if (damping is null) y0.add_(gradientHat.to(precision).matmul(inverseAug).unsqueeze(0));
        thetas.sub_(state.Step(y0));
        for (int i = 0; i < b; i++) iterations[i] = 1;

        for (int it = 1; it <= maxIterations && state.Count > 0; it++)
        {
            using var step = NewDisposeScope();
            var slots = state.SlotIndex();
            var th = thetas.index_select(0, slots);
            var g = Gradients(th, state.RemovedIndex());
            var gn = g.norm(1).cpu().data<double>().ToArray();
            var keep = new List<int>();
            for (int a = 0; a < state.Count; a++)
            {
                norms[state.Slots[a]] = gn[a];
                if (gn[a] > tolerance && double.IsFinite(gn[a])) keep.Add(a);
            }
            if (keep.Count == 0 || it == maxIterations) break;
            if (keep.Count < state.Count)
            {
                var k = Indices(keep, device);
                g = g.index_select(0, k);
                th = th.index_select(0, k);
                state.Keep(keep);
                slots = state.SlotIndex();
            }
            var delta = state.Step(g.to(precision).matmul(inverseAug));
            thetas.index_copy_(0, slots, th.sub_(delta));
            foreach (var slot in state.Slots) iterations[slot]++;
        }

        var flat = zeros(b, p, dtype: ScalarType.Float64, device: device);
        flat.index_copy_(1, toFlat, thetas);
        var distance = thetas.sub(thetaHatAug.unsqueeze(0)).norm(1).cpu().data<double>().ToArray();
        var outcomes = new RetrainOutcome[b];
        for (int i = 0; i < b; i++)
            outcomes[i] = new RetrainOutcome(removed[i], norms[i], iterations[i], distance[i], norms[i] <= tolerance);
        return (flat.MoveToOuterDisposeScope(), outcomes);
    }

    private static Tensor Indices(IEnumerable<int> values, Device device) =>
        tensor(values.Select(v => (long)v).ToArray(), dtype: ScalarType.Int64, device: device);

    /// <summary>
    /// The per-removal pieces of H₋ⱼ(θ̂)⁻¹ for the retrains still running. Which retrains run is
    /// kept on the host; finished ones are dropped from the tensors in one copy once a quarter of
    /// them has finished, not on every iteration.
    /// </summary>
    private sealed class BatchState
    {
        private readonly LogisticRetrainer owner;
        private readonly int[] removed; // the removed example of each caller row
        private List<int> rows;         // each running retrain's row in E, Xj and Correction

        public BatchState(LogisticRetrainer owner, IReadOnlyList<int> removedExamples)
        {
            this.owner = owner;
            removed = removedExamples.ToArray();
            int b = removed.Length;
            long c = owner.c, d1 = owner.d1, p = owner.p;
            Slots = Enumerable.Range(0, b).ToList();
            rows = Enumerable.Range(0, b).ToList();
            var index = RemovedIndex();
            Xj = owner.xAug.index_select(0, index).to(owner.precision);                             // B × D1
            // Eⱼ = H⁻¹Bⱼ: column k is H⁻¹ on the rows of class block k, times x̃ⱼ.
            E = owner.inverseAug.view(p * c, d1).matmul(Xj.t()).view(p, c, b).permute(2, 0, 1).contiguous(); // B × P × C
            var k = E.view(b, c, d1, c).mul(Xj.view(b, 1, d1, 1)).sum(2L, false).to(ScalarType.Float64); // Bⱼᵀ H⁻¹ Bⱼ
            var aOverN = owner.curvatureHat.index_select(0, index).div(owner.n);
            // Push-through: (H − Bⱼ(A/N)Bⱼᵀ)⁻¹ r = H⁻¹r + Eⱼ (I − (A/N)K)⁻¹ (A/N) Bⱼᵀ H⁻¹r.
            var inner = eye(c, dtype: ScalarType.Float64, device: index.device).unsqueeze(0).sub(aOverN.matmul(k));
            Correction = linalg.solve(inner, aOverN).to(owner.precision);                            // B × C × C
        }

        /// <summary>The caller's row of each running retrain.</summary>
        public List<int> Slots { get; private set; }
        public int Count => Slots.Count;
        public Tensor Xj { get; private set; }
        public Tensor E { get; private set; }
        public Tensor Correction { get; private set; }

        public Tensor SlotIndex() => Indices(Slots, owner.xAug.device);
        public Tensor RemovedIndex() => Indices(Slots.Select(s => removed[s]), owner.xAug.device);

        /// <summary>H₋ⱼ(θ̂)⁻¹r from y0 = H⁻¹r (B × P, rows of the running retrains), in float64.</summary>
        public Tensor Step(Tensor y0)
        {
            long c = owner.c, d1 = owner.d1;
            bool all = rows.Count == E.shape[0];
            var r = all ? null : Indices(rows, E.device);
            var e = all ? E : E.index_select(0, r!);
            var xj = all ? Xj : Xj.index_select(0, r!);
            var corr = all ? Correction : Correction.index_select(0, r!);
            var v = y0.view(-1, c, d1).mul(xj.unsqueeze(1)).sum(2L, false);          // Bⱼᵀ H⁻¹ r
            var w = corr.matmul(v.unsqueeze(2));
            return y0.add(e.matmul(w).squeeze(2)).to(ScalarType.Float64);
        }

        /// <summary>
        /// Keeps the running retrains at positions <paramref name="keep"/> of the current set. Called
        /// inside an iteration's dispose scope: compacted tensors move out to the batch's scope.
        /// </summary>
        public void Keep(List<int> keep)
        {
            Slots = keep.Select(a => Slots[a]).ToList();
            rows = keep.Select(a => rows[a]).ToList();
            if (rows.Count * 4 > E.shape[0] * 3) return;
            var r = Indices(rows, E.device);
            E = E.index_select(0, r).MoveToOuterDisposeScope();
            Xj = Xj.index_select(0, r).MoveToOuterDisposeScope();
            Correction = Correction.index_select(0, r).MoveToOuterDisposeScope();
            rows = Enumerable.Range(0, rows.Count).ToList();
        }
    }

    public void Dispose()
    {
        xAug.Dispose();
        y.Dispose();
        inverseAug.Dispose();
        thetaHatAug.Dispose();
        decayAug.Dispose();
        toFlat.Dispose();
        curvatureHat.Dispose();
        gradientHat.Dispose();
        logitGradientHat.Dispose();
    }
}
