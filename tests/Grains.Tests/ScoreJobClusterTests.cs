using Influence.Core.Jobs;
using System.Globalization;
using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Metrics;
using Influence.Core.Storage;
using Influence.Core.Tests;
using static TorchSharp.torch;

namespace Influence.Grains.Tests;

public class ScoreJobClusterTests
{
    private static ScoreSettings DigitsRequest(int shards, Core.Models.Precision dtype = Core.Models.Precision.Float64) => new()
    {
        Train = new DatasetSpec(TestData.DataFile("digits_train.csv")),
        Test = new DatasetSpec(TestData.DataFile("digits_test.csv")),
        L2 = 1e-2, DType = dtype,
        TestIndices = [0, 3, 17],
        Shards = shards,
        TopK = 5,
    };

    private static void AssertSame(Dictionary<(int, int), double> a, Dictionary<(int, int), double> b, string what)
    {
        Assert.Equal(a.Count, b.Count);
        double scale = a.Values.Max(Math.Abs);
        double worst = a.Max(kv => Math.Abs(kv.Value - b[kv.Key]));
        Assert.True(worst <= 1e-12 * scale, $"{what}: max difference {worst} (scale {scale})");
    }

    [Fact]
    public async Task One_two_and_seven_shards_on_one_or_two_silos_give_the_same_scores()
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        var results = new Dictionary<string, Dictionary<(int, int), double>>();
        var silosUsed = new HashSet<string>();
        foreach (short silos in new short[] { 1, 2 })
        {
            await using var cluster = await ClusterScoring.StartAsync(silos, storeRoot);
            foreach (int shards in silos == 1 ? new[] { 1, 2, 7 } : new[] { 7 })
            {
                var id = $"equal-{silos}-{shards}";
                var status = await ClusterScoring.RunAsync(cluster.Client, id, DigitsRequest(shards), TimeSpan.FromMinutes(3));
                Assert.True(status.Phase == JobPhase.Completed, status.Error);
                results[id] = ClusterScoring.ReadInfluence(store, status.OutputPrefix!);
                if (silos == 2)
                {
                    using var summary = store.OpenRead($"{status.OutputPrefix}/summary.json");
                    var doc = System.Text.Json.JsonDocument.Parse(summary);
                    foreach (var shard in doc.RootElement.GetProperty("shards").EnumerateArray()) silosUsed.Add(shard.GetProperty("silo").GetString()!);
                }
            }
        }
        Assert.Equal(1257 * 3, results["equal-1-1"].Count);
        AssertSame(results["equal-1-1"], results["equal-1-2"], "1 vs 2 shards");
        AssertSame(results["equal-1-1"], results["equal-1-7"], "1 vs 7 shards");
        AssertSame(results["equal-1-1"], results["equal-2-7"], "1 silo vs 2 silos");
        Assert.True(silosUsed.Count == 2, $"7 shards on 2 silos all ran on {string.Join(", ", silosUsed)}");
    }

    /// <summary>
    /// The job against an independent float64 computation: the Hessian assembled from per-example
    /// Kronecker products, per-example gradients from the closed form (p − y) ⊗ x̃, and a general
    /// LU solve on H + uuᵀ (u the flat direction) instead of the job's Cholesky route.
    /// </summary>
    [Theory]
    [InlineData("digits")]
    [InlineData("fmnist")] // the issue's acceptance run: 2000 × 784, λ = 1e-3, test points 0-9, 4 shards
    public async Task Scores_match_an_independent_exact_computation(string dataset)
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        await using var cluster = await ClusterScoring.StartAsync(1, storeRoot);
        var request = dataset == "digits" ? DigitsRequest(3) : new ScoreSettings
        {
            Train = new DatasetSpec(TestData.DataFile("fmnist_train2000.csv"), null, 255),
            Test = new DatasetSpec(TestData.DataFile("fmnist_test1000.csv"), null, 255),
            L2 = 1e-3,
            TestIndices = Enumerable.Range(0, 10).ToArray(),
            Shards = 4,
        };
        var status = await ClusterScoring.RunAsync(cluster.Client, $"independent-{dataset}", request, TimeSpan.FromMinutes(5));
        Assert.True(status.Phase == JobPhase.Completed, status.Error);
        var scores = ClusterScoring.ReadInfluence(store, status.OutputPrefix!);

        using var ckptStream = store.OpenRead($"{status.OutputPrefix}/checkpoint.json");
        var checkpoint = Core.Models.Checkpoint.Load(ckptStream);
        var data = TrainTestData.Load(new DatasetSpec(request.Train.Path, null, request.Train.FeatureScale), new DatasetSpec(request.Test.Path, null, request.Test.FeatureScale));
        var expected = IndependentInfluence(checkpoint.Parameters, data, request.L2, request.TestIndices);

        for (int q = 0; q < request.TestIndices.Length; q++)
        {
            var got = Enumerable.Range(0, data.Train.Count).Select(j => scores[(request.TestIndices[q], j)]).ToArray();
            var want = expected[q];
            Assert.True(Correlation.Pearson(got, want) >= 0.99999, $"test point {request.TestIndices[q]}: Pearson {Correlation.Pearson(got, want)}");
            double scale = want.Max(Math.Abs);
            double worst = got.Zip(want, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-8 * scale, $"test point {request.TestIndices[q]}: max |difference| {worst} (scale {scale})");
        }
    }

    /// <summary>Influence of every training row on each test index for softmax regression, from first principles.</summary>
    public static double[][] IndependentInfluence(double[] parameters, TrainTestData data, double l2, int[] testIndices)
    {
        int c = data.ClassCount, d = data.Train.FeatureCount, n = data.Train.Count;
        var theta = tensor(parameters, dtype: ScalarType.Float64);
        var w = theta.narrow(0, 0, c * d).view(c, d);
        var b = theta.narrow(0, c * d, c);
        Tensor Aug(Dataset ds) => cat([tensor(ds.Features, [ds.Count, d], dtype: ScalarType.Float64), ones(ds.Count, 1, dtype: ScalarType.Float64)], 1);
        // Parameters in class-major augmented order [W_c, b_c] per class; permuted at the end.
        Tensor Grads(Dataset ds)
        {
            var x = Aug(ds);
            var p = x.narrow(1, 0, d).matmul(w.t()).add(b).softmax(1);
            var y = nn.functional.one_hot(tensor(ds.Labels.Select(l => (long)l).ToArray()), c).to(ScalarType.Float64);
            return p.sub(y).unsqueeze(2).mul(x.unsqueeze(1)).reshape(ds.Count, c * (d + 1)); // (p − y) ⊗ x̃
        }
        var xt = Aug(data.Train);
        var pt = xt.narrow(1, 0, d).matmul(w.t()).add(b).softmax(1);
        var curvature = pt.diag_embed().sub(pt.unsqueeze(2).mul(pt.unsqueeze(1))); // N×C×C
        long pa = c * (d + 1);
        var h = einsum("ncd,nj,nk->cjdk", curvature, xt, xt).reshape(pa, pa).div(n);
        var reg = ones(c, d + 1, dtype: ScalarType.Float64).mul(l2);
        reg.select(1, d).zero_();
        h = h.add(reg.reshape(-1).diag());
        var u = zeros(c, d + 1, dtype: ScalarType.Float64);
        u.select(1, d).fill_(1.0 / Math.Sqrt(c));
        u = u.reshape(pa, 1);
        var testGrads = Grads(data.Test.Select(testIndices));
        var solved = linalg.solve(h.add(u.matmul(u.t())), testGrads.t()); // LU, H + uuᵀ
        var influence = Grads(data.Train).matmul(solved).neg().t(); // Q × N
        return Enumerable.Range(0, testIndices.Length).Select(q => influence[q].data<double>().ToArray()).ToArray();
    }

    [Fact]
    public async Task Bad_data_fails_the_job_with_file_row_and_problem()
    {
        var dir = Directory.CreateTempSubdirectory("influence-bad").FullName;
        var bad = Path.Combine(dir, "bad.csv");
        File.WriteAllText(bad, "label,a,b\n0,1,2\n1,x,3\n");
        var storeRoot = ClusterScoring.TempStore();
        await using var cluster = await ClusterScoring.StartAsync(1, storeRoot);
        var request = new ScoreSettings { Train = new DatasetSpec(bad), Test = new DatasetSpec(bad), TestIndices = [0] };
        var status = await ClusterScoring.RunAsync(cluster.Client, "bad-data", request, TimeSpan.FromMinutes(1));
        Assert.Equal(JobPhase.Failed, status.Phase);
        Assert.Contains(bad, status.Error);
        Assert.Contains("line 3 (row 1), column 2", status.Error);

        var outOfRange = new ScoreSettings
        {
            Train = new DatasetSpec(TestData.DataFile("iris_train.csv")), Test = new DatasetSpec(TestData.DataFile("iris_test.csv")), TestIndices = [45],
        };
        status = await ClusterScoring.RunAsync(cluster.Client, "bad-index", outOfRange, TimeSpan.FromMinutes(1));
        Assert.Equal(JobPhase.Failed, status.Phase);
        Assert.Contains("test index 45", status.Error);
    }
}
