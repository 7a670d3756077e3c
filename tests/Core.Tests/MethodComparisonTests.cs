using Influence.Core.Diagnostics;

namespace Influence.Core.Tests;

/// <summary>The method table on Iris: the solvers that converge to the exact answer do, the approximations are ordered as expected.</summary>
public class MethodComparisonTests
{
    [Fact]
    public void Converging_solvers_reproduce_the_exact_influence_and_every_method_is_reported()
    {
        var settings = MethodComparison.IrisSettings(TestData.DataFile("iris_train.csv"), TestData.DataFile("iris_test.csv"), [8], damping: 1e-3);
        var rows = MethodComparison.Run(settings, MethodComparison.IrisTracInTraining).ToDictionary(r => r.Method);
        Assert.Equal(["exact", "cg", "arnoldi", "lissa", "kfac", "ekfac", "tracin", "grad-dot", "grad-cos"], rows.Keys);
        Assert.Equal(1.0, rows["exact"].MinSpearman, 12);
        Assert.True(rows["cg"].MinSpearman >= 0.9999 && rows["cg"].MeanPearson >= 0.9999, rows["cg"].ToString());
        Assert.True(rows["lissa"].MeanSpearman >= 0.97, rows["lissa"].ToString());
        Assert.True(rows["arnoldi"].MeanSpearman >= 0.9, rows["arnoldi"].ToString());
        Assert.True(rows["cg"].CurvatureProducts > 0 && rows["lissa"].CurvatureProducts == 4 * 2000 * 5);
        foreach (var m in new[] { "kfac", "ekfac", "tracin", "grad-dot", "grad-cos" })
            Assert.True(double.IsFinite(rows[m].MeanSpearman) && rows[m].MeanSpearman > 0, rows[m].ToString());
    }
}
