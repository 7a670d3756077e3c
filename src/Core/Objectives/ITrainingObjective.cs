using Influence.Core.Models;
using static TorchSharp.torch;

namespace Influence.Core.Objectives;

/// <summary>What the full-batch trainer minimises: the training objective, or another one over the same parameters (PBRF).</summary>
public interface ITrainingObjective
{
    ModelSpec Spec { get; }

    /// <summary>Training rows the value sums over (what one exact Hessian's P backward passes each go through).</summary>
    long RowCount { get; }

    /// <summary>The value and its gradient (detached) at θ.</summary>
    (double Value, Tensor Gradient) ValueAndGradient(Tensor theta);

    /// <summary>The exact Hessian at θ (P×P), for Newton steps on small models.</summary>
    Tensor Hessian(Tensor theta);

    /// <summary>Directions the objective is flat along (P×m, orthonormal), or null.</summary>
    Tensor? FlatDirections(Device device);
}
