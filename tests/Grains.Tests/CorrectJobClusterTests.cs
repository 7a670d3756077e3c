using Influence.Abstractions;
using Influence.Core.Correction;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Storage;
using Influence.Core.Tests;

namespace Influence.Grains.Tests;

/// <summary>`influence correct` on in-process clusters: a silo killed mid-job changes no number, and the report is whole.</summary>
public class CorrectJobClusterTests
{
    /// <summary>Digits softmax regression (convex: every run is deterministic), weak L2 so that several test points are mispredicted.</summary>
    private static CorrectJobRequest DigitsCorrection() => new()
    {
        Settings = new CorrectSettings
        {
            Score = new ScoreSettings
            {
                Train = new DatasetSpec(TestData.DataFile("digits_train.csv"), FeatureScale: 16),
                Test = new DatasetSpec(TestData.DataFile("digits_test.csv"), FeatureScale: 16),
                L2 = 1e-2, TestIndices = Enumerable.Range(0, 120).ToArray(), Shards = 2,
            },
            K = [1, 10], Steps = [1, 5], LearningRates = [0.2], Seeds = 2,
        },
    };

    private static async Task<JobStatus> RunAsync(IClusterClient client, string jobId, CorrectJobRequest request, TimeSpan timeout, Func<JobStatus, Task>? onPoll = null)
    {
        var grain = client.GetGrain<ICorrectJobGrain>(jobId);
        using var deadline = new CancellationTokenSource(timeout);
        var status = await JobPolling.RunToEndAsync(() => grain.Start(request), grain.GetStatus, TimeSpan.FromMilliseconds(200), onPoll, deadline.Token);
        Assert.True(status.Phase == JobPhase.Completed, status.Error);
        return status;
    }

    [Fact]
    public async Task A_silo_killed_mid_job_loses_nothing_and_changes_no_number()
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        await using var cluster = await ClusterScoring.StartAsync(3, storeRoot);
        var request = DigitsCorrection();

        var baseline = await RunAsync(cluster.Client, "correct-baseline", request, TimeSpan.FromMinutes(4));
        var expected = CorrectJob.ReadRows(store, $"{baseline.OutputPrefix}/correct.csv");
        var plan = new CorrectJob(store, "correct-baseline", request.Settings).LoadPlan()!;
        Assert.True(plan.Targets.Length >= 3, $"the test needs several mispredicted test points, found {plan.Targets.Length}");
        Assert.Equal(plan.Targets.Length * (plan.RunsPerTarget + 1) * 2, expected.Count); // a row per recorded step; self's run a row per k

        bool killed = false;
        var disturbed = await RunAsync(cluster.Client, "correct-killed", request, TimeSpan.FromMinutes(6), async status =>
        {
            if (killed || status.Phase != JobPhase.Retraining || status.Done < plan.RunsPerTarget) return;
            killed = true;
            await cluster.KillSiloAsync(cluster.Silos[^1]);
        });
        Assert.True(killed, "the job ended before a silo could be killed");
        var actual = CorrectJob.ReadRows(store, $"{disturbed.OutputPrefix}/correct.csv");
        // θ̂ is trained again by the second job, on whichever silo: equal to the last bits or nearly.
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            CorrectRow e = expected[i], a = actual[i];
            Assert.Equal((e.TestIndex, e.Selection, e.K, e.Steps, e.Lr, e.Seed, e.Fixed), (a.TestIndex, a.Selection, a.K, a.Steps, a.Lr, a.Seed, a.Fixed));
            foreach (var (x, y) in new[] { (e.TargetLossBefore, a.TargetLossBefore), (e.TargetLossAfter, a.TargetLossAfter), (e.OtherAccuracyChange, a.OtherAccuracyChange), (e.OtherLossChange, a.OtherLossChange) })
                Assert.True(Math.Abs(x - y) <= 1e-9 * Math.Max(1, Math.Abs(x)), $"row {i}: {e} vs {a}");
        }
        // The score jobs' sign convention (I = −∇L(test)ᵀH⁻¹∇L(z): proponents most negative) reaches the
        // selection: one small step on the top proponents lowers every target's loss at the true label.
        foreach (var selection in new[] { Selections.Influence, Selections.GradDot })
            Assert.All(actual.Where(r => r.Selection == selection && r.K == 1 && r.Steps == 1), r => Assert.True(r.TargetLossAfter < r.TargetLossBefore, $"{r}"));
        var markdown = File.ReadAllText(Path.Combine(storeRoot, "jobs", "correct-killed", "correct.md"));
        Assert.Contains($"θ̂ mispredicts {plan.Targets.Length}", markdown);
        Assert.Contains("| influence | 10 | 5 | 0.2 |", markdown);
        Assert.True(new FileInfo(Path.Combine(storeRoot, "jobs", "correct-killed", CorrectReportFile)).Length > 1000);
        // grad-dot had its own score job on the same θ̂.
        Assert.True(File.Exists(Path.Combine(storeRoot, "jobs", "correct-killed-grad-dot", "influence.npy")));
    }

    private const string CorrectReportFile = Influence.Reports.CorrectReport.PlotFile;
}
