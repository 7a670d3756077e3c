using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Fading;
using Influence.Core.Jobs;
using Influence.Core.Storage;
using Influence.Core.Tests;

namespace Influence.Grains.Tests;

/// <summary>`influence fading` on in-process clusters: a silo killed mid-job changes no number, and the report is whole.</summary>
public class FadingJobClusterTests
{
    private static FadingJobRequest DigitsFading() => new()
    {
        Settings = new FadingSettings
        {
            Score = new ScoreSettings
            {
                Train = new DatasetSpec(TestData.DataFile("digits_train.csv"), FeatureScale: 16),
                Test = new DatasetSpec(TestData.DataFile("digits_test.csv"), FeatureScale: 16),
                L2 = 1e-2, TestIndices = [0, 1, 2, 3], Shards = 2,
                Training = new TrainingChoice { LearningRate = 0.1, TrainBatch = 32 },
            },
            Remove = "random:12,1", Steps = 60, RemovalsPerUnit = 2,
        },
    };

    [Fact]
    public async Task A_silo_killed_mid_job_loses_nothing_and_changes_no_number()
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        await using var cluster = await ClusterScoring.StartAsync(3, storeRoot);
        var request = DigitsFading();
        async Task<JobStatus> Run(string id, Func<JobStatus, Task>? onPoll)
        {
            var grain = cluster.Client.GetGrain<IFadingJobGrain>(id);
            using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            var status = await JobPolling.RunToEndAsync(() => grain.Start(request), grain.GetStatus, TimeSpan.FromMilliseconds(200), onPoll, deadline.Token);
            Assert.True(status.Phase == JobPhase.Completed, status.Error);
            return status;
        }
        IReadOnlyList<FadingRow> Rows(JobStatus s)
        {
            using var f = store.OpenRead($"{s.OutputPrefix}/fading.csv");
            return FadingJob.ReadRows(f, "fading.csv");
        }

        var expected = Rows(await Run("fading-baseline", null));
        Assert.Equal(12 * 4 * FadingSettings.RecordedSteps(60).Length, expected.Count);
        bool killed = false;
        var disturbed = await Run("fading-killed", async status =>
        {
            if (killed || status.Phase != JobPhase.Retraining || status.Done < 2) return;
            killed = true;
            await cluster.KillSiloAsync(cluster.Silos[^1]);
        });
        Assert.True(killed, "the job ended before a silo could be killed");
        var actual = Rows(disturbed);
        // θ₀ is trained again by the second job: equal to the last bits or nearly.
        Assert.Equal(expected.Count, actual.Count);
        foreach (var (e, a) in expected.Zip(actual))
        {
            Assert.Equal((e.TrainIndex, e.TestIndex, e.Step), (a.TrainIndex, a.TestIndex, a.Step));
            foreach (var (x, y) in new[] { (e.ActualDelta, a.ActualDelta), (e.PredictedIf, a.PredictedIf), (e.PredictedTracin, a.PredictedTracin), (e.PredictedLinear, a.PredictedLinear), (e.ParamDistance, a.ParamDistance) })
                Assert.True(Math.Abs(x - y) <= 1e-9 * Math.Max(1e-6, Math.Abs(x)), $"{e} vs {a}");
        }
        var markdown = File.ReadAllText(Path.Combine(storeRoot, "jobs", "fading-killed", "fading.md"));
        Assert.Contains("| 60 |", markdown);
        Assert.True(new FileInfo(Path.Combine(storeRoot, "jobs", "fading-killed", Influence.Reports.FadingReport.AgreementPlot)).Length > 1000);
    }
}
