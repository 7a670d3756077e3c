using Influence.Core.Storage;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Influence.Core.Data;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using TorchSharp;
using static TorchSharp.torch;

namespace Influence.Core.Jobs;

/// <summary>Where a shard ran and how long it took, for the summary.</summary>
/// <param name="PrepareSeconds">The shard's stages before scoring (partial Hessian, curvature products, factor sums), summed.</param>
public sealed record ShardRun(int Index, int Start, int End, string Silo, double PrepareSeconds, double ScoreSeconds);

/// <summary>Writes a finished score job's files into the store (<see cref="Files"/>), streamed from the shards' score blocks.</summary>
public static class ScoreOutputs
{
    /// <summary>What a score job can write: influence.csv while the pairs are few (<see cref="ScoreSettings.InfluenceCsvOmitted"/>), influence.npy only with --dense, self_influence.csv where the method gives it.</summary>
    public static readonly string[] Files = ["influence.csv", "influence.npy", "self_influence.csv", "topk.csv", "train_summary.csv", "train_topk.csv", "summary.json", "checkpoint.json"];

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    public static void Write(ScoreJob job, TrainTestData data, Checkpoint checkpoint, MethodReport method,
        IReadOnlyList<ShardRun> shards, TopKLists topK, IReadOnlyDictionary<string, double> timings)
    {
        var s = job.Settings;
        int q = s.TestIndices.Length;
        method = job.Method.CompleteReport(job, shards, method);
        var readers = new List<ScoreBlock>();
        var perTrain = new TrainingExampleSummary(data.Train.Count, s.TopK);
        double[] self;
        ScoreJob.BlockTimings[] timingsOfShards;
        try
        {
            foreach (var sh in shards) readers.Add(job.OpenBlock(sh.Index, sh.End - sh.Start, q));
            int trainCount = data.Train.Count;
            // One test point's influence on every training row, gathered from the shards' blocks:
            // the outputs are streamed query by query, never holding N × Q.
            void ForEachQuery(Action<int, double[]> use)
            {
                var row = new double[trainCount];
                for (int k = 0; k < q; k++)
                {
                    for (int b = 0; b < shards.Count; b++) readers[b].ReadInfluenceRow(k, row.AsSpan(shards[b].Start, readers[b].Count));
                    use(k, row);
                }
            }
            // influence.csv: every (test, train) pair, ordered by test point, then training row, while
            // they are few; the training-side summary is built in the same pass (or a pass of its own).
            if (s.InfluenceCsvOmitted(trainCount) is null)
                job.Store.Write(JobKeys.Output(job.JobId, "influence.csv"), stream =>
                {
                    using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 20, leaveOpen: true);
                    w.WriteLine("test_index,train_index,influence");
                    ForEachQuery((k, row) =>
                    {
                        for (int j = 0; j < row.Length; j++) w.Write($"{s.TestIndices[k]},{j},{F(row[j])}\n");
                        perTrain.Add(k, row);
                    });
                });
            else
                ForEachQuery((k, row) => perTrain.Add(k, row));
            // influence.npy: the same matrix, test points (in --test-indices order) × training rows.
            if (s.Dense != DenseOutput.Off)
            {
                var dtype = s.Dense == DenseOutput.Float32 ? Npy.DType.Float32 : Npy.DType.Float64;
                job.Store.Write(JobKeys.Output(job.JobId, "influence.npy"), stream =>
                {
                    Npy.WriteHeader(stream, dtype, q, trainCount);
                    ForEachQuery((_, row) => Npy.WriteRow(stream, dtype, row));
                });
            }
            self = readers.SelectMany(r => r.ReadSelfInfluence()).ToArray();
            timingsOfShards = readers.Select(r => r.ReadTimings()).ToArray();
        }
        finally
        {
            foreach (var r in readers) r.Dispose();
        }
        if (s.GivesSelfInfluence) job.Store.Write(JobKeys.Output(job.JobId, "self_influence.csv"), stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
            w.WriteLine("train_index,self_influence");
            int i = 0;
            foreach (var sh in shards)
                for (int j = sh.Start; j < sh.End; j++) w.Write($"{j},{F(self[i++])}\n");
        });
        long n = data.Train.Count;
        WriteTrainingSide(job, s, perTrain, topK, s.GivesSelfInfluence ? self : null);
        job.Store.Write(JobKeys.Output(job.JobId, "topk.csv"), stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
            w.WriteLine("test_index,kind,rank,train_index,influence,predicted_delta");
            for (int k = 0; k < q; k++)
            {
                foreach (var (kind, list) in new[] { ("proponent", topK.Proponents[k]), ("opponent", topK.Opponents[k]) })
                    for (int r = 0; r < list.Length; r++)
                        w.Write($"{s.TestIndices[k]},{kind},{r + 1},{list[r].TrainIndex},{F(list[r].Influence)},{F(-list[r].Influence / n)}\n");
            }
        });

        var (trainAcc, trainLoss) = Evaluate(checkpoint, data.Train);
        var (testAcc, testLoss) = Evaluate(checkpoint, data.Test);
        var spec = checkpoint.Spec;
        var summary = new ScoreSummary(
            job.JobId,
            "I(z,z_test) = -grad L(z_test)^T (H + damping I)^-1 grad L(z); predicted LOO delta = -I/N; H = Hessian of (1/N) sum L_i + (l2/2)||W||^2 at the trained optimum",
            s,
            MethodOptionsJson(s, spec),
            new ScoreSummary.ModelPart(spec.Describe(), spec.ParameterCount, spec.ClassCount, spec.HasFlatDirection
                ? "softmax with unpenalised output bias: the common shift of the class biases is flat; influence uses the pseudo-inverse on its orthogonal complement"
                : "none"),
            new ScoreSummary.TrainingPart(checkpoint.Objective, checkpoint.GradientNorm, checkpoint.LbfgsIterations, checkpoint.NewtonIterations,
                trainAcc, testAcc, trainLoss, testLoss, data.Train.Count, data.Test.Count),
            new ScoreSummary.CurvaturePart(method.SmallestEigenvalue, method.LargestEigenvalue, method.Damping,
                s.AutoDamping ? "auto" : s.Damping.ToString("R", CultureInfo.InvariantCulture),
                method.SmallestEigenvalue is double min ? min + method.Damping > 0 : null,
                method.Details["eigenvalues_of"]?.GetValue<string>() ?? $"estimated by {s.Method} (see method.details)"),
            data.Warnings,
            method.ToJson(),
            s.GivesSelfInfluence ? "self_influence.csv" : $"not computed: {s.Estimator.NoSelfInfluenceReason}",
            s.InfluenceCsvOmitted(data.Train.Count) ?? "influence.csv",
            Throughput(shards, timingsOfShards, q),
            timings,
            shards);
        job.Store.Write(JobKeys.Output(job.JobId, "summary.json"), summary.Write);
    }

    /// <summary>
    /// train_summary.csv (per training example: self-influence, total and mean influence over the
    /// queries, how often it is a top-k proponent or opponent) and train_topk.csv (the test points
    /// each example helps and harms most).
    /// </summary>
    private static void WriteTrainingSide(ScoreJob job, ScoreSettings s, TrainingExampleSummary perTrain, TopKLists topK, double[]? self)
    {
        var proponent = new int[perTrain.TrainCount];
        var opponent = new int[perTrain.TrainCount];
        foreach (var list in topK.Proponents) foreach (var e in list) proponent[e.TrainIndex]++;
        foreach (var list in topK.Opponents) foreach (var e in list) opponent[e.TrainIndex]++;
        job.Store.Write(JobKeys.Output(job.JobId, "train_summary.csv"), stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
            w.WriteLine("train_index,self_influence,mean_influence,total_influence,proponent_count,opponent_count");
            for (int j = 0; j < perTrain.TrainCount; j++)
                w.Write($"{j},{(self is null ? "" : F(self[j]))},{F(perTrain.Mean(j))},{F(perTrain.Total(j))},{proponent[j]},{opponent[j]}\n");
        });
        job.Store.Write(JobKeys.Output(job.JobId, "train_topk.csv"), stream =>
        {
            using var w = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
            w.WriteLine("train_index,kind,rank,test_index,influence");
            for (int j = 0; j < perTrain.TrainCount; j++)
                foreach (var (kind, list) in new[] { ("helps", perTrain.Helps(j)), ("harms", perTrain.Harms(j)) })
                    for (int r = 0; r < list.Count; r++)
                        w.Write($"{j},{kind},{r + 1},{s.TestIndices[list[r].Query]},{F(list[r].Influence)}\n");
        });
    }

    /// <summary>
    /// Training examples scored per second against all the queries (summed over shards as if they
    /// ran one after another), and the same for one plain batched forward+backward over the same rows.
    /// </summary>
    private static ScoreSummary.ScoringPart Throughput(IReadOnlyList<ShardRun> shards, IReadOnlyList<ScoreJob.BlockTimings> blocks, int queries)
    {
        long n = shards.Sum(sh => (long)(sh.End - sh.Start));
        double seconds = blocks.Sum(b => b.Seconds), floor = blocks.Sum(b => b.ForwardBackwardSeconds);
        double self = blocks.Sum(b => b.SelfInfluenceSeconds), pairs = seconds - self, gemm = blocks.Sum(b => b.GemmSeconds);
        static double? Finite(double v) => double.IsFinite(v) ? v : null;
        return new ScoreSummary.ScoringPart(queries, n, seconds, Finite(n / seconds), Finite(n / floor), Finite(floor / seconds), blocks.Max(b => b.Passes),
            self, Finite(n / pairs), Finite(n / gemm), Finite(gemm / pairs));
    }

    /// <summary>The parameters the chosen method reads (the others are left out).</summary>
    private static JsonObject MethodOptionsJson(ScoreSettings s, ModelSpec spec)
    {
        var method = s.Estimator;
        var json = new JsonObject();
        method.ReportOptions(s, spec, json);
        if (method.ScoresWithGradients) json["query_rank"] = s.Options.QueryRank;
        if (method.IsSeeded) json["method_seed"] = s.Options.MethodSeed;
        return json;
    }

    /// <summary>Accuracy and mean loss of the checkpoint on a dataset.</summary>
    public static (double Accuracy, double MeanLoss) Evaluate(Checkpoint checkpoint, Dataset data)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = Compute.Devices.Default;
        var spec = checkpoint.Spec;
        using var tensors = DataTensors.From(data, spec, device);
        var theta = checkpoint.Theta(device);
        var logits = Network.Logits(spec, theta, tensors.X);
        var predicted = spec.IsBinary ? logits.squeeze(1).gt(0).to(ScalarType.Int64) : logits.argmax(1);
        var labels = tensor(data.Labels.Select(l => (long)l).ToArray()).to(device);
        double accuracy = predicted.eq(labels).to(ScalarType.Float64).mean().ToDouble();
        double loss = Objective.PerExampleLoss(spec, logits, tensors.Y).to(ScalarType.Float64).mean().ToDouble();
        return (accuracy, loss);
    }
}
