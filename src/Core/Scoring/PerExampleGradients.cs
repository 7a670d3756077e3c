using Influence.Core.Storage;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Scoring;

/// <summary>
/// Gradients of each example's own loss (no regulariser) from one batched pass. For a Linear layer
/// with input a_i and output gradient δ_i = ∂L_i/∂z_i, the weight gradient of example i is the
/// outer product δ_i a_iᵀ and the bias gradient δ_i; for a convolution, the same summed over its
/// output positions (<see cref="Conv2dGradients"/>). δ comes from autograd with respect to the
/// pre-activations of a forward pass over the whole batch.
/// </summary>
public static class PerExampleGradients
{
    /// <summary>
    /// Layer inputs and output gradients of one batch: everything the per-example gradients are
    /// made of. A Linear layer's are B × In and B × Out; a convolution's are per output position,
    /// B × L × In (the unfolded input patches, In = C·kh·kw) and B × L × Out, and an example's
    /// weight gradient is the sum over its positions of the outer products.
    /// </summary>
    public sealed record Pieces(IReadOnlyList<Tensor> Inputs, IReadOnlyList<Tensor> OutputGradients)
    {
        public long Count => Inputs[0].shape[0];
        /// <summary>Layer l has output positions (a convolution): its pieces are B × L × ….</summary>
        public bool IsSpatial(int l) => Inputs[l].dim() == 3;

        /// <summary>Each example's weight gradient of spatial layer l, B × Out × In.</summary>
        public Tensor SpatialWeightGradients(int l) => OutputGradients[l].transpose(1, 2).bmm(Inputs[l]);
    }

    public static Pieces Backward(ModelSpec spec, Tensor theta, DataTensors batch) =>
        Backward(spec, theta, batch.X, logits => Objective.PerExampleLoss(spec, logits, batch.Y).sum());

    /// <summary>
    /// The pieces of the per-example gradients of any per-example function of the logits, given as
    /// its sum over the batch (rows are independent, so ∂sum/∂z_i is example i's own): the loss, or
    /// one logit (a row of each example's Jacobian).
    /// </summary>
    public static Pieces Backward(ModelSpec spec, Tensor theta, Tensor x, Func<Tensor, Tensor> sumOfLogitFunction)
    {
        using var enabled = enable_grad();
        // θ must be in the graph for the pre-activations to be differentiable; only ∂f/∂z is asked for.
        var t = theta.detach().requires_grad_(true);
        var trace = Network.Forward(spec, t, x);
        var loss = sumOfLogitFunction(trace.Logits);
        var deltas = autograd.grad([loss], trace.PreActivations.ToList());
        var layers = spec.Layers;
        var inputs = new List<Tensor>(layers.Count);
        var outputs = new List<Tensor>(layers.Count);
        for (int l = 0; l < layers.Count; l++)
        {
            var a = trace.LayerInputs[l].detach();
            var d = deltas[l].detach();
            if (layers[l].Conv is { } conv)
            {
                inputs.Add(Conv2dGradients.Patches(a, conv.Kernel));
                outputs.Add(Conv2dGradients.PerPosition(d));
            }
            else
            {
                inputs.Add(a);
                outputs.Add(d);
            }
        }
        return new Pieces(inputs, outputs);
    }

    /// <summary>Each example's Jacobian of the logits in θ, B × C × P (C backward passes).</summary>
    public static Tensor Jacobians(ModelSpec spec, Tensor theta, Tensor x)
    {
        long b = x.shape[0], c = spec.OutputDim;
        var j = empty(b, c, spec.ParameterCount, dtype: spec.ScalarType, device: theta.device);
        for (long k = 0; k < c; k++)
        {
            using var scope = NewDisposeScope();
            long column = k;
            Materialize(spec, Backward(spec, theta, x, logits => logits.select(1, column).sum()), j.select(1, k));
        }
        return j;
    }

    /// <summary>Writes the B×P per-example gradient matrix into <paramref name="into"/> (preallocated, B×P).</summary>
    public static void Materialize(ModelSpec spec, Tensor theta, DataTensors batch, Tensor into)
    {
        using var scope = NewDisposeScope();
        Materialize(spec, Backward(spec, theta, batch), into);
    }

    /// <summary>Writes the B×P per-example gradients of one batch's pieces into <paramref name="into"/>.</summary>
    public static void Materialize(ModelSpec spec, Pieces pieces, Tensor into)
    {
        using var scope = NewDisposeScope();
        long b = pieces.Count;
        var layers = spec.Layers;
        for (int l = 0; l < layers.Count; l++)
        {
            var layer = layers[l];
            var delta = pieces.OutputGradients[l];
            var w = into.narrow(1, layer.WeightOffset, layer.WeightCount).view(b, layer.Out, layer.In);
            var bias = into.narrow(1, layer.BiasOffset, layer.Out);
            if (pieces.IsSpatial(l))
            {
                w.copy_(pieces.SpatialWeightGradients(l));
                bias.copy_(delta.sum(1L, false));
                continue;
            }
            // Write the outer products straight into the buffer's strided view: no B×P temporary.
            w.copy_(delta.unsqueeze(2).expand(b, layer.Out, layer.In));
            w.mul_(pieces.Inputs[l].unsqueeze(1));
            bias.copy_(delta);
        }
    }

    public static Tensor Materialize(ModelSpec spec, Tensor theta, DataTensors batch)
    {
        var g = empty(batch.Count, spec.ParameterCount, dtype: spec.ScalarType, device: theta.device);
        Materialize(spec, theta, batch, g);
        return g;
    }

    /// <summary>
    /// Per-layer views of Q query vectors (Q×P), made contiguous once so that every batch can take
    /// dot products with them without forming B×P.
    /// </summary>
    public sealed class Queries : IDisposable
    {
        /// <param name="rank">
        /// 0: exact. r &gt; 0: each query's block [W | b] (Out × (In + 1)) of every Linear layer is
        /// replaced by its best rank-r approximation (Kronfluence's low-rank query
        /// gradients): a dot product then costs r·(Out + In + 1) per query instead of Out·(In + 1).
        /// Convolutions, whose weights are few, stay exact.
        /// </param>
        public Queries(ModelSpec spec, Tensor vectors, int rank = 0)
        {
            if (rank < 0) throw new ArgumentOutOfRangeException(nameof(rank), "the query rank must be ≥ 0");
            Count = vectors.shape[0];
            foreach (var layer in spec.Layers)
            {
                var w = vectors.narrow(1, layer.WeightOffset, layer.WeightCount).reshape(Count, layer.Out, layer.In);
                var b = vectors.narrow(1, layer.BiasOffset, layer.Out);
                if (rank > 0 && layer.Conv is null && rank < Math.Min(layer.Out, layer.In + 1))
                {
                    var (left, right) = TruncatedFactors(cat([w, b.unsqueeze(2)], 2), rank);
                    Left.Add(left);
                    Right.Add(right);
                    Weights.Add(null);
                    Biases.Add(null);
                    continue;
                }
                Weights.Add(w.contiguous());
                Biases.Add(b.contiguous());
                Left.Add(null);
                Right.Add(null);
            }
        }

        /// <summary>
        /// L (Q × r × Out) and R (Q × r × (In + 1)) with Lᵀ R the best rank-r approximation of each
        /// Q × Out × (In + 1) block: the projection onto the top r singular vectors of the smaller
        /// side, found by eigh of the k × k Gram matrix in the model's precision (libtorch's batched
        /// CPU SVD of the blocks themselves is far slower; `influence bench grads` times this route).
        /// </summary>
        private static (Tensor Left, Tensor Right) TruncatedFactors(Tensor m, int rank)
        {
            using var scope = NewDisposeScope();
            bool outputSide = m.shape[1] <= m.shape[2];
            var gram = outputSide ? m.matmul(m.transpose(1, 2)) : m.transpose(1, 2).matmul(m);
            long k = gram.shape[1];
            var top = linalg.eigh(gram).Item2.narrow(2, k - rank, rank); // eigenvalues ascend: the last r
            var (left, right) = outputSide
                ? (top.transpose(1, 2), top.transpose(1, 2).matmul(m))     // M ≈ U_r (U_rᵀ M)
                : (m.matmul(top).transpose(1, 2), top.transpose(1, 2));    // M ≈ (M V_r) V_rᵀ
            return (left.contiguous().MoveToOuterDisposeScope(), right.contiguous().MoveToOuterDisposeScope());
        }

        private Queries(long count) => Count = count;

        /// <summary>Queries [q0, q0 + qn): views of these (no copy); disposing them leaves these intact.</summary>
        public Queries Slice(long q0, long qn)
        {
            var slice = new Queries(qn);
            foreach (var (from, to) in Lists().Zip(slice.Lists()))
                to.AddRange(from.Select(t => t?.narrow(0, q0, qn)));
            return slice;
        }

        /// <summary>Blocks of queries (in order) as one set: each layer's tensors concatenated.</summary>
        public static Queries Concat(IReadOnlyList<Queries> blocks)
        {
            var all = new Queries(blocks.Sum(b => b.Count));
            var lists = all.Lists();
            for (int i = 0; i < lists.Length; i++)
                for (int l = 0; l < blocks[0].Lists()[i].Count; l++)
                    lists[i].Add(blocks[0].Lists()[i][l] is null ? null : cat(blocks.Select(b => b.Lists()[i][l]!).ToList(), 0));
            return all;
        }

        /// <summary>Takes every tensor out of the current dispose scope (the caller disposes the queries).</summary>
        public Queries DetachFromDisposeScope()
        {
            foreach (var t in Lists().SelectMany(x => x)) t?.DetachFromDisposeScope();
            return this;
        }

        private static readonly string[] ListNames = ["weight", "bias", "left", "right"];

        private List<Tensor?>[] Lists() => [Weights, Biases, Left, Right];

        /// <summary>The per-layer tensors as archive entries "PREFIX.layerL.weight" (…bias, …left, …right; only those present).</summary>
        public IEnumerable<KeyValuePair<string, Tensor>> Entries(string prefix) =>
            Lists().SelectMany((list, i) => list.Select((t, l) => (t, l)).Where(x => x.t is not null)
                .Select(x => new KeyValuePair<string, Tensor>($"{prefix}.layer{x.l}.{ListNames[i]}", x.t!)));

        /// <summary>Queries written by <see cref="Entries"/>, checked against the model's layer shapes.</summary>
        public static Queries Take(TensorArchive archive, string prefix, ModelSpec spec, string source)
        {
            Tensor? Get(int l, string name) => archive.Has($"{prefix}.layer{l}.{name}") ? archive.Take($"{prefix}.layer{l}.{name}") : null;
            var layers = spec.Layers;
            var read = layers.Select((_, l) => (W: Get(l, "weight"), B: Get(l, "bias"), L: Get(l, "left"), R: Get(l, "right"))).ToList();
            long count = (read[0].W ?? read[0].L)?.shape[0] ?? -1;
            for (int l = 0; l < layers.Count; l++)
            {
                var (layer, (w, b, left, right)) = (layers[l], read[l]);
                bool exact = w is not null && b is not null && left is null && right is null
                    && w.dim() == 3 && w.shape[0] == count && w.shape[1] == layer.Out && w.shape[2] == layer.In
                    && b.dim() == 2 && b.shape[0] == count && b.shape[1] == layer.Out;
                bool lowRank = w is null && b is null && left is not null && right is not null
                    && left.dim() == 3 && right.dim() == 3 && left.shape[0] == count && right.shape[0] == count
                    && left.shape[1] == right.shape[1] && left.shape[2] == layer.Out && right.shape[2] == layer.In + 1;
                if (!exact && !lowRank)
                    throw new InvalidDataException($"{source}: the queries of layer {l} are neither a {layer.Out}×{layer.In} block with its bias nor its low-rank factors, for as many queries as layer 0's");
            }
            var q = new Queries(count);
            foreach (var (w, b, left, right) in read) { q.Weights.Add(w); q.Biases.Add(b); q.Left.Add(left); q.Right.Add(right); }
            return q;
        }

        /// <summary>
        /// Values each query adds to a batch's intermediates in <see cref="DotWithQueries(ModelSpec, Pieces, Queries)"/>,
        /// per example: 3r for a low-rank layer (the two products and theirs), min(In, Out) for an exact one.
        /// </summary>
        public long IntermediatesPerQuery(ModelSpec spec) =>
            spec.Layers.Select((layer, l) => Left[l] is { } left ? 3 * left.shape[1] : Math.Min(layer.In, layer.Out)).Sum();

        public long Count { get; }
        /// <summary>Per layer: Q × Out × In weight blocks and Q × Out biases (null where the layer is low-rank).</summary>
        public List<Tensor?> Weights { get; } = [];
        public List<Tensor?> Biases { get; } = [];
        /// <summary>Per layer: the Q × r × Out and Q × r × (In + 1) factors of the low-rank blocks (null where exact).</summary>
        public List<Tensor?> Left { get; } = [];
        public List<Tensor?> Right { get; } = [];

        public void Dispose()
        {
            foreach (var t in Weights.Concat(Biases).Concat(Left).Concat(Right)) t?.Dispose();
        }
    }

    /// <summary>B×Q matrix of g_iᵀ q_k, from the layer pieces, without materialising per-example gradients.</summary>
    public static Tensor DotWithQueries(ModelSpec spec, Tensor theta, DataTensors batch, Queries queries)
    {
        using var scope = NewDisposeScope();
        return DotWithQueries(spec, Backward(spec, theta, batch), queries).MoveToOuterDisposeScope();
    }

    /// <summary>B×Q matrix of g_iᵀ q_k from one batch's pieces.</summary>
    public static Tensor DotWithQueries(ModelSpec spec, Pieces pieces, Queries queries)
    {
        using var scope = NewDisposeScope();
        var layers = spec.Layers;
        long b = pieces.Count, q = queries.Count;
        var device = pieces.Inputs[0].device;
        var result = zeros(b, q, dtype: spec.ScalarType, device: device);
        for (int l = 0; l < layers.Count; l++)
        {
            var layer = layers[l];
            if (queries.Left[l] is { } left && queries.Right[l] is { } right)
            {
                // Σ_k (u_kᵀδ)(v_kᵀ[a; 1]) per query: B × Q·r on each side.
                long r = left.shape[1];
                var withBias = cat([pieces.Inputs[l], ones(b, 1, dtype: spec.ScalarType, device: device)], 1);
                var du = pieces.OutputGradients[l].matmul(left.view(q * r, layer.Out).t());
                var av = withBias.matmul(right.view(q * r, layer.In + 1).t());
                result.add_(du.mul(av).view(b, q, r).sum(2L, false));
                continue;
            }
            var qw = queries.Weights[l]!;        // Q × Out × In
            if (pieces.IsSpatial(l))
            {
                // A convolution's weights are few: form its B × Out·In gradients and multiply.
                result.add_(pieces.SpatialWeightGradients(l).view(b, layer.WeightCount).matmul(qw.view(q, layer.WeightCount).t()));
                result.add_(pieces.OutputGradients[l].sum(1L, false).matmul(queries.Biases[l]!.t()));
                continue;
            }
            var a = pieces.Inputs[l];          // B × In
            var delta = pieces.OutputGradients[l]; // B × Out
            // Σ_{o,j} δ[b,o] a[b,j] Q[q,o,j]: contract over the larger side first, keeping B×Q×min(In,Out).
            if (layer.In >= layer.Out)
            {
                var t = a.matmul(qw.view(q * layer.Out, layer.In).t()).view(b, q, layer.Out); // B×Q×Out
                result.add_(t.mul(delta.unsqueeze(1)).sum(2L, false));
            }
            else
            {
                var t = delta.matmul(qw.permute(1, 0, 2).reshape(layer.Out, q * layer.In)).view(b, q, layer.In); // B×Q×In
                result.add_(t.mul(a.unsqueeze(1)).sum(2L, false));
            }
            result.add_(delta.matmul(queries.Biases[l]!.t()));
        }
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// ‖g_i‖² of each example from the pieces: per Linear layer ‖δ āᵀ‖² = ‖δ‖²(‖a‖² + 1) (bias
    /// included); a convolution's from its B × Out × In gradients and summed output gradients.
    /// </summary>
    public static Tensor SquaredNorms(Pieces pieces)
    {
        using var scope = NewDisposeScope();
        Tensor? total = null;
        for (int l = 0; l < pieces.Inputs.Count; l++)
        {
            var term = pieces.IsSpatial(l)
                ? pieces.SpatialWeightGradients(l).square().sum([1L, 2L]).add(pieces.OutputGradients[l].sum(1L, false).square().sum(1L, false))
                : pieces.OutputGradients[l].square().sum(1L, false).mul(pieces.Inputs[l].square().sum(1L, false).add(1));
            total = total is null ? term : total.add(term);
        }
        return total!.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The generic path: one forward and backward per example with autograd on θ. Works for any
    /// model; slow. Gives the same numbers as the batched path (tested).
    /// </summary>
    public static Tensor ByLoop(ModelSpec spec, Tensor theta, DataTensors batch)
    {
        var g = empty(batch.Count, spec.ParameterCount, dtype: spec.ScalarType, device: theta.device);
        using var enabled = enable_grad();
        for (long i = 0; i < batch.Count; i++)
        {
            using var scope = NewDisposeScope();
            var t = theta.detach().requires_grad_(true);
            using var row = batch.Rows(i, 1);
            var loss = Objective.PerExampleLoss(spec, t, row).sum();
            g[i].copy_(autograd.grad([loss], [t])[0]);
        }
        return g;
    }
}
