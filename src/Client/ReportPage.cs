using System.Globalization;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Models;
using Influence.Core.Safety;
using Influence.Core.Storage;
using Influence.Reports;
using static TorchSharp.torch;

namespace Influence.Client;

/// <summary>
/// Writes report.html into a command's --out once its outputs are there: the command's markdown
/// reports, and for jobs that score (their topk.csv and checkpoint.json beside them) the explained
/// test points, read from the outputs and the command's own data files.
/// </summary>
public static class ReportPage
{
    public const string Name = "report.html";
    /// <summary>How much of a job the page shows: test points, examples per side, high self-influence rows.</summary>
    public const int TestsShown = 20, PerSide = 5, SelfShown = 16;

    public static void Write(OutputFolder output, string title, IReadOnlyList<string> markdown, ScoreSettings? settings)
    {
        Gallery? gallery = null;
        try { gallery = settings is null ? null : GalleryOf(output.FullPath, settings); }
        catch (Exception e) when (e is IOException or InvalidDataException or DataFormatException or FormatException or ArgumentException)
        {
            // The page still holds the tables; say why it has no pictures.
            Console.Error.WriteLine($"warning: report.html without the explained test points: {Echo.Cap(e.Message, 200)}");
        }
        output.WriteText(Name, HtmlReport.Build(title, output.FullPath, markdown, gallery));
    }

    private static Gallery? GalleryOf(string folder, ScoreSettings settings)
    {
        string topkPath = Path.Combine(folder, "topk.csv"), checkpointPath = Path.Combine(folder, "checkpoint.json");
        if (!File.Exists(topkPath) || !File.Exists(checkpointPath)) return null;
        if (StoredFiles.IsStored(settings.Train.Path) || StoredFiles.IsStored(settings.Test.Path)) return null; // data this client does not have
        Checkpoint checkpoint;
        using (var s = File.OpenRead(checkpointPath)) checkpoint = Checkpoint.Load(s);
        var data = TrainTestData.Load(settings.Train, settings.Test);
        var spec = checkpoint.Spec;
        if (data.Train.FeatureCount != spec.InputDim) throw new InvalidDataException($"the data has {data.Train.FeatureCount} features, the model {spec.InputDim}");

        // topk.csv: test_index,kind,rank,train_index,influence,predicted_delta
        var rows = File.ReadLines(topkPath).Skip(1).Select(l => l.Split(',')).Where(c => c.Length == 6).ToList();
        var testIndices = rows.Select(c => int.Parse(c[0], CultureInfo.InvariantCulture)).Distinct().Take(TestsShown).ToList();
        var selfPath = Path.Combine(folder, "self_influence.csv");
        var self = File.Exists(selfPath)
            ? File.ReadLines(selfPath).Skip(1).Select(l => l.Split(','))
                .Select(c => (Row: int.Parse(c[0], CultureInfo.InvariantCulture), Value: double.TryParse(c[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN))
                .Where(r => double.IsFinite(r.Value)).OrderByDescending(r => r.Value).Take(SelfShown).ToList()
            : [];

        var trainRows = rows.Where(c => testIndices.Contains(int.Parse(c[0], CultureInfo.InvariantCulture))).Select(c => int.Parse(c[3], CultureInfo.InvariantCulture))
            .Concat(self.Select(s => s.Row)).Distinct().ToArray();
        var trainPredicted = Predict(checkpoint, data.Train, trainRows);
        var testPredicted = Predict(checkpoint, data.Test, testIndices.ToArray());
        ShownRow Train(int i) => HtmlReport.Shown(data.Train, i, trainPredicted[i]);

        var tests = testIndices.Select(t =>
        {
            var mine = rows.Where(c => int.Parse(c[0], CultureInfo.InvariantCulture) == t).ToList();
            IReadOnlyList<(ShownRow, double, double)> Side(string kind) => mine.Where(c => c[1] == kind).Take(PerSide)
                .Select(c => (Train(int.Parse(c[3], CultureInfo.InvariantCulture)), Parse(c[4]), Parse(c[5]))).ToList();
            return new ExplainedTest(HtmlReport.Shown(data.Test, t, testPredicted[t]), Side("proponent"), Side("opponent"));
        }).ToList();
        return new Gallery(HtmlReport.ImageOf(spec), tests, self.Select(s => (Train(s.Row), s.Value)).ToList());
    }

    private static double Parse(string text) => double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);

    /// <summary>The model's predicted class for the given rows (by row index).</summary>
    private static Dictionary<int, int> Predict(Checkpoint checkpoint, Dataset data, int[] rows)
    {
        var result = new Dictionary<int, int>();
        if (rows.Length == 0) return result;
        using var scope = NewDisposeScope();
        var spec = checkpoint.Spec;
        var picked = data.Select(rows);
        var theta = checkpoint.Theta(CPU);
        var x = tensor(picked.Features, [rows.Length, picked.FeatureCount], ScalarType.Float64).to(spec.ScalarType);
        using var noGrad = no_grad();
        var logits = Network.Logits(spec, theta, x);
        var classes = spec.IsBinary ? logits.squeeze(1).gt(0).to(ScalarType.Int64) : logits.argmax(1);
        var predicted = classes.data<long>().ToArray();
        for (int k = 0; k < rows.Length; k++) result[rows[k]] = (int)predicted[k];
        return result;
    }
}
