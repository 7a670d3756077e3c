using Influence.Core.Data;
using Influence.Core.Loo;
using Influence.Core.Jobs;
using System.Globalization;
using System.Text.Json;
using Influence.Abstractions;
using Influence.Core.Storage;
using Influence.Core.Models;
using Influence.Core.Tests;
using Influence.Core.Training;

namespace Influence.Grains.Tests;

/// <summary>LOO studies on in-process clusters: a silo killed mid-job, a resumed job, the report's numbers.</summary>
public class LooJobClusterTests
{
    private static LooJobRequest DigitsStudy() => new()
    {
        Settings = new LooSettings
        {
            Score = new ScoreSettings
            {
                Train = new DatasetSpec(TestData.DataFile("digits_train.csv")),
                Test = new DatasetSpec(TestData.DataFile("digits_test.csv")),
                L2 = 1e-2,
                TestIndices = [0, 3],
                Shards = 2,
            },
            Remove = "random:48,3",
            Modes = [RetrainMode.Warm, RetrainMode.Cold],
            WarmBatch = 8,
            UnitSize = 4,
        },
    };

    /// <summary>Runs a study to the end the way the client does (<see cref="JobPolling"/>: a coordinator that comes back empty is started again).</summary>
    private static async Task<JobStatus> RunAsync(IClusterClient client, string jobId, LooJobRequest request, TimeSpan timeout, Func<JobStatus, Task>? onPoll = null)
    {
        var grain = client.GetGrain<ILooJobGrain>(jobId);
        using var deadline = new CancellationTokenSource(timeout);
        var status = await JobPolling.RunToEndAsync(() => grain.Start(request), grain.GetStatus, TimeSpan.FromMilliseconds(200), onPoll, deadline.Token);
        Assert.True(status.Phase == JobPhase.Completed, status.Error);
        return status;
    }

    /// <summary>loo.csv as (mode, test, train) → (predicted, actual); fails on a duplicate row.</summary>
    /// <param name="onlyMode">A study of one mode, whose loo.csv has no mode column.</param>
    private static Dictionary<(string Mode, int Test, int Train), (double Predicted, double Actual)> ReadLoo(IArtifactStore store, string prefix, string? onlyMode = null)
    {
        using var s = store.OpenRead($"{prefix}/loo.csv");
        using var r = new StreamReader(s);
        Assert.Equal("test_index,train_index,predicted_delta,loo_delta" + (onlyMode is null ? ",mode" : ""), r.ReadLine());
        var rows = new Dictionary<(string, int, int), (double, double)>();
        string? line;
        while ((line = r.ReadLine()) is not null)
        {
            var f = line.Split(',');
            var key = (onlyMode ?? f[4], int.Parse(f[0], CultureInfo.InvariantCulture), int.Parse(f[1], CultureInfo.InvariantCulture));
            Assert.True(rows.TryAdd(key, (double.Parse(f[2], CultureInfo.InvariantCulture), double.Parse(f[3], CultureInfo.InvariantCulture))), $"{key} recorded twice");
        }
        return rows;
    }

    private static void AssertSameStudy(Dictionary<(string, int, int), (double Predicted, double Actual)> expected, Dictionary<(string, int, int), (double Predicted, double Actual)> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        foreach (var (key, e) in expected)
        {
            Assert.True(actual.TryGetValue(key, out var a), $"{key} missing");
            Assert.True(Math.Abs(e.Predicted - a.Predicted) <= 1e-13 && Math.Abs(e.Actual - a.Actual) <= 1e-11, $"{key}: {e} vs {a}");
        }
    }

    [Fact]
    public async Task A_silo_killed_mid_study_loses_nothing_and_changes_no_number()
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        await using var cluster = await ClusterScoring.StartAsync(3, storeRoot);
        var request = DigitsStudy();

        var baseline = await RunAsync(cluster.Client, "loo-baseline", request, TimeSpan.FromMinutes(4));
        var expected = ReadLoo(store, baseline.OutputPrefix!);
        Assert.Equal(2 * 48 * 2, expected.Count);

        bool killed = false;
        var disturbed = await RunAsync(cluster.Client, "loo-killed", request, TimeSpan.FromMinutes(6), async status =>
        {
            if (killed || status.Phase != JobPhase.Retraining || status.Done < 8) return;
            killed = true;
            await cluster.KillSiloAsync(cluster.Silos[^1]);
        });
        Assert.True(killed, "the job ended before a silo could be killed");
        AssertSameStudy(expected, ReadLoo(store, disturbed.OutputPrefix!));
        Assert.Equal(18, Directory.GetFiles(Path.Combine(storeRoot, "jobs", "loo-killed", "loo", "units")).Length);

        // The report's correlations, recomputed here from loo.csv with an independent formula.
        LooSummary summary;
        using (var s = File.OpenRead(Path.Combine(storeRoot, "jobs", "loo-killed", "loo_summary.json"))) summary = LooSummary.Read(s, "loo_summary.json");
        foreach (var mode in summary.Modes)
        {
            var name = SettingsJson.Word(mode.Mode);
            foreach (var t in mode.PerTest)
            {
                int test = t.TestIndex;
                var pairs = expected.Where(kv => kv.Key.Item1 == name && kv.Key.Item2 == test).Select(kv => kv.Value).ToArray();
                Assert.Equal(pairs.Length, t.Count);
                Assert.Equal(IndependentPearson(pairs.Select(p => p.Predicted).ToArray(), pairs.Select(p => p.Actual).ToArray()), t.Pearson, 9);
                Assert.Equal(IndependentSpearman(pairs.Select(p => p.Predicted).ToArray(), pairs.Select(p => p.Actual).ToArray()), t.Spearman, 9);
                Assert.True(t.Spearman > 0.9, $"{name}, test {test}: the prediction should track LOO on this convex problem");
            }
        }
        Assert.Contains("![", File.ReadAllText(Path.Combine(storeRoot, "jobs", "loo-killed", "report.md")));
        Assert.True(new FileInfo(Path.Combine(storeRoot, "jobs", "loo-killed", "loo_warm_pooled.png")).Length > 1000);
    }

    /// <summary>
    /// With --damping auto the influence uses the δ chosen from the spectrum; the PBRF retrains must
    /// minimise the objective with that δ (they once got the request's 0, and were plain LOO).
    /// Oracle: the PBRF objective trained directly, with the summary's δ and with 0.
    /// </summary>
    [Fact]
    public async Task Pbrf_retrains_use_the_damping_the_influence_chose()
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        await using var cluster = await ClusterScoring.StartAsync(1, storeRoot);
        var request = new LooJobRequest
        {
            Settings = new LooSettings
            {
                Score = new ScoreSettings
                {
                    Train = new DatasetSpec(TestData.DataFile("iris_train.csv")),
                    Test = new DatasetSpec(TestData.DataFile("iris_test.csv")),
                    // Two epochs of SGD stop short of a minimum, where this network's Hessian is indefinite and auto damps.
                    Model = ModelKind.Mlp, Hidden = [8], L2 = 1e-3, WeightDecayOn = DecayOn.All,
                    Training = new TrainingChoice { Optimizer = Optimizer.Sgd, Epochs = 2 },
                    AutoDamping = true, TestIndices = [0, 1],
                },
                Remove = "random:3,5",
                Modes = [RetrainMode.Pbrf],
            },
        };
        var status = await RunAsync(cluster.Client, "loo-pbrf-auto", request, TimeSpan.FromMinutes(4));
        var job = new LooJob(store, "loo-pbrf-auto", request.Settings) { AllowLocalFiles = true };
        double chosen = job.InfluenceDamping();
        Assert.True(chosen > 0, $"the test needs a Hessian that auto damps (δ = {chosen})");

        var rows = ReadLoo(store, status.OutputPrefix!, onlyMode: "pbrf");
        var data = job.Score.LoadData();
        Checkpoint checkpoint;
        using (var s = store.OpenRead(job.Score.CheckpointKey)) checkpoint = Checkpoint.Load(s);
        using var withChosen = new LooContext(data, checkpoint, request.Settings.Score.TestIndices, chosen);
        using var undamped = new LooContext(data, checkpoint, request.Settings.Score.TestIndices, 0);
        foreach (var j in rows.Keys.Select(k => k.Train).Distinct())
        {
            double[] Delta(LooContext c)
            {
                using var pbrf = new PbrfObjective(c.Spec, c.Train, j, c.ThetaHat, c.Damping);
                var result = FullBatchTrainer.Train(pbrf, c.ThetaHat, c.Options(null));
                using var theta = result.Theta;
                return c.TestLosses(theta).Zip(c.BaseTestLoss, (a, b) => a - b).ToArray();
            }
            double[] expected = Delta(withChosen), wrong = Delta(undamped);
            for (int q = 0; q < 2; q++)
            {
                double actual = rows[("pbrf", request.Settings.Score.TestIndices[q], j)].Actual;
                double scale = Math.Abs(expected[q]) + 1e-12;
                Assert.True(Math.Abs(actual - expected[q]) <= 1e-6 * scale + 1e-10, $"row {j}, test {q}: PBRF delta {actual:E6}, the objective with δ = {chosen:E3} gives {expected[q]:E6}");
                Assert.True(Math.Abs(wrong[q] - expected[q]) > 1e-3 * scale, $"row {j}, test {q}: δ should change the PBRF optimum ({wrong[q]:E6} vs {expected[q]:E6})");
            }
        }
    }

    [Fact]
    public async Task A_resumed_study_redoes_no_finished_unit()
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        var request = DigitsStudy();
        var units = Path.Combine(storeRoot, "jobs", "loo-resumed", "loo", "units");
        Dictionary<string, DateTime> finishedBefore;
        await using (var first = await ClusterScoring.StartAsync(1, storeRoot))
        {
            var grain = first.Client.GetGrain<ILooJobGrain>("loo-resumed");
            await grain.Start(request);
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
            while (!Directory.Exists(units) || Directory.GetFiles(units, "unit-*.csv").Length < 3)
            {
                Assert.True(DateTime.UtcNow < deadline, "no unit finished in time");
                await Task.Delay(100);
            }
            finishedBefore = Directory.GetFiles(units, "unit-*.csv").ToDictionary(f => f, File.GetLastWriteTimeUtc);
            Assert.True((await grain.GetStatus()).Phase == JobPhase.Retraining, "the job must still be running when the cluster goes away");
        } // the whole cluster stops mid-job

        await using var second = await ClusterScoring.StartAsync(1, storeRoot);
        var resumed = await RunAsync(second.Client, "loo-resumed", request, TimeSpan.FromMinutes(4));
        foreach (var (file, written) in finishedBefore)
            Assert.Equal(written, File.GetLastWriteTimeUtc(file));
        Assert.Equal(18, Directory.GetFiles(units, "unit-*.csv").Length);

        var fresh = await RunAsync(second.Client, "loo-fresh", request, TimeSpan.FromMinutes(4));
        AssertSameStudy(ReadLoo(store, fresh.OutputPrefix!), ReadLoo(store, resumed.OutputPrefix!));
    }

    private static double IndependentPearson(double[] x, double[] y)
    {
        int n = x.Length;
        double sx = x.Sum(), sy = y.Sum(), sxx = x.Sum(v => v * v), syy = y.Sum(v => v * v), sxy = x.Zip(y, (a, b) => a * b).Sum();
        return (n * sxy - sx * sy) / Math.Sqrt((n * sxx - sx * sx) * (n * syy - sy * sy));
    }

    private static double IndependentSpearman(double[] x, double[] y)
    {
        static double[] Rank(double[] v)
        {
            var ranks = new double[v.Length];
            for (int i = 0; i < v.Length; i++)
            {
                int less = v.Count(w => w < v[i]), equal = v.Count(w => w == v[i]);
                ranks[i] = less + (equal + 1) / 2.0;
            }
            return ranks;
        }
        return IndependentPearson(Rank(x), Rank(y));
    }
}
