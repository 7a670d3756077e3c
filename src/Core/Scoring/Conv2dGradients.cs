using static TorchSharp.torch;

namespace Influence.Core.Scoring;

/// <summary>
/// Per-example gradients of a Conv2d layer from one batched pass (no loop over examples): with
/// the input unfolded into patches U_i (C·kh·kw × L, L output positions) and the output gradient
/// D_i (O × L), example i's weight gradient is D_i U_iᵀ (O × C·kh·kw) and its bias gradient is
/// D_i summed over positions.
/// </summary>
public static class Conv2dGradients
{
    /// <param name="input">B × C × H × W, the layer's input.</param>
    /// <param name="outputGradient">B × O × H' × W', ∂L_i/∂(layer output) for each example.</param>
    /// <returns>Weight gradients B × O × (C·kh·kw) (PyTorch's O × C × kh × kw, flattened) and bias gradients B × O.</returns>
    public static (Tensor Weight, Tensor Bias) PerExample(Tensor input, Tensor outputGradient, int kernelHeight, int kernelWidth, int stride = 1, int padding = 0)
    {
        using var scope = NewDisposeScope();
        var patches = nn.functional.unfold(input, (kernelHeight, kernelWidth), dilation: (1, 1), padding: (padding, padding), stride: (stride, stride)); // B × (C·kh·kw) × L
        var d = outputGradient.flatten(2); // B × O × L
        if (d.shape[2] != patches.shape[2])
            throw new ArgumentException($"the output gradient has {d.shape[2]} positions but the unfolded input has {patches.shape[2]}: kernel, stride or padding do not match the layer");
        var weight = d.bmm(patches.transpose(1, 2));
        var bias = d.sum(2L, false);
        return (weight.MoveToOuterDisposeScope(), bias.MoveToOuterDisposeScope());
    }
}
