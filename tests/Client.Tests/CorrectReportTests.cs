using Influence.Core.Correction;
using Influence.Reports;
using Xunit;

namespace Influence.Client.Tests;

/// <summary>The statistics of correct.md, against values computed by hand.</summary>
public class CorrectReportTests
{
    [Fact]
    public void Wilson_intervals_are_the_textbook_values()
    {
        var (low, high) = CorrectReport.Wilson(0, 10);
        Assert.Equal(0, low, 12);
        Assert.Equal(0.27753, high, 4);
        (low, high) = CorrectReport.Wilson(5, 10);
        Assert.Equal(0.23659, low, 4);
        Assert.Equal(0.76341, high, 4);
    }

    [Fact]
    public void Fix_rates_and_paired_differences_are_computed_per_target_and_seed()
    {
        CorrectRow Row(int test, string selection, int seed, bool fixedIt, double accuracy) =>
            new(test, selection, 5, 10, 0.1, seed, fixedIt, 1.0, fixedIt ? 0.2 : 0.9, accuracy, 0);
        var rows = new List<CorrectRow>
        {
            Row(1, Selections.Influence, 0, true, -0.01), Row(2, Selections.Influence, 0, true, -0.03), Row(3, Selections.Influence, 0, false, 0.0),
            // random: target 1 fixed by one seed of two, target 2 by both, target 3 by none
            Row(1, Selections.Random, 0, true, 0), Row(1, Selections.Random, 1, false, 0),
            Row(2, Selections.Random, 0, true, 0), Row(2, Selections.Random, 1, true, 0),
            Row(3, Selections.Random, 0, false, 0), Row(3, Selections.Random, 1, false, 0),
        };
        var cells = CorrectReport.Cells(rows);
        var influence = cells.Single(c => c.Selection == Selections.Influence);
        Assert.Equal(3, influence.Runs);
        Assert.Equal(2.0 / 3, influence.FixRate, 12);
        Assert.Equal(-0.04 / 3, influence.AccuracyChange, 12);
        Assert.Equal((-0.8 - 0.8 - 0.1) / 3, influence.TargetLossChange, 12);
        Assert.Equal(-0.8, influence.TargetLossMedianChange, 12);
        var random = cells.Single(c => c.Selection == Selections.Random);
        Assert.Equal((6, 0.5), (random.Runs, random.FixRate));

        // Per target: influence − mean over random's seeds = 0.5, 0, 0 → mean 1/6.
        var vsRandom = CorrectReport.Comparisons(rows).Single(c => c.Baseline == Selections.Random);
        Assert.Equal(3, vsRandom.Targets);
        Assert.Equal(1.0 / 6, vsRandom.Difference, 12);
        double sd = Math.Sqrt((Math.Pow(0.5 - 1.0 / 6, 2) + 2 * Math.Pow(1.0 / 6, 2)) / 2);
        Assert.Equal(1.959963984540054 * sd / Math.Sqrt(3), vsRandom.HalfWidth, 12);
    }
}
