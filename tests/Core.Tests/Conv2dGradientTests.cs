using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Batched per-example Conv2d gradients (unfolded inputs × output gradients) against a loop of per-example backward passes.</summary>
public class Conv2dGradientTests
{
    [Theory]
    [InlineData(1, 0)]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    public void Batched_per_example_gradients_equal_a_loop_over_examples(int stride, int padding)
    {
        const int b = 6, c = 2, o = 3, k = 3, hw = 8, classes = 4;
        var g = new Generator(17);
        var x = randn(b, c, hw, hw, dtype: ScalarType.Float64, generator: g);
        var labels = randint(0, classes, [b], dtype: ScalarType.Int64, generator: g);
        var weight = randn(o, c, k, k, dtype: ScalarType.Float64, generator: g).mul(0.3);
        var bias = randn(o, dtype: ScalarType.Float64, generator: g).mul(0.1);
        int outSide = (hw + 2 * padding - k) / stride + 1;
        var head = randn(classes, o * outSide * outSide, dtype: ScalarType.Float64, generator: g).mul(0.1);

        // A small conv net: conv → tanh → flatten → linear → softmax cross-entropy, one loss per example.
        Tensor Losses(Tensor input, Tensor w, Tensor bi, Tensor y, out Tensor conv)
        {
            conv = nn.functional.conv2d(input, w, bi, strides: [stride, stride], padding: [padding, padding]);
            var logits = conv.tanh().flatten(1).matmul(head.t());
            return nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.None);
        }

        // Batched: one forward and backward for the whole batch, the output gradient taken at the conv's output.
        Tensor delta;
        using (var enabled = enable_grad())
        {
            var w = weight.detach().requires_grad_(true);
            var loss = Losses(x, w, bias, labels, out var conv).sum();
            delta = autograd.grad([loss], [conv])[0].detach();
        }
        var (gw, gb) = Conv2dGradients.PerExample(x, delta, k, stride, padding);

        for (long i = 0; i < b; i++)
        {
            using var enabled = enable_grad();
            var w = weight.detach().requires_grad_(true);
            var bi = bias.detach().requires_grad_(true);
            var loss = Losses(x.narrow(0, i, 1), w, bi, labels.narrow(0, i, 1), out _).sum();
            var grads = autograd.grad([loss], [w, bi]);
            Assert.True(gw[i].sub(grads[0].flatten(1)).abs().max().ToDouble() <= 1e-12 * grads[0].abs().max().ToDouble(), $"weight gradient of example {i}");
            Assert.True(gb[i].sub(grads[1]).abs().max().ToDouble() <= 1e-12 * grads[1].abs().max().ToDouble(), $"bias gradient of example {i}");
        }
    }

    [Fact]
    public void Mismatched_kernel_settings_are_refused()
    {
        var x = randn(2, 1, 6, 6, dtype: ScalarType.Float64);
        var d = randn(2, 3, 4, 4, dtype: ScalarType.Float64); // from a 3×3 kernel without padding
        var e = Assert.Throws<ArgumentException>(() => Conv2dGradients.PerExample(x, d, 3, stride: 1, padding: 1));
        Assert.Contains("do not match the layer", e.Message, StringComparison.Ordinal);
    }
}
