using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Training;
using static TorchSharp.torch;

namespace Influence.Core.Loo;

/// <summary>
/// What every unit of one study needs on one silo, loaded once: the data, θ̂, the chosen test
/// points and their losses under θ̂, and (built on first use) the batched warm retrainers.
/// </summary>
public sealed class LooContext : IDisposable
{
    private readonly Lazy<LogisticRetrainer> looRetrainer;
    private readonly Lazy<LogisticRetrainer> pbrfRetrainer;

    public LooContext(TrainTestData data, Checkpoint checkpoint, int[] testIndices, double damping)
    {
        Data = data;
        Checkpoint = checkpoint;
        Spec = checkpoint.Spec;
        Damping = damping;
        var device = Compute.Devices.Default;
        ThetaHat = checkpoint.Theta(device);
        Train = DataTensors.From(data.Train, Spec, device);
        Test = DataTensors.From(data.Test.Select(testIndices), Spec, device);
        BaseTestLoss = TestLosses(ThetaHat);
        looRetrainer = new(() => new LogisticRetrainer(Spec, Train, ThetaHat));
        pbrfRetrainer = new(() => new LogisticRetrainer(Spec, Train, ThetaHat, pbrfDamping: damping));
    }

    public TrainTestData Data { get; }
    public Checkpoint Checkpoint { get; }
    public ModelSpec Spec { get; }
    public double Damping { get; }
    public Tensor ThetaHat { get; }
    public DataTensors Train { get; }
    public DataTensors Test { get; }
    /// <summary>L(z_test; θ̂) for each chosen test point.</summary>
    public double[] BaseTestLoss { get; }

    /// <summary>The batched solver applies: float64 logistic regression (warm LOO and PBRF).</summary>
    public bool HasFastPath => Spec.IsLogisticRegression && Spec.Precision == Precision.Float64;

    public LogisticRetrainer Retrainer(RetrainMode mode) => mode == RetrainMode.Pbrf ? pbrfRetrainer.Value : looRetrainer.Value;

    /// <summary>The chosen test points' losses under θ (float64).</summary>
    public double[] TestLosses(Tensor theta)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return Objective.PerExampleLoss(Spec, theta.to(Spec.ScalarType), Test).to(ScalarType.Float64).cpu().data<double>().ToArray();
    }

    /// <summary>
    /// ‖∇F‖ a retrain of float64 logistic regression stops at (its Newton fast path reaches it in a
    /// few steps); other models stop at the trainer's own criterion unless --tolerance is given.
    /// </summary>
    public const double FastPathTolerance = 1e-12;

    public TrainingOptions Options(double? tolerance) => new()
    {
        GradientTolerance = tolerance ?? (HasFastPath ? FastPathTolerance : null),
    };

    public void Dispose()
    {
        if (looRetrainer.IsValueCreated) looRetrainer.Value.Dispose();
        if (pbrfRetrainer.IsValueCreated) pbrfRetrainer.Value.Dispose();
        ThetaHat.Dispose();
        Train.Dispose();
        Test.Dispose();
    }
}
