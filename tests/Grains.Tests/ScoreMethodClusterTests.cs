using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Training;
using Influence.Abstractions;
using Influence.Core.Jobs;
using Influence.Core.Storage;
using Influence.Core.Tests;

namespace Influence.Grains.Tests;

/// <summary>
/// Every estimator's distributed run (shard grains on two silos of one compute thread each, the
/// solvers' products as rounds of shard work) against the same job run in sequence on one process.
/// </summary>
public class ScoreMethodClusterTests
{
    private static ScoreSettings Request(string method, bool auto, TrainingChoice? training = null) => new()
    {
        Train = new DatasetSpec(TestData.DataFile("iris_train.csv")),
        Test = new DatasetSpec(TestData.DataFile("iris_test.csv")),
        Model = ModelKind.Mlp, Hidden = [6], L2 = 1e-2, WeightDecayOn = DecayOn.All,
        Method = method,
        AutoDamping = auto,
        Damping = auto ? 0 : 1e-3,
        Options = new MethodOptions { ArnoldiIterations = 20, ArnoldiTop = 10, LissaDepth = 300, LissaRepeats = 3, LissaBatch = 32 },
        Training = training ?? new TrainingChoice(),
        TestIndices = [0, 7, 19],
        Shards = 3,
        TopK = 5,
    };

    [Fact]
    public async Task Each_method_on_two_silos_equals_its_one_process_run()
    {
        var storeRoot = ClusterScoring.TempStore();
        var store = new LocalArtifactStore(storeRoot);
        await using var cluster = await ClusterScoring.StartAsync(2, storeRoot);
        var sgd = new TrainingChoice { Optimizer = Optimizer.Sgd, Epochs = 4, TrainBatch = 16, CheckpointEvery = 2 };
        var requests = new (string Name, ScoreSettings Request)[]
        {
            // cg also solves for every training row's self-influence, on the shards of both silos.
            ("cg", Request(Methods.Cg, auto: true) with { Options = Request(Methods.Cg, auto: true).Options with { SolveSelfInfluence = true } }),
            ("arnoldi", Request(Methods.Arnoldi, auto: false)),
            ("lissa", Request(Methods.Lissa, auto: false)),
            ("kfac", Request(Methods.Kfac, auto: true)),
            ("ekfac", Request(Methods.Ekfac, auto: false)),
            ("trak", Request(Methods.Trak, auto: true)),
            ("tracin", Request(Methods.TracIn, auto: false, sgd)),
        };
        foreach (var (name, request) in requests)
        {
            var status = await ClusterScoring.RunAsync(cluster.Client, $"method-{name}", request, TimeSpan.FromMinutes(3));
            Assert.True(status.Phase == JobPhase.Completed, $"{name}: {status.Error}");
            var distributed = ClusterScoring.ReadInfluence(store, status.OutputPrefix!);

            var local = new LocalArtifactStore(ClusterScoring.TempStore());
            InProcessStages.Run(new ScoreJob(local, "job", request) { AllowLocalFiles = true });
            var reference = ClusterScoring.ReadInfluence(local, "jobs/job");
            Assert.Equal(reference.Count, distributed.Count);
            double scale = reference.Values.Max(Math.Abs);
            double worst = reference.Max(kv => Math.Abs(kv.Value - distributed[kv.Key]));
            // CG stops at a relative residual of 1e-6: a rounding difference between the runs (thread
            // counts) can move its last iteration, so it is held to its own tolerance; the others to rounding.
            double tolerance = name == "cg" ? 1e-6 : 1e-10;
            Assert.True(worst <= tolerance * scale, $"{name}: max difference {worst} (scale {scale})");
            var (selfReference, selfDistributed) = (ClusterScoring.ReadSelfInfluence(local, "jobs/job"), ClusterScoring.ReadSelfInfluence(store, status.OutputPrefix!));
            if (request.GivesSelfInfluence)
            {
                Assert.True(selfReference is not null && selfDistributed is not null, $"{name}: no self-influence");
                Assert.Equal(selfReference.Length, selfDistributed.Length);
                double selfWorst = selfReference.Zip(selfDistributed, (a, b) => Math.Abs(a - b)).Max();
                Assert.True(selfWorst <= tolerance * selfReference.Max(Math.Abs), $"{name}: self-influence differs by up to {selfWorst}");
            }
            else Assert.True(selfReference is null && selfDistributed is null, $"{name}: a self-influence it cannot have");

            using var summary = store.OpenRead($"{status.OutputPrefix}/summary.json");
            var method = ScoreSummary.Read(summary, "summary.json").MethodReport();
            Assert.True(method.Damping > 0 == (name != "tracin"), $"{name}: damping reported");
        }
    }
}
