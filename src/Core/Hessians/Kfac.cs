using Influence.Core.Storage;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Hessians;

/// <summary>Which labels the Fisher's output gradients use.</summary>
public enum FisherLabels
{
    /// <summary>The training labels (the empirical Fisher).</summary>
    Empirical,
    /// <summary>Labels drawn from the model's own predictive distribution, seeded (the true Fisher, as Kronfluence does).</summary>
    Sampled,
}

/// <summary>
/// Per-layer Kronecker factors summed over some rows (a shard's share): for a Linear layer with
/// input a augmented by a 1 (for the bias), ā, and output gradient δ of an example's loss,
/// A = Σ ā āᵀ and S = Σ δ δᵀ. The coordinator adds the shards' sums and divides by their count.
/// </summary>
public sealed record KfacFactorSums(Tensor[] A, Tensor[] S, long Count) : IDisposable
{
    public static KfacFactorSums Accumulate(ModelSpec spec, Tensor theta, DataTensors rows, FisherLabels labels, int seed, int batchSize = 512)
    {
        var a = spec.Layers.Select(l => zeros(l.In + 1, l.In + 1, dtype: ScalarType.Float64, device: theta.device)).ToArray();
        var s = spec.Layers.Select(l => zeros(l.Out, l.Out, dtype: ScalarType.Float64, device: theta.device)).ToArray();
        FisherPass.Run(spec, theta, rows, labels, seed, batchSize, (l, augmented, delta) =>
        {
            if (augmented.dim() == 3)
            {
                // A convolution (KFC, Grosse & Martens 2016): A sums ā ā ᵀ over an example's output
                // positions, S averages δ δᵀ over them, so S ⊗ A is the Fisher under their
                // spatial-homogeneity and uncorrelated-derivative assumptions.
                long positions = augmented.shape[1];
                var af = augmented.flatten(0, 1);
                var df = delta.flatten(0, 1);
                a[l].add_(af.t().matmul(af));
                s[l].add_(df.t().matmul(df).div_(positions));
                return;
            }
            a[l].add_(augmented.t().matmul(augmented));
            s[l].add_(delta.t().matmul(delta));
        });
        return new KfacFactorSums(a, s, rows.Count);
    }

    /// <summary>[a, 1] per row (per position for a convolution's B × L × In patches).</summary>
    public static Tensor Augment(Tensor inputs)
    {
        var shape = inputs.shape.ToArray();
        shape[^1] = 1;
        return cat([inputs, ones(shape, dtype: inputs.dtype, device: inputs.device)], -1);
    }

    /// <summary>
    /// Each example's layer gradient [∇W | ∇b] rotated into the eigenbasis, Q_Sᵀ G Q_A, B × Out × (In+1),
    /// from δ rotated by Q_S and ā by Q_A: one outer product (Linear) or a sum over positions (convolution).
    /// </summary>
    internal static Tensor RotatedGradients(Tensor rotatedDelta, Tensor rotatedAugmented) =>
        rotatedAugmented.dim() == 3
            ? rotatedDelta.transpose(1, 2).bmm(rotatedAugmented)
            : rotatedDelta.unsqueeze(2).mul(rotatedAugmented.unsqueeze(1));

    public KfacFactorSums Add(KfacFactorSums other) =>
        new(A.Zip(other.A, (x, y) => x.add(y)).ToArray(), S.Zip(other.S, (x, y) => x.add(y)).ToArray(), Count + other.Count);

    public void Dispose()
    {
        foreach (var t in A.Concat(S)) t.Dispose();
    }
}

/// <summary>
/// K-FAC and EK-FAC (George et al. 2018; Grosse et al. 2023) for the objective's data term: per
/// layer, F ≈ S ⊗ A in the row-major vec of the gradient matrix [∇W | ∇b]. Both are diagonal in
/// the Kronecker eigenbasis Q_S ⊗ Q_A: K-FAC with eigenvalues λ_S λ_A, EK-FAC with the corrected
/// E[(Q_Sᵀ G Q_A)²] from a second pass over the data. Queries are preconditioned with
/// (F̂ + (λ + δ) I)⁻¹ per layer: the weight decay λ is added on every parameter of the layer (exact
/// for decay on all parameters, approximate on unpenalised biases).
/// </summary>
public sealed class KroneckerFactors : IDisposable
{
    private readonly ModelSpec spec;

    private KroneckerFactors(ModelSpec spec, Tensor[] qa, Tensor[] la, Tensor[] qs, Tensor[] ls)
    {
        this.spec = spec;
        QA = qa; LA = la; QS = qs; LS = ls;
    }

    public Tensor[] QA { get; }
    public Tensor[] LA { get; }
    public Tensor[] QS { get; }
    public Tensor[] LS { get; }
    /// <summary>EK-FAC's corrected eigenvalues per layer (Out × (In+1)); null until <see cref="SetCorrections"/>.</summary>
    public Tensor[]? Corrected { get; private set; }

    /// <summary>Means of the summed factors, eigendecomposed once.</summary>
    public static KroneckerFactors FromSums(ModelSpec spec, KfacFactorSums sums)
    {
        int n = spec.Layers.Count;
        var qa = new Tensor[n]; var la = new Tensor[n]; var qs = new Tensor[n]; var ls = new Tensor[n];
        for (int l = 0; l < n; l++)
        {
            (la[l], qa[l]) = linalg.eigh(sums.A[l].div(sums.Count));
            (ls[l], qs[l]) = linalg.eigh(sums.S[l].div(sums.Count));
        }
        return new KroneckerFactors(spec, qa, la, qs, ls);
    }

    /// <summary>Σ over rows of (Q_Sᵀ G_n Q_A)², per layer: a shard's share of EK-FAC's eigenvalue correction.</summary>
    public Tensor[] CorrectionSums(Tensor theta, DataTensors rows, FisherLabels labels, int seed, int batchSize = 512)
    {
        var sums = spec.Layers.Select(l => zeros(l.Out, l.In + 1, dtype: ScalarType.Float64, device: theta.device)).ToArray();
        FisherPass.Run(spec, theta, rows, labels, seed, batchSize, (l, augmented, delta) =>
        {
            // Q_Sᵀ (δ āᵀ) Q_A = (Q_Sᵀ δ)(Q_Aᵀ ā)ᵀ: rotate the two factors, then square the outer products.
            var d = delta.matmul(QS[l]);
            var a = augmented.matmul(QA[l]);
            if (a.dim() == 3) sums[l].add_(KfacFactorSums.RotatedGradients(d, a).square().sum(0L, false));
            else sums[l].add_(d.square().t().matmul(a.square()));
        });
        return sums;
    }

    /// <summary>Sets EK-FAC's eigenvalues from the shards' correction sums over <paramref name="count"/> rows.</summary>
    public void SetCorrections(Tensor[] sums, long count) => Corrected = sums.Select(s => s.div(count)).ToArray();

    /// <summary>The eigenvalues a method uses for layer l, Out × (In+1).</summary>
    public Tensor Eigenvalues(int l, bool ekfac) =>
        ekfac ? Corrected?[l] ?? throw new InvalidOperationException("EK-FAC needs the eigenvalue corrections (a second pass over the data)")
              : LS[l].unsqueeze(1).mul(LA[l].unsqueeze(0));

    /// <summary>(F̂ + (λ + δ) I)⁻¹ applied to each column of <paramref name="g"/> (P×K), layer by layer.</summary>
    public Tensor Solve(Tensor g, double damping, bool ekfac)
    {
        using var rows = g.t().contiguous();
        using var solved = PreconditionRows(rows, damping, ekfac);
        return solved.t().contiguous();
    }

    /// <summary>
    /// (F̂ + (λ + δ) I)⁻¹ applied to each row of <paramref name="rows"/> (K×P), layer by layer:
    /// rotate each row's [∇W | ∇b] into the eigenbasis, divide, rotate back. The rotations are
    /// orthogonal, so they run in the rows' precision (float32 for a float32 model: half the time
    /// of float64, at no loss beyond float32's own rounding); the denominators are formed in float64.
    /// </summary>
    public Tensor PreconditionRows(Tensor rows, double damping, bool ekfac)
    {
        long k = rows.shape[0];
        var result = empty(rows.shape, dtype: rows.dtype, device: rows.device);
        for (int l = 0; l < spec.Layers.Count; l++)
        {
            using var scope = NewDisposeScope();
            var layer = spec.Layers[l];
            var qs = QS[l].to(rows.dtype);
            var qa = QA[l].to(rows.dtype);
            var m = cat([rows.narrow(1, layer.WeightOffset, layer.WeightCount).reshape(k, layer.Out, layer.In),
                         rows.narrow(1, layer.BiasOffset, layer.Out).reshape(k, layer.Out, 1)], 2);
            var rotated = qs.t().matmul(m);
            m.Dispose();
            var inEigenbasis = rotated.matmul(qa);
            rotated.Dispose();
            inEigenbasis.div_(Eigenvalues(l, ekfac).add(spec.L2 + damping).to(rows.dtype));
            var back = qs.matmul(inEigenbasis);
            inEigenbasis.Dispose();
            var solved = back.matmul(qa.t());
            back.Dispose();
            result.narrow(1, layer.WeightOffset, layer.WeightCount).view(k, layer.Out, layer.In).copy_(solved.narrow(2, 0, layer.In));
            result.narrow(1, layer.BiasOffset, layer.Out).view(k, layer.Out, 1).copy_(solved.narrow(2, layer.In, 1));
        }
        return result;
    }

    /// <summary>
    /// gᵀ(F̂ + (λ + δ)I)⁻¹g for each example of a batch, from its layer pieces: in the eigenbasis the
    /// layer gradient δāᵀ rotates to (Q_Sᵀδ)(Q_Aᵀā)ᵀ, so the form is Σ_ij (Q_Sᵀδ)_i² (Q_Aᵀā)_j² / (Λ_ij + λ + δ).
    /// </summary>
    public Tensor QuadraticForms(PerExampleGradients.Pieces pieces, double damping, bool ekfac)
    {
        using var scope = NewDisposeScope();
        Tensor? total = null;
        for (int l = 0; l < spec.Layers.Count; l++)
        {
            var d = pieces.OutputGradients[l].to(ScalarType.Float64).matmul(QS[l]);                 // B × Out (B × L × Out)
            var a = KfacFactorSums.Augment(pieces.Inputs[l]).to(ScalarType.Float64).matmul(QA[l]);  // B × (In+1) (B × L × (In+1))
            var inverse = Eigenvalues(l, ekfac).add(spec.L2 + damping).reciprocal();                // Out × (In+1)
            var term = pieces.IsSpatial(l)
                ? KfacFactorSums.RotatedGradients(d, a).square().mul(inverse).sum([1L, 2L])
                : d.square().matmul(inverse).mul(a.square()).sum(1L, false);
            total = total is null ? term : total.add(term);
        }
        return total!.MoveToOuterDisposeScope();
    }

    /// <summary>Per layer l: the eigenvectors and eigenvalues of A (layer{l}.qa, .la) and S (.qs, .ls); EK-FAC's corrected eigenvalues go to their own artifact.</summary>
    public void Save(IArtifactStore store, string key) => TensorArchive.Write(store, key, Enumerable.Range(0, spec.Layers.Count).SelectMany(l =>
        new KeyValuePair<string, Tensor>[] { new($"layer{l}.qa", QA[l]), new($"layer{l}.la", LA[l]), new($"layer{l}.qs", QS[l]), new($"layer{l}.ls", LS[l]) }));

    public static KroneckerFactors Load(ModelSpec spec, IArtifactStore store, string key, Device device)
    {
        using var a = TensorArchive.Read(store, key, device);
        int n = spec.Layers.Count;
        if (a.Has($"layer{n}.qa")) throw new InvalidDataException($"artifact '{key}' has factors of more layers than the model's {n}");
        Tensor[] Layers(string name) => Enumerable.Range(0, n).Select(l => a.Take($"layer{l}.{name}")).ToArray();
        return new KroneckerFactors(spec, Layers("qa"), Layers("la"), Layers("qs"), Layers("ls"));
    }

    /// <summary>Writes a shard's sums (factor sums, or correction sums): the example count and the tensors as sum0, sum1, ….</summary>
    public static void WriteSums(IArtifactStore store, string key, long count, IReadOnlyList<Tensor> tensors)
    {
        using var scope = NewDisposeScope();
        TensorArchive.Write(store, key, tensors.Select((t, i) => new KeyValuePair<string, Tensor>($"sum{i}", t)).Prepend(new("count", TensorArchive.Scalar(count))));
    }

    public static (long Count, Tensor[] Tensors) ReadSums(IArtifactStore store, string key, Device device)
    {
        using var a = TensorArchive.Read(store, key, device);
        var tensors = new List<Tensor>();
        for (int i = 0; a.Has($"sum{i}"); i++) tensors.Add(a.Take($"sum{i}"));
        return (a.Long("count"), tensors.ToArray());
    }

    public void Dispose()
    {
        foreach (var t in QA.Concat(LA).Concat(QS).Concat(LS).Concat(Corrected ?? [])) t.Dispose();
    }
}

/// <summary>
/// One pass over rows in batches for the Fisher's pieces: per layer, the augmented inputs ā and the
/// output gradients δ (float64) of each batch, with the training labels or labels sampled from
/// the model (seeded). Factor sums and EK-FAC corrections are both such passes.
/// </summary>
internal static class FisherPass
{
    public static void Run(ModelSpec spec, Tensor theta, DataTensors rows, FisherLabels labels, int seed, int batchSize, Action<int, Tensor, Tensor> perLayer)
    {
        var generator = new Generator((ulong)seed, theta.device);
        for (long start = 0; start < rows.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = rows.Rows(start, Math.Min(batchSize, rows.Count - start));
            var pieces = PerExampleGradients.Backward(spec, theta, labels == FisherLabels.Empirical ? batch : WithSampledLabels(spec, theta, batch, generator));
            for (int l = 0; l < spec.Layers.Count; l++)
                perLayer(l, KfacFactorSums.Augment(pieces.Inputs[l]).to(ScalarType.Float64), pieces.OutputGradients[l].to(ScalarType.Float64));
        }
    }

    /// <summary>The batch with labels drawn from the model's predictive distribution (the true Fisher's).</summary>
    private static DataTensors WithSampledLabels(ModelSpec spec, Tensor theta, DataTensors batch, Generator generator)
    {
        using var noGrad = no_grad();
        var logits = Network.Logits(spec, theta, batch.X);
        var y = spec.IsBinary
            ? bernoulli(logits.squeeze(1).sigmoid(), generator).to(spec.ScalarType)
            : multinomial(logits.softmax(1), 1, generator: generator).squeeze(1);
        return new DataTensors(batch.X, y);
    }
}
