using Influence.Core.Hessians;
using Influence.Core.Models;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

public class HessianInverseTests
{
    /// <summary>Oracle: pseudo-inverse of (H + δI) restricted to the complement of U, via an explicit basis.</summary>
    private static Tensor PseudoInverseOnComplement(Tensor h, double damping, Tensor? u)
    {
        long p = h.shape[0];
        var m = h.add(eye(p, dtype: h.dtype).mul(damping));
        if (u is null) return linalg.inv(m);
        var projector = eye(p, dtype: h.dtype).sub(u.matmul(u.t()));
        return linalg.pinv(projector.matmul(m).matmul(projector), rtol: 1e-10, hermitian: true);
    }

    [Theory]
    [InlineData("softmax logreg", 0.0)]
    [InlineData("softmax logreg", 0.3)]
    [InlineData("binary logreg", 0.0)]
    [InlineData("mlp relu all", 0.0)]
    public void Solve_and_quadratic_forms_match_the_explicit_pseudo_inverse(string kind, double damping)
    {
        using var p = Problem.Make(kind);
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var u = Network.FlatDirections(p.Spec, CPU);
        Assert.Equal(kind == "softmax logreg", u is not null);
        if (u is not null) Assert.True(h.matmul(u).abs().max().ToDouble() < 1e-12, "H u should vanish along the flat direction");
        using var inverse = HessianInverse.Factorize(h, damping, u);
        var oracle = PseudoInverseOnComplement(h, damping, u);
        var g = Scoring.PerExampleGradients.Materialize(p.Spec, p.Theta, p.Data);
        var solved = inverse.Solve(g.t());
        var expected = oracle.matmul(g.t());
        Assert.True(solved.sub(expected).abs().max().ToDouble() <= 1e-8 * expected.abs().max().ToDouble(), $"solve differs by {solved.sub(expected).abs().max().ToDouble()}");
        var quad = inverse.QuadraticForms(g);
        var expectedQuad = g.matmul(oracle).mul(g).sum(1L, false);
        Assert.True(quad.sub(expectedQuad).abs().max().ToDouble() <= 1e-8 * expectedQuad.abs().max().ToDouble());

        // Extreme eigenvalues of H + δI on the complement.
        var ev = linalg.eigvalsh(h.add(eye(h.shape[0], dtype: h.dtype).mul(damping))).data<double>().ToArray();
        if (u is not null) ev = ev.OrderBy(e => Math.Abs(e - damping)).Skip(1).OrderBy(e => e).ToArray();
        Assert.Equal(ev[0], inverse.MinEigenvalue, 9);
        Assert.Equal(ev[^1], inverse.MaxEigenvalue, 9);
    }

    [Theory]
    [InlineData("softmax logreg", 0.3)]
    [InlineData("mlp relu all", 0.0)]
    public void Factorising_in_place_matches_the_copy_and_unshift_restores_H(string kind, double damping)
    {
        using var p = Problem.Make(kind);
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var u = Network.FlatDirections(p.Spec, CPU);
        using var copied = HessianInverse.Factorize(h, damping, u);
        using var work = h.clone();
        using var inPlace = HessianInverse.Factorize(work, damping, u, overwrite: true);
        if (damping > 0) Assert.True(work.sub(h).abs().max().ToDouble() >= damping / 2, "overwrite should leave M, not H, in the matrix");
        Assert.Equal(copied.Kind, inPlace.Kind);
        Assert.Equal(copied.MinEigenvalue, inPlace.MinEigenvalue, 10);
        Assert.Equal(copied.MaxEigenvalue, inPlace.MaxEigenvalue, 10);
        var g = Scoring.PerExampleGradients.Materialize(p.Spec, p.Theta, p.Data).t();
        var a = copied.Solve(g);
        Assert.True(inPlace.Solve(g).sub(a).abs().max().ToDouble() <= 1e-10 * a.abs().max().ToDouble());
        inPlace.Unshift(work);
        Assert.True(work.sub(h).abs().max().ToDouble() <= 1e-12 * h.abs().max().ToDouble(), "Unshift should give H back");
    }

    [Fact]
    public void Damping_shifts_the_solution_as_the_oracle_does()
    {
        using var p = Problem.Make("binary logreg");
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        var g = Scoring.PerExampleGradients.Materialize(p.Spec, p.Theta, p.Data)[0].unsqueeze(1);
        using var undamped = HessianInverse.Factorize(h, 0, null);
        using var damped = HessianInverse.Factorize(h, 0.5, null);
        var a = undamped.Solve(g);
        var b = damped.Solve(g);
        Assert.True(a.sub(b).abs().max().ToDouble() > 1e-3, "damping must change the answer");
        Assert.True(b.sub(linalg.solve(h.add(eye(h.shape[0], dtype: h.dtype).mul(0.5)), g)).abs().max().ToDouble() < 1e-10);
    }

    [Fact]
    public void Indefinite_matrix_uses_the_eigendecomposition_and_keeps_signs()
    {
        var h = tensor(new double[] { 2, 0, 0, 0, -1, 0, 0, 0, 4 }, [3, 3]);
        using var inverse = HessianInverse.Factorize(h, 0, null);
        Assert.Equal(InverseKind.Eigen, inverse.Kind);
        Assert.False(inverse.PositiveDefinite);
        Assert.Equal(-1, inverse.MinEigenvalue, 12);
        var x = inverse.Solve(tensor(new double[] { 1, 1, 1 }, [3, 1]));
        Assert.Equal(new[] { 0.5, -1.0, 0.25 }, x.squeeze(1).data<double>().ToArray().Select(v => Math.Round(v, 12)));
    }

    [Fact]
    public void Factorisation_round_trips_through_the_store()
    {
        using var p = Problem.Make("softmax logreg");
        using var h = ExactHessian.Of(p.Objective, p.Theta);
        using var inverse = HessianInverse.Factorize(h, 0.1, Network.FlatDirections(p.Spec, CPU));
        var root = Directory.CreateTempSubdirectory("inverse-").FullName;
        var store = new Influence.Core.Storage.LocalArtifactStore(root);
        inverse.Save(store, "inverse.safetensors");
        using var loaded = HessianInverse.Load(store, "inverse.safetensors", CPU);
        Directory.Delete(root, true);
        var g = randn(p.Spec.ParameterCount, 3, dtype: ScalarType.Float64);
        Assert.Equal(0, inverse.Solve(g).sub(loaded.Solve(g)).abs().max().ToDouble());
        Assert.Equal((inverse.Kind, inverse.MinEigenvalue, inverse.MaxEigenvalue, inverse.Damping, inverse.DroppedEigenvalues),
            (loaded.Kind, loaded.MinEigenvalue, loaded.MaxEigenvalue, loaded.Damping, loaded.DroppedEigenvalues));
    }

    /// <summary>
    /// A matrix large enough that the Krylov space does not exhaust it, with a spectrum as spread as
    /// a logistic regression's (1e-4 to 10, condition 1e5) and clustered ends: the extreme
    /// eigenvalues still match a full eigendecomposition to 1e-9 relative, and the residual says so.
    /// </summary>
    [Fact]
    public void Krylov_extreme_eigenvalues_match_the_full_eigendecomposition_on_an_ill_conditioned_matrix()
    {
        const int n = 600;
        var generator = new TorchSharp.torch.Generator(7);
        var (q, _) = linalg.qr(randn(n, n, dtype: ScalarType.Float64, generator: generator));
        var spectrum = logspace(-4, 1, n, dtype: ScalarType.Float64);
        var h = q.mul(spectrum.unsqueeze(0)).matmul(q.t());
        h = h.add(h.t()).div(2);
        var ev = linalg.eigvalsh(h).data<double>().ToArray();
        using var inverse = HessianInverse.Factorize(h, 0, null);
        Assert.Equal(InverseKind.Cholesky, inverse.Kind);
        Assert.True(Math.Abs(inverse.MinEigenvalue - ev[0]) <= 1e-9 * ev[0], $"smallest {inverse.MinEigenvalue:R} against {ev[0]:R}");
        Assert.True(Math.Abs(inverse.MaxEigenvalue - ev[^1]) <= 1e-9 * ev[^1], $"largest {inverse.MaxEigenvalue:R} against {ev[^1]:R}");
        Assert.InRange(inverse.EigenvalueResidual, 0, ExtremeEigenvalue.DefaultTolerance);
    }
}
