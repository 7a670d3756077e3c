using Influence.Core.Storage;
using Influence.Core.Models;
using Influence.Core.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Scoring;

/// <summary>
/// TRAK-style influence on randomly projected gradients (Park et al. 2023, with loss gradients):
/// each example's gradient g is stored as φ = Rᵀg (k values, <see cref="GradientProjector"/>), the
/// curvature is the projected features' Gauss-Newton F̃ = ΦᵀΦ/N (a linear model on φ) damped by δ,
/// and I(z, z_test) = −φ_testᵀ(F̃ + δI)⁻¹φ(z). With k = P and δ → 0 this is the empirical-Fisher
/// influence −g_testᵀ(GᵀG/N)⁻¹g for any invertible R (tested); smaller k trades accuracy for
/// features that are cheap to store and reuse for any query set.
/// </summary>
public static class ProjectedFeatures
{
    /// <summary>Φ (n×k, float64) of the rows: per-example gradients in batches, each projected; no n×P matrix.</summary>
    public static Tensor Of(ModelSpec spec, Tensor theta, DataTensors rows, GradientProjector projector, int batchSize)
    {
        var features = empty(rows.Count, projector.Dimension, dtype: ScalarType.Float64, device: theta.device);
        for (long start = 0; start < rows.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            using var batch = rows.Rows(start, Math.Min(batchSize, rows.Count - start));
            var g = PerExampleGradients.Materialize(spec, theta, batch);
            features.narrow(0, start, batch.Count).copy_(projector.Project(g).to(ScalarType.Float64));
        }
        return features;
    }
}

/// <summary>(F̃ + δI) = ΦᵀΦ/N + δI from the summed Gram matrices of the shards' features, Cholesky-factorised once.</summary>
public sealed class ProjectedCurvature : IDisposable
{
    private readonly Tensor factor;

    /// <param name="gram">ΣΦᵀΦ over all N training rows (k×k).</param>
    public ProjectedCurvature(Tensor gram, long count, double damping)
    {
        using var scope = NewDisposeScope();
        var f = gram.to(ScalarType.Float64).div(count);
        var eigenvalues = linalg.eigvalsh(f);
        // ΦᵀΦ is positive semi-definite by construction: a negative λ_min is rounding.
        SmallestEigenvalue = Math.Max(0, eigenvalues[0].ToDouble());
        LargestEigenvalue = eigenvalues[-1].ToDouble();
        Damping = damping;
        var k = f.shape[0];
        var (l, info) = linalg.cholesky_ex(f.add(eye(k, dtype: ScalarType.Float64, device: f.device).mul(damping)));
        // Numerically singular counts as failed: a Gram of rank < k (fewer rows than k) has λ_min ≈ 0, not exactly 0.
        if (info.ToInt32() != 0 || SmallestEigenvalue + damping <= 1e-12 * Math.Abs(LargestEigenvalue))
            throw new InvalidOperationException($"ΦᵀΦ/N + δI is not positive definite (δ = {damping:E3}, λ_min(ΦᵀΦ/N) = {SmallestEigenvalue:E3}): use a positive --damping or --damping auto");
        factor = l.MoveToOuterDisposeScope();
    }

    public double Damping { get; }
    public double SmallestEigenvalue { get; }
    public double LargestEigenvalue { get; }

    private ProjectedCurvature(Tensor factor, double damping, double smallest, double largest)
    {
        this.factor = factor;
        (Damping, SmallestEigenvalue, LargestEigenvalue) = (damping, smallest, largest);
    }

    /// <summary>Writes the Cholesky factor: shards load it instead of factorising the Gram again.</summary>
    public void Save(IArtifactStore store, string key) => TensorArchive.Write(store, key, [
        new("cholesky_factor", factor), new("damping", TensorArchive.Scalar(Damping)),
        new("smallest_eigenvalue", TensorArchive.Scalar(SmallestEigenvalue)), new("largest_eigenvalue", TensorArchive.Scalar(LargestEigenvalue))]);

    public static ProjectedCurvature Load(IArtifactStore store, string key, Device device)
    {
        using var a = TensorArchive.Read(store, key, device);
        return new ProjectedCurvature(a.Take("cholesky_factor"), a.Double("damping"), a.Double("smallest_eigenvalue"), a.Double("largest_eigenvalue"));
    }

    /// <summary>Kronfluence's and the K-FAC methods' automatic rule, used here too, on ΦᵀΦ/N (its mean eigenvalue is its trace / k).</summary>
    public static double AutoDamping(Tensor gram, long count) => Hessians.DampingChoice.FromMeanEigenvalue(gram.diagonal().sum().ToDouble() / count / gram.shape[0]);

    /// <summary>(F̃ + δI)⁻¹ applied to each row of <paramref name="features"/> (Q×k) → Q×k.</summary>
    public Tensor Precondition(Tensor features) => Hessians.HessianInverse.CholeskySolve(features.to(ScalarType.Float64).t(), factor).t().contiguous();

    /// <summary>φᵀ(F̃ + δI)⁻¹φ of each row (n×k) → n: ‖L⁻¹φ‖².</summary>
    public Tensor QuadraticForms(Tensor features)
    {
        using var scope = NewDisposeScope();
        var w = linalg.solve_triangular(factor, features.to(ScalarType.Float64).t(), upper: false);
        return w.square().sum(0L, false).MoveToOuterDisposeScope();
    }

    public void Dispose() => factor.Dispose();
}
