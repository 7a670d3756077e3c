using Influence.Core.Scoring;
using Influence.Core.Storage;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

public class PerExampleGradientTests
{
    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Batched_outer_products_equal_the_per_example_loop(string kind)
    {
        using var p = Problem.Make(kind);
        using var batched = PerExampleGradients.Materialize(p.Spec, p.Theta, p.Data);
        using var loop = PerExampleGradients.ByLoop(p.Spec, p.Theta, p.Data);
        Assert.True(batched.sub(loop).abs().max().ToDouble() <= 1e-13 * loop.abs().max().ToDouble());
        // The per-example gradients sum to N times the gradient of the mean loss.
        using var noReg = new Problem(p.Spec with { L2 = 0 }, TestData.Blobs(24, p.Spec.InputDim, p.Spec.ClassCount, 3), p.Theta);
        var total = noReg.Objective.ValueAndGradient(p.Theta).Gradient.mul(p.Data.Count);
        Assert.True(batched.sum(0L, false).sub(total).abs().max().ToDouble() <= 1e-12 * total.abs().max().ToDouble() + 1e-14);
    }

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Query_dot_products_equal_materialised_gradients_times_queries(string kind)
    {
        using var p = Problem.Make(kind);
        var q = randn(7, p.Spec.ParameterCount, dtype: ScalarType.Float64, generator: new Generator(9));
        using var queries = new PerExampleGradients.Queries(p.Spec, q);
        using var dots = PerExampleGradients.DotWithQueries(p.Spec, p.Theta, p.Data, queries);
        using var expected = PerExampleGradients.ByLoop(p.Spec, p.Theta, p.Data).matmul(q.t());
        Assert.Equal(new long[] { p.Data.Count, 7 }, dots.shape);
        Assert.True(dots.sub(expected).abs().max().ToDouble() <= 1e-12 * expected.abs().max().ToDouble());
    }

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Low_rank_queries_score_like_their_truncated_SVD_reconstruction(string kind)
    {
        using var p = Problem.Make(kind);
        const int rank = 1;
        var q = randn(5, p.Spec.ParameterCount, dtype: ScalarType.Float64, generator: new Generator(4));
        // The oracle: each Linear layer's [W | b] block replaced by U_r S_r V_rᵀ, written back into θ's layout.
        var truncated = q.clone();
        bool anyLowRank = false;
        foreach (var layer in p.Spec.Layers)
        {
            if (layer.Conv is not null || rank >= Math.Min(layer.Out, layer.In + 1)) continue;
            anyLowRank = true;
            var block = cat([q.narrow(1, layer.WeightOffset, layer.WeightCount).reshape(5, layer.Out, layer.In),
                q.narrow(1, layer.BiasOffset, layer.Out).unsqueeze(2)], 2);
            var (u, sv, vh) = linalg.svd(block, fullMatrices: false);
            var approx = u.narrow(2, 0, rank).matmul(diag_embed(sv.narrow(1, 0, rank))).matmul(vh.narrow(1, 0, rank));
            truncated.narrow(1, layer.WeightOffset, layer.WeightCount).copy_(approx.narrow(2, 0, layer.In).reshape(5, layer.WeightCount));
            truncated.narrow(1, layer.BiasOffset, layer.Out).copy_(approx.select(2, layer.In));
        }
        using var queries = new PerExampleGradients.Queries(p.Spec, q, rank);
        using var dots = PerExampleGradients.DotWithQueries(p.Spec, p.Theta, p.Data, queries);
        var gradients = PerExampleGradients.ByLoop(p.Spec, p.Theta, p.Data);
        using var expected = gradients.matmul(truncated.t());
        using var exact = gradients.matmul(q.t());
        Assert.True(dots.sub(expected).abs().max().ToDouble() <= 1e-11 * expected.abs().max().ToDouble(), $"{dots.sub(expected).abs().max().ToDouble():E2}");
        // A single-output model's blocks are rank 1 already: nothing to truncate.
        Assert.True(dots.sub(exact).abs().max().ToDouble() > 1e-3 * exact.abs().max().ToDouble() == anyLowRank, $"low-rank layers: {anyLowRank}");
    }

    [Theory]
    [MemberData(nameof(Problem.Kinds), MemberType = typeof(Problem))]
    public void Query_layouts_built_in_blocks_and_stored_score_like_the_layout_built_at_once(string kind)
    {
        using var p = Problem.Make(kind);
        var q = randn(7, p.Spec.ParameterCount, dtype: ScalarType.Float64, generator: new Generator(3));
        foreach (int rank in new[] { 0, 1 })
        {
            using var whole = new PerExampleGradients.Queries(p.Spec, q, rank);
            using var first = new PerExampleGradients.Queries(p.Spec, q.narrow(0, 0, 3), rank);
            using var second = new PerExampleGradients.Queries(p.Spec, q.narrow(0, 3, 4), rank);
            using var joined = PerExampleGradients.Queries.Concat([first, second]);
            var stream = new MemoryStream();
            TensorArchive.Write(stream, joined.Entries("term0"));
            stream.Position = 0;
            using var archive = TensorArchive.Read(stream, "test", CPU);
            using var read = PerExampleGradients.Queries.Take(archive, "term0", p.Spec, "test");
            using var expected = PerExampleGradients.DotWithQueries(p.Spec, p.Theta, p.Data, whole);
            using var dots = PerExampleGradients.DotWithQueries(p.Spec, p.Theta, p.Data, read);
            Assert.Equal(7, read.Count);
            Assert.True(dots.sub(expected).abs().max().ToDouble() <= 1e-12 * expected.abs().max().ToDouble(), $"rank {rank}");
            // A slice scores as its columns of the whole.
            using var slice = read.Slice(2, 3);
            using var sliced = PerExampleGradients.DotWithQueries(p.Spec, p.Theta, p.Data, slice);
            Assert.True(sliced.sub(expected.narrow(1, 2, 3)).abs().max().ToDouble() <= 1e-12 * expected.abs().max().ToDouble());
        }

        // Stored queries that do not fit the model are refused, naming the layer: here layer 0 has no bias.
        using var other = new PerExampleGradients.Queries(p.Spec, q, 0);
        var bad = new MemoryStream();
        TensorArchive.Write(bad, other.Entries("term0").Where(e => e.Key != "term0.layer0.bias"));
        bad.Position = 0;
        using var badArchive = TensorArchive.Read(bad, "terms.safetensors", CPU);
        var error = Assert.Throws<InvalidDataException>(() => PerExampleGradients.Queries.Take(badArchive, "term0", p.Spec, "terms.safetensors"));
        Assert.Contains("terms.safetensors", error.Message);
        Assert.Contains("layer 0", error.Message);
    }
}
