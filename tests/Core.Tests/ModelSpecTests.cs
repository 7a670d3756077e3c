using Influence.Core.Models;

namespace Influence.Core.Tests;

/// <summary>The CNN's parameter layout, its checks and its description.</summary>
public class ModelSpecTests
{
    [Fact]
    public void LeNet_on_28x28_images_lays_out_each_convolution_as_channels_by_patch()
    {
        var spec = ModelSpec.Cnn(new ImageShape(1, 28, 28), 10, ConvLayer.ParseList(ConvLayer.LeNet), [64], Activation.Relu, 1e-3, DecayOn.All);
        spec.Validate();
        var layers = spec.Layers;
        Assert.Equal(4, layers.Count);
        // conv 1→6, 5×5: 28 → 24, pooled 12; conv 6→16, 5×5: 12 → 8, pooled 4; 16·4·4 = 256 → 64 → 10.
        Assert.Equal((25, 6, 0L, 150L), (layers[0].In, layers[0].Out, layers[0].WeightOffset, layers[0].BiasOffset));
        Assert.Equal(new ConvGeometry(1, 28, 28, 5, 2), layers[0].Conv);
        Assert.Equal(576, layers[0].Conv!.Positions);
        Assert.Equal((150, 16, 156L), (layers[1].In, layers[1].Out, layers[1].WeightOffset));
        Assert.Equal(new ConvGeometry(6, 12, 12, 5, 2), layers[1].Conv);
        Assert.Equal((256, 64), (layers[2].In, layers[2].Out));
        Assert.Null(layers[2].Conv);
        Assert.Equal(156 + 2416 + 256 * 64 + 64 + 64 * 10 + 10, spec.ParameterCount);
        Assert.Equal("CNN 1x28x28-conv6k5/pool2-conv16k5/pool2-64-10 (Relu, softmax), L2 0.001 on all, Float64", spec.Describe());
        Assert.False(spec.IsLogisticRegression);
    }

    [Theory]
    [InlineData("1x4x4", "6:5", "a 5×5 kernel does not fit a 4×4 input")]
    [InlineData("1x4x4", "2:3:3", "3×3 pooling does not fit its 2×2 output")]
    [InlineData("2x4x4", "2:3", "has 32 values but each row has 16 features")]
    public void Convolutions_that_do_not_fit_the_image_are_refused_with_the_layer_named(string image, string conv, string message)
    {
        var spec = ModelSpec.Cnn(new ImageShape(1, 4, 4), 3, ConvLayer.ParseList(conv), [], Activation.Tanh, 0, DecayOn.All) with { Image = ImageShape.Parse(image) };
        Assert.Contains(message, Assert.Throws<ArgumentException>(spec.Validate).Message);
    }

    [Theory]
    [InlineData("6:5:2,16:x", "'16:x' is not CHANNELS:KERNEL[:POOL]")]
    [InlineData("6", "'6' is not CHANNELS:KERNEL[:POOL]")]
    [InlineData("0:3", "'0:3' is not CHANNELS:KERNEL[:POOL]")]
    [InlineData(",", "--conv lists no layer")]
    public void Bad_convolution_lists_are_refused(string text, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => ConvLayer.ParseList(text)).Message);

    [Fact]
    public void Square_rows_default_to_one_channel_images()
    {
        Assert.Equal(new ImageShape(1, 28, 28), ImageShape.SquareOf(784));
        Assert.Null(ImageShape.SquareOf(785));
        Assert.Equal(new ImageShape(3, 32, 32), ImageShape.Parse("3x32x32"));
    }
}

/// <summary>When full-batch training polishes with Newton steps on the exact Hessian, and how it stops early.</summary>
public class TrainingOptionsTests
{
    [Fact]
    public void Training_stops_at_its_next_iteration_once_cancelled()
    {
        using var p = Problem.Make("cnn tanh all");
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => Training.FullBatchTrainer.Train(p.Objective, p.Theta, new Training.TrainingOptions { Cancel = cancelled.Token }));
        Assert.Throws<OperationCanceledException>(() => Training.MinibatchTrainer.Train(p.Objective, p.Theta, new Training.MinibatchOptions(Training.Optimizer.Adam, 1e-3, 2, 8, 0), cancelled.Token));
    }

    [Fact]
    public void A_networks_Newton_polish_is_skipped_when_its_exact_Hessian_would_cost_more_than_the_limit()
    {
        var options = new Training.TrainingOptions();
        var lenet = ModelSpec.Cnn(new ImageShape(1, 28, 28), 10, ConvLayer.ParseList(ConvLayer.LeNet), [], Activation.Relu, 1e-2, DecayOn.All);
        Assert.False(options.Polishes(lenet, 2000));                              // 5,142 × 2000 backward passes
        Assert.True(options.Polishes(Problem.TinyCnn(0), 150));                   // 124 × 150
        Assert.True(options.Polishes(ModelSpec.LogisticRegression(784, 10, 1e-3), 2000)); // closed form, whatever N
        Assert.False(options.Polishes(ModelSpec.Mlp(784, 10, [256], Activation.Tanh, 1e-2, DecayOn.All), 2000)); // P > 12,000
        Assert.False((options with { NewtonPolish = false }).Polishes(Problem.TinyCnn(0), 150));
    }
}
