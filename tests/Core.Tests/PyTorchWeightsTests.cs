using System.Globalization;
using System.Text.Json;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Storage;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>
/// Models trained in PyTorch (--weights): the files under Data/pytorch were written by PyTorch
/// itself (scripts/pytorch/make_reference_models.py, with the logits PyTorch computed), so these
/// tests check the name mapping and the layouts against PyTorch, not against this project's own writer.
/// </summary>
public class PyTorchWeightsTests
{
    private static string File_(string name) => Path.Combine(TestData.RepoRoot, "tests", "Core.Tests", "Data", "pytorch", name);

    // The reference models: an MLP 4-5-3 (tanh, float64) and a CNN on 1×6×6 images (Conv2d(1, 2, 3), tanh, 2×2 max-pooling, Linear(8, 3), float32).
    private static readonly ModelSpec Mlp = ModelSpec.Mlp(4, 3, [5], Activation.Tanh, 1e-2, DecayOn.All);
    private static readonly ModelSpec Cnn = ModelSpec.Cnn(new ImageShape(1, 6, 6), 3, [new ConvLayer(2, 3, 2)], [], Activation.Tanh, 1e-2, DecayOn.All);

    private static (double[][] Rows, double[][] Logits) Reference(string model)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(File_("reference.json")));
        double[][] Read(string key) => doc.RootElement.GetProperty(model).GetProperty(key).EnumerateArray()
            .Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
        return (Read("rows"), Read("logits"));
    }

    [Theory]
    [InlineData("mlp", "mlp.pt")]
    [InlineData("mlp", "mlp.safetensors")]
    [InlineData("cnn", "cnn.pt")]
    [InlineData("cnn", "cnn.safetensors")]
    public void Loaded_weights_give_the_logits_PyTorch_computed(string model, string file)
    {
        var spec = model == "mlp" ? Mlp : Cnn;
        var theta = PyTorchWeights.Load(File_(file), file, spec);
        var (rows, logits) = Reference(model);
        using var x = tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length], ScalarType.Float64);
        using var t = tensor(theta, dtype: ScalarType.Float64);
        var ours = Network.Logits(spec, t, x).data<double>().ToArray();
        var theirs = logits.SelectMany(r => r).ToArray();
        Assert.Equal(theirs.Length, ours.Length);
        for (int i = 0; i < ours.Length; i++) Assert.True(Math.Abs(ours[i] - theirs[i]) < 1e-6, $"{file} logit {i}: {ours[i]} against PyTorch's {theirs[i]}");
    }

    [Fact]
    public void The_names_PyTorch_gives_a_Sequential_are_the_ones_export_writes()
    {
        foreach (var (spec, file) in new[] { (Mlp, "mlp.safetensors"), (Cnn, "cnn.safetensors") })
        {
            var tensors = Safetensors.LoadStateDict(File_(file));
            Assert.Equal(PyTorchWeights.DefaultPrefixes(tensors.Keys), PyTorchWeights.SequentialPrefixes(spec));
            foreach (var v in tensors.Values) v.Dispose();
        }
        Assert.Equal("nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)).double()", PyTorchWeights.SequentialCode(Cnn));
    }

    [Fact]
    public void Export_then_load_gives_back_every_parameter()
    {
        var theta = PyTorchWeights.Load(File_("cnn.pt"), "cnn.pt", Cnn);
        var path = Path.Combine(Directory.CreateTempSubdirectory("influence-export-").FullName, "m.safetensors");
        using (var s = File.Create(path)) PyTorchWeights.Save(s, Cnn, theta);
        Assert.Equal(theta, PyTorchWeights.Load(path, "m.safetensors", Cnn));
    }

    /// <summary>The reference MLP's tensors under other names, with one changed by <paramref name="edit"/>.</summary>
    private static string Mismatch(Action<Dictionary<string, Tensor>> edit, IReadOnlyList<string>? map = null)
    {
        var tensors = Safetensors.LoadStateDict(File_("mlp.safetensors"));
        edit(tensors);
        var e = Assert.Throws<InvalidDataException>(() => PyTorchWeights.ToTheta(tensors, "m.safetensors", Mlp, map));
        return e.Message;
    }

    [Fact]
    public void Every_mismatch_is_refused_naming_the_tensor()
    {
        var missing = Mismatch(t => t.Remove("2.bias"));
        Assert.Contains("'2.bias'", missing);
        Assert.Contains("missing", missing);

        var shape = Mismatch(t => t["0.weight"] = zeros(5, 3, dtype: ScalarType.Float64));
        Assert.Contains("'0.weight'", shape);
        Assert.Contains("shape [5, 3], expected [5, 4]", shape);

        var dtype = Mismatch(t => t["0.bias"] = zeros([5], dtype: ScalarType.Int64));
        Assert.Contains("'0.bias'", dtype);
        Assert.Contains("dtype Int64", dtype);

        var nan = Mismatch(t => t["2.weight"] = full(3, 5, double.NaN, dtype: ScalarType.Float64));
        Assert.Contains("NaN", nan);

        var extra = Mismatch(t => t["running_mean"] = zeros([5], dtype: ScalarType.Float64), map: ["0", "2"]);
        Assert.Contains("no place for: running_mean", extra);

        var layers = Mismatch(t => t["4.weight"] = zeros(3, 3, dtype: ScalarType.Float64));
        Assert.Contains("3 layers", layers);
        Assert.Contains("--weights-map", layers);
    }

    [Fact]
    public void A_weights_map_names_the_layers_in_order()
    {
        var tensors = Safetensors.LoadStateDict(File_("mlp.safetensors"));
        var renamed = new Dictionary<string, Tensor>
        {
            ["out.weight"] = tensors["2.weight"], ["out.bias"] = tensors["2.bias"],
            ["hidden.weight"] = tensors["0.weight"], ["hidden.bias"] = tensors["0.bias"],
        };
        // Natural order would put "hidden" first anyway; the map puts them as the user says, and a wrong map is caught by shape.
        Assert.Equal(PyTorchWeights.ToTheta(tensors, "m", Mlp), PyTorchWeights.ToTheta(renamed, "m", Mlp, ["hidden", "out"]));
        var wrong = Assert.Throws<InvalidDataException>(() => PyTorchWeights.ToTheta(renamed, "m", Mlp, ["out", "hidden"]));
        Assert.Contains("'out.weight' (layer 0, Linear(4, 5))", wrong.Message);
    }

    [Fact]
    public void A_file_too_large_for_the_model_is_refused_before_it_is_parsed()
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("influence-big-").FullName, "big.safetensors");
        using (var f = File.Create(path)) f.SetLength(PyTorchWeights.MaxFileBytes(Mlp) + 1);
        var e = Assert.Throws<InvalidDataException>(() => PyTorchWeights.Load(path, "big.safetensors", Mlp));
        Assert.Contains("more than a state_dict", e.Message);
        Assert.Throws<InvalidDataException>(() => PyTorchWeights.Load(File_("reference.json"), "reference.json", Mlp));
    }

    /// <summary>
    /// A score job on Iris with the PyTorch MLP's weights as given: the checkpoint holds them
    /// unchanged, and the exact influence equals −∇L_testᵀ H⁻¹ ∇L(z) with H by central finite
    /// differences of the objective's gradient (not the project's double-backward Hessian).
    /// </summary>
    [Fact]
    public void Scoring_PyTorch_weights_as_given_matches_a_finite_difference_oracle()
    {
        int[] tests = [0, 5, 11];
        var dir = Directory.CreateTempSubdirectory("influence-weights-").FullName;
        var settings = new ScoreSettings
        {
            Train = new DatasetSpec(TestData.DataFile("iris_train.csv")), Test = new DatasetSpec(TestData.DataFile("iris_test.csv")),
            Model = ModelKind.Mlp, Hidden = [5], Activation = Activation.Tanh, L2 = 1e-2, WeightDecayOn = DecayOn.All,
            Method = Methods.Exact, Damping = 0, TestIndices = tests, Shards = 2, Weights = File_("mlp.safetensors"),
        };
        var job = new ScoreJob(new LocalArtifactStore(dir), "job", settings) { AllowLocalFiles = true };
        InProcessStages.Run(job);
        Checkpoint checkpoint;
        using (var s = File.OpenRead(Path.Combine(dir, "jobs/job/checkpoint.json"))) checkpoint = Checkpoint.Load(s);
        var loaded = PyTorchWeights.Load(File_("mlp.safetensors"), "mlp", checkpoint.Spec);
        Assert.Equal(loaded, checkpoint.Parameters);
        Assert.True(checkpoint.GradientNorm > 1e-3, "PyTorch's initial weights are not an optimum, and the checkpoint says so");

        var data = TestData.Iris();
        var spec = checkpoint.Spec;
        using var theta = tensor(loaded, dtype: ScalarType.Float64);
        using var train = DataTensors.From(data.Train, spec, CPU);
        using var test = DataTensors.From(data.Test.Select(tests), spec, CPU);
        var objective = new Objective(spec, train, data.Train.Count, CPU);
        long p = spec.ParameterCount;
        const double h = 1e-5;
        var hessian = zeros(p, p, dtype: ScalarType.Float64);
        for (long k = 0; k < p; k++)
        {
            var plus = theta.clone(); plus[k] += h;
            var minus = theta.clone(); minus[k] -= h;
            hessian[TensorIndex.Colon, k] = objective.ValueAndGradient(plus).Gradient.sub(objective.ValueAndGradient(minus).Gradient).div(2 * h);
        }
        hessian = hessian.add(hessian.t()).div(2);
        var trainGrads = RowGradients(spec, theta, train);
        var testGrads = RowGradients(spec, theta, test);
        var oracle = testGrads.matmul(linalg.solve(hessian, trainGrads.t())).neg(); // Q × N

        var rows = File.ReadLines(Path.Combine(dir, "jobs/job/influence.csv")).Skip(1).Select(l => l.Split(',')).ToList();
        double scale = oracle.abs().max().ToDouble(), worst = 0;
        foreach (var r in rows)
        {
            int q = Array.IndexOf(tests, int.Parse(r[0], CultureInfo.InvariantCulture)), i = int.Parse(r[1], CultureInfo.InvariantCulture);
            worst = Math.Max(worst, Math.Abs(double.Parse(r[2], CultureInfo.InvariantCulture) - oracle[q, i].ToDouble()));
        }
        Assert.Equal(tests.Length * data.Train.Count, rows.Count);
        Assert.True(worst / scale < 1e-6, $"influence against the finite-difference oracle: relative error {worst / scale:E2}");
    }

    private static Tensor RowGradients(ModelSpec spec, Tensor theta, DataTensors rows) =>
        stack(Enumerable.Range(0, (int)rows.Count).Select(i =>
        {
            using var enabled = enable_grad();
            var t = theta.detach().requires_grad_(true);
            var loss = Objective.PerExampleLoss(spec, t, rows.Rows(i, 1)).sum();
            return autograd.grad([loss], [t])[0].detach();
        }).ToList());
}
