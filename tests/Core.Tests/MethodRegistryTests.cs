using Influence.Core.Data;
using Influence.Core.Hessians;
using Influence.Core.Jobs;
using Influence.Core.Loo;
using Influence.Core.Models;
using Influence.Core.Training;

namespace Influence.Core.Tests;

/// <summary>The method registry and the one JSON form of the settings: what the CLI, the wire, the store and the docs share.</summary>
public class MethodRegistryTests
{
    [Fact]
    public void Every_registered_method_has_a_unique_name_and_a_row_in_the_docs_table()
    {
        Assert.Equal(Methods.All.Count, Methods.Names.Distinct().Count());
        var rows = File.ReadAllLines(Path.Combine(TestData.RepoRoot, "docs", "methods.md")).Where(l => l.StartsWith("| `", StringComparison.Ordinal)).ToList();
        foreach (var name in Methods.Names)
            Assert.True(rows.Any(r => r.Split('|')[1].Contains($"`{name}`", StringComparison.Ordinal)), $"docs/methods.md has no table row for {name}");
        Assert.Equal("cg", Methods.Get("cg").Name);
        Assert.Contains("must be one of exact, cg", Assert.Throws<ArgumentException>(() => Methods.Get("newton")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Capabilities_say_where_self_influence_comes_from()
    {
        Assert.Equal(SelfInfluenceSource.Solves, Methods.Get(Methods.Cg).SelfInfluenceSource);
        Assert.Equal(SelfInfluenceSource.Solves, Methods.Get(Methods.Lissa).SelfInfluenceSource);
        Assert.Equal(SelfInfluenceSource.None, Methods.Get(Methods.GradCos).SelfInfluenceSource);
        foreach (var name in new[] { Methods.Exact, Methods.Arnoldi, Methods.Kfac, Methods.Ekfac, Methods.Trak, Methods.TracIn, Methods.GradDot })
            Assert.Equal(SelfInfluenceSource.Preconditioner, Methods.Get(name).SelfInfluenceSource);
        Assert.True(Methods.Get(Methods.TracIn).NeedsCheckpoints);
        Assert.Single(Methods.All, m => m.NeedsCheckpoints);
    }

    private static ScoreSettings Unusual() => new()
    {
        Train = new DatasetSpec("store:datasets/a/train.idx", "store:datasets/a/labels.idx", 255),
        Test = new DatasetSpec("/data/test.csv"),
        Model = ModelKind.Cnn,
        Hidden = [32, 16],
        Conv = [new ConvLayer(4, 5, 2)],
        Image = ImageShape.Parse("1x28x28"),
        Activation = Activation.Relu,
        L2 = 2.5e-4,
        WeightDecayOn = DecayOn.All,
        DType = Precision.Float32,
        Seed = 7,
        Method = Methods.Lissa,
        AutoDamping = true,
        Options = new MethodOptions { Curvature = Curvature.GaussNewton, ArnoldiIterations = 40, LissaScale = 3.5, FisherLabels = FisherLabels.Empirical, MethodSeed = 11, SolveSelfInfluence = true },
        Training = new TrainingChoice { Optimizer = Optimizer.Adam, LearningRate = 1e-3, TrainBatch = 32 },
        MemoryBudgetMb = 512,
        Checkpoint = "store:jobs/x/checkpoint.json",
        TestIndices = [3, 1, 4],
        Shards = 6,
        TopK = 3,
        BatchSize = 128,
    };

    [Fact]
    public void Settings_round_trip_through_their_json_with_the_command_lines_names_and_words()
    {
        var settings = Unusual();
        var json = SettingsJson.Serialize(settings);
        foreach (var expected in new[] { "\"model\":\"cnn\"", "\"dtype\":\"float32\"", "\"curvature\":\"ggn\"", "\"arnoldi_iterations\":40", "\"method_seed\":11",
                     "\"weight_decay_on\":\"all\"", "\"train_batch\":32", "\"optimizer\":\"adam\"", "\"fisher_labels\":\"empirical\"", "\"memory_budget_mb\":512" })
            Assert.Contains(expected, json, StringComparison.Ordinal);
        var back = SettingsJson.Deserialize<ScoreSettings>(json, "test");
        Assert.Equal(json, SettingsJson.Serialize(back));
        Assert.Equal(Curvature.GaussNewton, back.Options.Curvature);
        Assert.Equal([3, 1, 4], back.TestIndices);

        var loo = new LooSettings { Score = settings, Remove = "top:5+random:3,2", Modes = [RetrainMode.Cold, RetrainMode.Pbrf], NoiseSeeds = 2 };
        var looJson = SettingsJson.Serialize(loo);
        Assert.Contains("\"modes\":[\"cold\",\"pbrf\"]", looJson, StringComparison.Ordinal);
        Assert.Equal(looJson, SettingsJson.Serialize(SettingsJson.Deserialize<LooSettings>(looJson, "test")));
    }

    [Fact]
    public void Settings_json_from_an_untrusted_store_is_refused_when_it_has_unknown_fields_or_words()
    {
        var json = SettingsJson.Serialize(Unusual());
        var unknown = Assert.Throws<InvalidDataException>(() => SettingsJson.Deserialize<ScoreSettings>(json.Replace("\"top_k\":3", "\"top_k\":3,\"shell\":\"rm -rf\""), "jobs/x/settings.json"));
        Assert.StartsWith("jobs/x/settings.json:", unknown.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidDataException>(() => SettingsJson.Deserialize<ScoreSettings>(json.Replace("\"ggn\"", "\"newton\""), "jobs/x/settings.json"));
        Assert.Throws<InvalidDataException>(() => SettingsJson.Deserialize<ScoreSettings>(json.Replace("\"dtype\":\"float32\"", "\"dtype\":1"), "jobs/x/settings.json"));
    }

    [Fact]
    public void Enum_words_parse_back_and_a_bad_word_names_the_setting_and_the_choices()
    {
        Assert.Equal("ggn", SettingsJson.Word(Curvature.GaussNewton));
        Assert.Equal(Curvature.GaussNewton, SettingsJson.Parse<Curvature>("GGN", "--curvature"));
        Assert.Equal(["logreg", "mlp", "cnn"], SettingsJson.Words<ModelKind>());
        var e = Assert.Throws<ArgumentException>(() => SettingsJson.Parse<Precision>("float16", "--dtype"));
        Assert.Equal("--dtype must be float64 or float32, not 'float16'", e.Message);
    }

    [Fact]
    public void A_setting_error_names_settings_and_the_command_line_renders_them_as_flags()
    {
        var e = Assert.Throws<SettingError>(() => new MethodOptions { ArnoldiIterations = 10, ArnoldiTop = 20 }.Validate());
        Assert.Equal("arnoldi_top must be in 1..10 (arnoldi_iterations), not 20", e.Message);
        Assert.Equal("--arnoldi-top must be in 1..10 (--arnoldi-iterations), not 20", e.Render(n => "--" + n.Replace('_', '-')));
    }
}
