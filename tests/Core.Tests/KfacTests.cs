using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>K-FAC and EK-FAC factors, corrections and preconditioning against their definitions built example by example.</summary>
public class KfacTests
{
    /// <summary>
    /// Per example and layer, from a forward and backward pass of that example alone: its share of
    /// the factors A and S, and its gradient matrix G = [∇W | ∇b]. A Linear layer has one input ā
    /// and output gradient δ: A = ā āᵀ, S = δ δᵀ, G = δ āᵀ. A convolution (KFC) has one per output
    /// position t, its patches cut out of the input by slicing (not unfold): A = Σ_t ā_t ā_tᵀ,
    /// S = (1/T) Σ_t δ_t δ_tᵀ, G = Σ_t δ_t ā_tᵀ.
    /// </summary>
    private static List<(Tensor[] A, Tensor[] S, Tensor[] G)> ByExample(Problem p)
    {
        var result = new List<(Tensor[], Tensor[], Tensor[])>();
        var layers = p.Spec.Layers;
        for (long i = 0; i < p.Data.Count; i++)
        {
            using var enabled = enable_grad();
            var t = p.Theta.detach().requires_grad_(true);
            var row = p.Data.Rows(i, 1);
            var trace = Network.Forward(p.Spec, t, row.X);
            var loss = Objective.PerExampleLoss(p.Spec, trace.Logits, row.Y).sum();
            var deltas = autograd.grad([loss], trace.PreActivations.ToList());
            var a = new Tensor[layers.Count]; var s = new Tensor[layers.Count]; var g = new Tensor[layers.Count];
            for (int l = 0; l < layers.Count; l++)
            {
                var input = trace.LayerInputs[l].detach().squeeze(0);
                var delta = deltas[l].detach().squeeze(0);
                if (layers[l].Conv is not { } conv)
                {
                    var aug = cat([input, ones(1, dtype: ScalarType.Float64)], 0);
                    (a[l], s[l], g[l]) = (aug.outer(aug), delta.outer(delta), delta.outer(aug));
                    continue;
                }
                a[l] = zeros(layers[l].In + 1, layers[l].In + 1, dtype: ScalarType.Float64);
                s[l] = zeros(layers[l].Out, layers[l].Out, dtype: ScalarType.Float64);
                g[l] = zeros(layers[l].Out, layers[l].In + 1, dtype: ScalarType.Float64);
                for (int y = 0; y < conv.OutHeight; y++)
                    for (int x = 0; x < conv.OutWidth; x++)
                    {
                        var patch = cat([input.narrow(1, y, conv.Kernel).narrow(2, x, conv.Kernel).flatten(), ones(1, dtype: ScalarType.Float64)], 0);
                        var d = delta.select(1, y).select(1, x);
                        a[l].add_(patch.outer(patch));
                        s[l].add_(d.outer(d).div(conv.Positions));
                        g[l].add_(d.outer(patch));
                    }
            }
            result.Add((a, s, g));
        }
        return result;
    }

    /// <summary>θ indices of a layer's gradient matrix [∇W | ∇b] in row-major order.</summary>
    private static long[] LayerIndices(LayerLayout layer) =>
        [.. Enumerable.Range(0, layer.Out).SelectMany(o => Enumerable.Range(0, layer.In + 1).Select(i => i < layer.In ? layer.WeightOffset + (long)o * layer.In + i : layer.BiasOffset + o))];

    [Theory]
    [InlineData("mlp tanh weights")]
    [InlineData("softmax logreg")]
    [InlineData("cnn tanh all")]
    public void Factors_equal_their_definitions_and_add_up_over_shards(string kind)
    {
        using var p = Problem.Make(kind, n: 20);
        var examples = ByExample(p);
        using var sums = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data, FisherLabels.Empirical, seed: 0, batchSize: 7);
        for (int l = 0; l < p.Spec.Layers.Count; l++)
        {
            var a = examples.Select(e => e.A[l]).Aggregate((x, y) => x.add(y));
            var s = examples.Select(e => e.S[l]).Aggregate((x, y) => x.add(y));
            Assert.True(sums.A[l].sub(a).abs().max().ToDouble() <= 1e-12 * a.abs().max().ToDouble(), $"A[{l}]");
            Assert.True(sums.S[l].sub(s).abs().max().ToDouble() <= 1e-12 * s.abs().max().ToDouble(), $"S[{l}]");
        }
        using var first = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data.Rows(0, 8), FisherLabels.Empirical, 0);
        using var second = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data.Rows(8, 12), FisherLabels.Empirical, 0);
        using var both = first.Add(second);
        Assert.Equal(20, both.Count);
        for (int l = 0; l < p.Spec.Layers.Count; l++)
            Assert.True(both.A[l].sub(sums.A[l]).abs().max().ToDouble() <= 1e-12 && both.S[l].sub(sums.S[l]).abs().max().ToDouble() <= 1e-12);
    }

    [Theory]
    [InlineData("mlp tanh weights")]
    [InlineData("cnn tanh all")]
    public void EK_FAC_is_no_further_from_the_layer_Fisher_than_K_FAC_and_both_precondition_as_their_explicit_inverses(string kind)
    {
        using var p = Problem.Make(kind, n: 30);
        var examples = ByExample(p);
        long n = p.Data.Count;
        using var sums = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data, FisherLabels.Empirical, 0);
        using var factors = KroneckerFactors.FromSums(p.Spec, sums);
        factors.SetCorrections(factors.CorrectionSums(p.Theta, p.Data, FisherLabels.Empirical, 0), n);
        const double damping = 1e-2;
        var g = randn(p.Spec.ParameterCount, 3, dtype: ScalarType.Float64, generator: new Generator(6));
        var kfacSolved = factors.Solve(g, damping, ekfac: false);
        var ekfacSolved = factors.Solve(g, damping, ekfac: true);
        for (int l = 0; l < p.Spec.Layers.Count; l++)
        {
            // The layer's Fisher block, example by example: (1/N) Σ vec(G) vec(G)ᵀ, row-major vec.
            var fisher = examples.Select(e => { var v = e.G[l].flatten(); return v.outer(v); }).Aggregate((x, y) => x.add(y)).div(n);
            var kfac = kron(sums.S[l].div(n), sums.A[l].div(n));
            var basis = kron(factors.QS[l], factors.QA[l]);
            var ekfac = basis.matmul(diag(factors.Corrected![l].flatten())).matmul(basis.t());
            double kError = fisher.sub(kfac).norm().ToDouble(), eError = fisher.sub(ekfac).norm().ToDouble();
            Assert.True(eError <= kError * (1 + 1e-12), $"layer {l}: EK-FAC {eError:E3} > K-FAC {kError:E3}");
            // EK-FAC's eigenvalues are the Fisher's diagonal in the Kronecker eigenbasis (its definition).
            Assert.True(basis.t().matmul(fisher).matmul(basis).diagonal().sub(factors.Corrected[l].flatten()).abs().max().ToDouble() <= 1e-12 * fisher.abs().max().ToDouble() * 10);
            // K-FAC's eigenvalues are the products of the factors'.
            Assert.True(factors.Eigenvalues(l, ekfac: false).flatten().sub(basis.t().matmul(kfac).matmul(basis).diagonal()).abs().max().ToDouble() <= 1e-10 * kfac.abs().max().ToDouble());

            // Preconditioning is (F̂ + (λ + δ) I)⁻¹ on the layer's coordinates.
            var idx = tensor(LayerIndices(p.Spec.Layers[l]));
            var shift = eye(idx.shape[0], dtype: ScalarType.Float64).mul(p.Spec.L2 + damping);
            var gl = g.index_select(0, idx);
            var expectedK = linalg.solve(kfac.add(shift), gl);
            var expectedE = linalg.solve(ekfac.add(shift), gl);
            Assert.True(kfacSolved.index_select(0, idx).sub(expectedK).norm().ToDouble() <= 1e-9 * expectedK.norm().ToDouble(), $"K-FAC solve, layer {l}");
            Assert.True(ekfacSolved.index_select(0, idx).sub(expectedE).norm().ToDouble() <= 1e-9 * expectedE.norm().ToDouble(), $"EK-FAC solve, layer {l}");
        }
    }

    [Fact]
    public void Sampled_Fisher_labels_are_reproducible_from_their_seed()
    {
        using var p = Problem.Make("mlp relu all", n: 40);
        using var a = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data, FisherLabels.Sampled, seed: 3);
        using var b = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data, FisherLabels.Sampled, seed: 3);
        using var c = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data, FisherLabels.Sampled, seed: 4);
        using var empirical = KfacFactorSums.Accumulate(p.Spec, p.Theta, p.Data, FisherLabels.Empirical, seed: 3);
        int last = p.Spec.Layers.Count - 1;
        Assert.Equal(0, a.S[last].sub(b.S[last]).abs().max().ToDouble());
        Assert.True(a.S[last].sub(c.S[last]).abs().max().ToDouble() > 0);
        Assert.True(a.S[last].sub(empirical.S[last]).abs().max().ToDouble() > 0);
        // The input factor does not depend on labels.
        Assert.Equal(0, a.A[0].sub(empirical.A[0]).abs().max().ToDouble());
    }
}
