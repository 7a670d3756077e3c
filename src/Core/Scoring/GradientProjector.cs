using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Scoring;

public enum ProjectionKind { Gaussian, Rademacher }

/// <summary>
/// A seeded random projection of P-dimensional gradients to k dimensions (TRAK, Park et al.
/// 2023): x ↦ Rᵀx with R of i.i.d. N(0, 1/k) or ±1/√k entries, so that E[⟨Rᵀx, Rᵀy⟩] = ⟨x, y⟩.
/// R is never held whole (P × k can exceed memory): it is generated block by block of
/// <see cref="BlockRows"/> parameters, each block from its own seed, so the result does not depend
/// on how callers batch their rows, and every silo that uses the same seed projects the same way.
/// </summary>
public sealed class GradientProjector(long parameterCount, int dimension, ProjectionKind kind, int seed)
{
    public const int BlockRows = 4096;

    public long ParameterCount { get; } = parameterCount > 0 ? parameterCount : throw new ArgumentOutOfRangeException(nameof(parameterCount));
    public int Dimension { get; } = dimension > 0 ? dimension : throw new ArgumentOutOfRangeException(nameof(dimension), "the projection dimension must be positive");
    public ProjectionKind Kind { get; } = kind;
    public int Seed { get; } = seed;

    /// <summary>Rows of R for parameters [start, start + length) (a block's slice), in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public Tensor Block(long block, ScalarType dtype, Device device)
    {
        long start = block * BlockRows, rows = Math.Min(BlockRows, ParameterCount - start);
        // One generator per block: block b's entries depend only on (seed, b).
        using var generator = new Generator(Seeds.ProjectionBlock(Seed, block));
        var r = Kind == ProjectionKind.Gaussian
            ? randn(rows, Dimension, dtype: ScalarType.Float64, generator: generator)
            : randint(0, 2, [rows, Dimension], dtype: ScalarType.Float64, generator: generator).mul(2).sub(1);
        return r.div(Math.Sqrt(Dimension)).to(dtype).to(device);
    }

    /// <summary>Rᵀ applied to each row of <paramref name="rows"/> (B×P) → B×k.</summary>
    public Tensor Project(Tensor rows)
    {
        if (rows.dim() != 2 || rows.shape[1] != ParameterCount) throw new ArgumentException($"rows must be B×{ParameterCount}");
        using var scope = NewDisposeScope();
        var result = zeros(rows.shape[0], Dimension, dtype: rows.dtype, device: rows.device);
        long blocks = (ParameterCount + BlockRows - 1) / BlockRows;
        for (long b = 0; b < blocks; b++)
        {
            using var step = NewDisposeScope();
            long start = b * BlockRows, length = Math.Min(BlockRows, ParameterCount - start);
            result.add_(rows.narrow(1, start, length).matmul(Block(b, rows.dtype, rows.device)));
        }
        return result.MoveToOuterDisposeScope();
    }
}
