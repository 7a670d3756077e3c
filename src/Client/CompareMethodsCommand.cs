using System.CommandLine;
using System.Globalization;
using System.Text;
using Influence.Abstractions;
using Influence.Core.Diagnostics;
using Influence.Core.Hessians;
using Influence.Core.Jobs;
using Influence.Core.Safety;
using Spectre.Console;

namespace Influence.Client;

/// <summary>
/// `influence compare-methods`: several methods on one trained model, each a score job on the
/// same cluster, tabulated against the exact influence (where P allows) and against LOO deltas
/// (when an `influence loo` run is given), with wall time and peak memory.
/// </summary>
public static class CompareMethodsCommand
{
    private static readonly Option<string> MethodList = new("--methods") { Description = "Comma list of methods to compare", DefaultValueFactory = _ => string.Join(',', Methods.All.Where(m => m.InDefaultComparison).Select(m => m.Name)) };
    private static readonly Option<string?> Loo = new("--loo") { Description = "Output folder of an `influence loo` run: its checkpoint.json is the model, its loo.csv the ground truth (and its test points the queries)" };
    private static readonly Option<string> LooMode = new("--loo-mode") { Description = "Which retrains of the LOO run to compare with: warm, cold or pbrf", DefaultValueFactory = _ => "warm" };
    private static readonly Option<string> Exact = new("--exact") { Description = "auto (when P ≤ 12,000), always or never", DefaultValueFactory = _ => "auto" };

    public static Command Create()
    {
        var command = new Command("compare-methods", "Run several influence methods on one trained model and tabulate their agreement with the exact influence and with LOO retraining, time and memory");
        foreach (var o in ScoreCommand.All) command.Options.Add(o);
        command.Options.Add(MethodList);
        command.Options.Add(Loo);
        command.Options.Add(LooMode);
        command.Options.Add(Exact);
        command.SetAction((parse, ct) => RunAsync(parse, ct));
        return command;
    }

    private sealed record Row(string Method, string Settings, Agreement VsExact, Agreement VsLoo, double Seconds, double PeakMb, int Warnings, string Note);

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        ScoreSettings baseRequest;
        string[] methods;
        LooTruth? loo = null;
        OutputFolder output;
        bool exact;
        var methodOuts = new Dictionary<string, OutputFolder>();
        try
        {
            methods = parse.GetValue(MethodList)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var m in methods)
                if (!Methods.Exists(m) || m == Methods.Exact) throw new ArgumentException($"--methods: '{Echo.Cap(m)}' is not one of {string.Join(", ", Methods.Names.Where(n => n != Methods.Exact))}");
            if (parse.GetValue(Exact) is not ("auto" or "always" or "never")) throw new ArgumentException($"--exact must be auto, always or never, not '{parse.GetValue(Exact)}'");
            // The size check is each listed method's (--method is not run here); exact's only when asked always (auto skips it on a model too large).
            baseRequest = ScoreCommand.BuildSettings(parse, parse.GetValue(Exact) == "always" ? [.. methods, Methods.Exact] : methods);
            if (parse.GetValue(Loo) is string looDir)
            {
                var csv = Path.Combine(looDir, "loo.csv");
                var checkpoint = Path.Combine(looDir, "checkpoint.json");
                if (!File.Exists(csv) || !File.Exists(checkpoint)) throw new ArgumentException($"--loo {looDir}: needs loo.csv and checkpoint.json of an `influence loo` run");
                loo = LooTruth.Read(csv, parse.GetValue(LooMode)!);
                baseRequest = baseRequest with { Checkpoint = Path.GetFullPath(checkpoint), TestIndices = loo.TestIndices };
            }
            output = ScoreCommand.PrepareOut(parse, "compare-methods");
            // The first job trains the model (unless the LOO run's is given); every later one scores it.
            exact = parse.GetValue(Exact) switch { "always" => true, "never" => false, _ => ParameterCount(baseRequest) <= ExactHessian.MaxParameters };
            // Every method's folder, made before any job runs (a folder in the way exits 2 now, not after an hour).
            foreach (var m in exact ? methods.Prepend(Methods.Exact) : methods) methodOuts[m] = output.Sub(m);
        }
        catch (Exception e) when (e is ArgumentException or Influence.Core.Data.DataFormatException)
        {
            return ScoreCommand.Fail(e, 2);
        }

        await using var connection = await ClusterConnection.OpenAsync(parse.GetValue(ScoreCommand.Cluster), parse.GetValue(ScoreCommand.Store)!, parse.GetValue(ScoreCommand.Verbose), ct);
        var rows = new List<Row>();
        var scores = new Dictionary<string, Dictionary<int, double[]>>();
        int trainCount = 0;
        long parameters = 0;
        string model = "";

        foreach (var method in exact ? methods.Prepend(Methods.Exact) : methods)
        {
            // The comparison reads each method's dense matrix (influence.npy), not its CSV.
            var request = baseRequest with { Method = method, Dense = DenseOutput.Float64 };
            // A method that sums over the training run's checkpoints trains its own (minibatch) run.
            bool ownRun = Methods.Get(method).NeedsCheckpoints;
            if (ownRun && request.Training.Optimizer is null)
                request = request with { Training = request.Training with { Optimizer = Influence.Core.Training.Optimizer.Sgd }, Checkpoint = null };
            else if (ownRun) request = request with { Checkpoint = null };
            var methodOut = methodOuts[method];
            var dir = methodOut.FullPath;
            PeakMemory.Reset();
            var jobId = JobRunner.NewJobId("score");
            Console.WriteLine($"{method}: job {jobId}");
            var status = await JobRunner.RunScoreAsync(connection, jobId, request, ct);
            double peak = connection.IsEmbedded ? PeakMemory.ReadMb() : double.NaN;
            if (status.Phase == JobPhase.Cancelled) return ScoreCommand.Fail($"job {jobId} ({method}) was cancelled", 4);
            if (status.Phase != JobPhase.Completed)
            {
                Console.Error.WriteLine($"warning: {method} failed: {status.Error}");
                rows.Add(new Row(method, "", Agreement.None, Agreement.None, status.ElapsedSeconds, peak, 0, $"failed: {status.Error}"));
                continue;
            }
            methodOut.Export(connection.Store, jobId, ScoreOutputs.Files, "summary.json");
            var summary = ScoreSummary.Read(Path.Combine(dir, "summary.json"));
            trainCount = summary.Training.TrainExamples;
            parameters = summary.Model.Parameters;
            model = summary.Model.Description;
            if (baseRequest.Checkpoint is null && !ownRun)
                baseRequest = baseRequest with { Checkpoint = Path.Combine(dir, "checkpoint.json") }; // every later method scores this model
            scores[method] = ScoreComparison.ReadInfluence(Path.Combine(dir, "influence.npy"), request.TestIndices, trainCount);
            var report = summary.MethodReport();
            rows.Add(new Row(method, Methods.Get(method).Describe(report), Agreement.None, loo is null ? Agreement.None : ScoreComparison.AgainstLoo(scores[method], loo, trainCount),
                status.ElapsedSeconds, peak, report.Warnings.Count, ownRun ? $"its own {TrainingChoice.Word(request.Training.Optimizer)} run's checkpoints" : string.Join("; ", report.Warnings)));
        }
        if (scores.TryGetValue(Methods.Exact, out var reference))
            for (int i = 0; i < rows.Count; i++)
                if (scores.ContainsKey(rows[i].Method)) rows[i] = rows[i] with { VsExact = ScoreComparison.Against(scores[rows[i].Method], reference) };

        Write(output, rows, baseRequest, model, parameters, trainCount, loo);
        ReportPage.Write(output, "influence compare-methods", ["compare.md"], null);
        Print(rows, loo is not null, scores.ContainsKey(Methods.Exact));
        Console.WriteLine($"Table in {Path.Combine(output.FullPath, "compare.md")} and compare.csv; each method's outputs in {output.FullPath}/METHOD/.");
        return rows.Any(r => r.Note.StartsWith("failed", StringComparison.Ordinal)) ? 1 : 0;
    }

    /// <summary>P of the model the request describes (the data gives the input width and the classes).</summary>
    private static long ParameterCount(ScoreSettings settings)
    {
        return settings.BuildSpec(Influence.Core.Data.TrainTestData.Load(settings.Train, settings.Test)).ParameterCount;
    }

    private static string F(double v) => double.IsNaN(v) ? "–" : v.ToString("0.000", CultureInfo.InvariantCulture);

    private static void Write(OutputFolder output, List<Row> rows, ScoreSettings request, string model, long parameters, int trainCount, LooTruth? loo)
    {
        var csv = new StringBuilder("method,settings,exact_mean_spearman,exact_min_spearman,exact_mean_pearson,loo_mean_spearman,loo_min_spearman,loo_mean_pearson,seconds,peak_mb,warnings,note\n");
        foreach (var r in rows)
            csv.AppendLine(string.Join(",", r.Method, Q(r.Settings), R(r.VsExact.MeanSpearman), R(r.VsExact.MinSpearman), R(r.VsExact.MeanPearson),
                R(r.VsLoo.MeanSpearman), R(r.VsLoo.MinSpearman), R(r.VsLoo.MeanPearson), R(r.Seconds), R(r.PeakMb), r.Warnings, Q(r.Note)));
        output.WriteText("compare.csv", csv.ToString());

        var md = new StringBuilder();
        md.AppendLine($"# Method comparison\n\n{model}, {parameters} parameters, {trainCount} training rows, test points {string.Join(",", request.TestIndices.Take(10))}{(request.TestIndices.Length > 10 ? $"… ({request.TestIndices.Length})" : "")}.");
        if (loo is not null) md.AppendLine($"LOO: {loo.Mode} retrains of {loo.ByTest.First().Value.Train.Length} removals per test point; correlations of −I/N with loo_delta per test point.");
        md.AppendLine("\n| method | settings | vs exact: mean Spearman | min | mean Pearson | vs LOO: mean Spearman | min | mean Pearson | wall s | peak MB | note |\n|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            md.AppendLine($"| {r.Method} | {r.Settings} | {F(r.VsExact.MeanSpearman)} | {F(r.VsExact.MinSpearman)} | {F(r.VsExact.MeanPearson)} | {F(r.VsLoo.MeanSpearman)} | {F(r.VsLoo.MinSpearman)} | {F(r.VsLoo.MeanPearson)} | {r.Seconds:F1} | {(double.IsNaN(r.PeakMb) ? "–" : r.PeakMb.ToString("F0", CultureInfo.InvariantCulture))} | {r.Note.Replace("|", "/")} |");
        md.AppendLine("\nPeak memory is the peak resident set of this process (the embedded silo) during each job; a cluster run reports none.");
        output.WriteText("compare.md", md.ToString());
    }

    private static string R(double v) => double.IsNaN(v) ? "" : v.ToString("R", CultureInfo.InvariantCulture);
    private static string Q(string s) => "\"" + s.Replace("\"", "\"\"") + "\"";

    private static void Print(List<Row> rows, bool withLoo, bool withExact)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 220;
        var table = new Table().Title("Method comparison (correlations per test point, then mean)").AddColumns("method", "settings");
        if (withExact) table.AddColumns("vs exact Spearman", "min");
        if (withLoo) table.AddColumns("vs LOO Spearman", "min", "Pearson");
        table.AddColumns("wall s", "peak MB", "note");
        foreach (var r in rows)
        {
            var cells = new List<string> { r.Method, Markup.Escape(r.Settings) };
            if (withExact) cells.AddRange([F(r.VsExact.MeanSpearman), F(r.VsExact.MinSpearman)]);
            if (withLoo) cells.AddRange([F(r.VsLoo.MeanSpearman), F(r.VsLoo.MinSpearman), F(r.VsLoo.MeanPearson)]);
            cells.AddRange([r.Seconds.ToString("F1", CultureInfo.InvariantCulture), double.IsNaN(r.PeakMb) ? "–" : r.PeakMb.ToString("F0", CultureInfo.InvariantCulture), Markup.Escape(r.Note)]);
            table.AddRow(cells.ToArray());
        }
        AnsiConsole.Write(table);
    }
}

/// <summary>
/// Peak resident memory of this process between two points: Linux resets the high-water mark
/// (VmHWM) when 5 is written to /proc/self/clear_refs. Elsewhere the peak since start is reported.
/// </summary>
public static class PeakMemory
{
    public static void Reset()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    public static double ReadMb()
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            if (line is not null) return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
        }
        catch (IOException) { }
        return System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0;
    }
}
