using System.Text.Json;
using Influence.Core.Storage;

namespace Influence.Core.Jobs;

/// <summary>
/// What the jobs made of units of short trainings on the silos (correct, fading) keep in the
/// store, under jobs/ID/FOLDER/: their settings (claimed once, so a resume must match them), a
/// frozen plan, and each unit's rows written once under its id, so that a unit finished anywhere
/// is never run again. The score job of the same id trains the model and writes the dense influence.
/// </summary>
public abstract class UnitJob<TSettings, TPlan>(IArtifactStore store, string jobId, TSettings settings, string folder) where TPlan : class
{
    public IArtifactStore Store { get; } = store;
    public string JobId { get; } = jobId;
    public TSettings Settings { get; } = settings;
    /// <summary>Whether the request's files may be local paths (the embedded mode); else only store:KEY.</summary>
    public bool AllowLocalFiles { get; init; }
    public string Prefix => JobKeys.Prefix(JobId);
    public string SettingsKey => SettingsKeyOf(JobId, folder);
    public string PlanKey => $"{Prefix}/{folder}/plan.json";
    public string UnitKey(int id) => $"{Prefix}/{folder}/units/unit-{id:D5}.csv";
    /// <summary>The score job's dense influence, [test point in --test-indices order][training row].</summary>
    public string InfluenceKey => JobKeys.Output(JobId, "influence.npy");

    /// <summary>The settings of the score job of the same id (dense float64 influence).</summary>
    protected abstract ScoreSettings ScoreSettings { get; }
    private ScoreJob? score;
    public ScoreJob Score => score ??= new(Store, JobId, ScoreSettings) { AllowLocalFiles = AllowLocalFiles };

    protected static string SettingsKeyOf(string jobId, string folder) => $"{JobKeys.Prefix(jobId)}/{folder}/settings.json";

    /// <summary>Records the settings (a resumed job must bring the same); every worker reads them.</summary>
    public void CheckSettings() => SettingsJson.Claim(Store, SettingsKey, Settings, JobId);

    public TPlan? LoadPlan()
    {
        if (!Store.Exists(PlanKey)) return null;
        using var s = Store.OpenRead(PlanKey);
        return JsonSerializer.Deserialize<TPlan>(s, SettingsJson.Options) ?? throw new InvalidDataException($"{PlanKey} is empty");
    }

    protected TPlan SavePlan(TPlan plan)
    {
        Store.Write(PlanKey, s => JsonSerializer.Serialize(s, plan, SettingsJson.Options));
        return plan;
    }

    public bool IsDone(int unitId) => Store.Exists(UnitKey(unitId));

    /// <summary>A number as the rows write it: round-trip precision, invariant culture.</summary>
    protected static string F(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Rows as CSV (UTF-8, '\n' line ends) under a header line.</summary>
    protected static void WriteCsv<TRow>(Stream stream, string header, IEnumerable<TRow> rows, Func<TRow, string> format)
    {
        using var w = new StreamWriter(stream, new System.Text.UTF8Encoding(false), 1 << 16, leaveOpen: true);
        w.WriteLine(header);
        foreach (var r in rows) w.Write(format(r) + "\n");
    }

    /// <summary>Rows read back under their header, each line parsed or refused with its line number (the store is untrusted).</summary>
    /// <param name="parse">The row of a line's fields, or null when they are not one.</param>
    protected static IReadOnlyList<TRow> ReadCsv<TRow>(Stream stream, string source, string header, Func<string[], TRow?> parse) where TRow : class
    {
        using var reader = new StreamReader(stream, leaveOpen: true);
        if (reader.ReadLine() != header) throw new InvalidDataException($"{source}: the header is not '{header}'");
        var rows = new List<TRow>();
        string? line;
        int number = 1;
        while ((line = reader.ReadLine()) is not null)
        {
            number++;
            rows.Add(parse(line.Split(',')) ?? throw new InvalidDataException($"{source}, line {number}: not a row of {header}"));
        }
        return rows;
    }

    /// <summary>A dense influence matrix from a score job's influence.npy ([rows][columns], float64).</summary>
    public double[][] ReadMatrix(string key, int rows, int columns)
    {
        using var s = Store.OpenRead(key);
        return Npy.ReadMatrix(s, $"artifact '{key}'", rows, columns);
    }
}
