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
    /// <summary>The input's patches, one row per output position: B × L × (C·kh·kw), PyTorch's weight layout.</summary>
    public static Tensor Patches(Tensor input, int kernel, int stride = 1, int padding = 0) =>
        nn.functional.unfold(input, (kernel, kernel), dilation: (1, 1), padding: (padding, padding), stride: (stride, stride)).transpose(1, 2);

    /// <summary>∂L/∂(layer output) B × O × H' × W' as one row per output position: B × L × O.</summary>
    public static Tensor PerPosition(Tensor outputGradient) => outputGradient.flatten(2).transpose(1, 2);

    /// <param name="input">B × C × H × W, the layer's input.</param>
    /// <param name="outputGradient">B × O × H' × W', ∂L_i/∂(layer output) for each example.</param>
    /// <returns>Weight gradients B × O × (C·kh·kw) (PyTorch's O × C × kh × kw, flattened) and bias gradients B × O.</returns>
    public static (Tensor Weight, Tensor Bias) PerExample(Tensor input, Tensor outputGradient, int kernel, int stride = 1, int padding = 0)
    {
        using var scope = NewDisposeScope();
        var patches = Patches(input, kernel, stride, padding); // B × L × (C·kh·kw)
        var d = PerPosition(outputGradient);                   // B × L × O
        if (d.shape[1] != patches.shape[1])
            throw new ArgumentException($"the output gradient has {d.shape[1]} positions but the unfolded input has {patches.shape[1]}: kernel, stride or padding do not match the layer");
        var weight = d.transpose(1, 2).bmm(patches);
        var bias = d.sum(1L, false);
        return (weight.MoveToOuterDisposeScope(), bias.MoveToOuterDisposeScope());
    }
}
