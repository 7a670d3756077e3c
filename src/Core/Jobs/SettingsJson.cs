using System.Text.Json;
using System.Text.Json.Serialization;

namespace Influence.Core.Jobs;

/// <summary>
/// The one JSON form of a job's settings: on the wire between client and silos (Orleans carries
/// <see cref="ScoreSettings"/> and <see cref="Loo.LooSettings"/> with it), in the store
/// (jobs/ID/settings.json, read by every shard and worker), and in summary.json. Names are the
/// command line's flags in snake_case (--arnoldi-iterations is arnoldi_iterations), enums are their
/// command-line words (--curvature ggn is "ggn"), and an unknown field is an error, not ignored.
/// </summary>
public static class SettingsJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The same naming for the job's own outputs (summaries read back by the report, the study table, the CLI): indented, and tolerant of fields it does not know (a later version's).</summary>
    public static readonly JsonSerializerOptions Outputs = new(Options)
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
        WriteIndented = true,
    };

    /// <summary>The settings types Orleans serialises with <see cref="Options"/>.</summary>
    public static bool IsSettingsType(Type type) => type == typeof(ScoreSettings) || type == typeof(Loo.LooSettings) || type == typeof(Correction.CorrectSettings) || type == typeof(Fading.FadingSettings);

    public static string Serialize<T>(T settings) => JsonSerializer.Serialize(settings, Options);

    /// <summary>Settings read back from the store; InvalidDataException naming <paramref name="source"/> when they do not parse.</summary>
    public static T Deserialize<T>(string json, string source) => Read(() => JsonSerializer.Deserialize<T>(json, Options), source);

    /// <summary>A job's output (a summary) read back; InvalidDataException naming <paramref name="source"/> when it does not parse.</summary>
    public static T ReadOutput<T>(Stream stream, string source) => Read(() => JsonSerializer.Deserialize<T>(stream, Outputs), source);

    private static T Read<T>(Func<T?> parse, string source)
    {
        try { return parse() ?? throw new InvalidDataException($"{source} is empty"); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: {Safety.Echo.Cap(e.Message, 200)}"); }
    }

    /// <summary>
    /// Records a job's settings under <paramref name="key"/> on its first start; on a later start (a
    /// resume, or the same id sent again) insists they are the same, since every finished step was
    /// computed under them. ArgumentException otherwise.
    /// </summary>
    public static void Claim<T>(Storage.IArtifactStore store, string key, T settings, string jobId)
    {
        var json = Serialize(settings);
        if (store.Exists(key))
        {
            var before = ReadText(store, key);
            if (before != json)
                throw new ArgumentException($"job {jobId} was started with other settings; resume it with the same options (stored: {Safety.Echo.Cap(before, 2000)})");
            return;
        }
        store.Write(key, s => { using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), 4096, leaveOpen: true); w.Write(json); });
    }

    /// <summary>The settings a job's coordinator recorded (<see cref="Claim"/>).</summary>
    public static T Load<T>(Storage.IArtifactStore store, string key) => Deserialize<T>(ReadText(store, key), key);

    private static string ReadText(Storage.IArtifactStore store, string key)
    {
        using var s = store.OpenRead(key);
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>The command-line word of an enum value ("ggn" for <see cref="Hessians.Curvature.GaussNewton"/>).</summary>
    public static string Word<T>(T value) where T : struct, Enum => JsonSerializer.Serialize(value, Options).Trim('"');

    /// <summary>Every word an enum accepts, in declaration order.</summary>
    public static IReadOnlyList<string> Words<T>() where T : struct, Enum => Enum.GetValues<T>().Select(Word).ToArray();

    /// <summary>The enum value of a command-line word; ArgumentException naming the setting and the choices otherwise.</summary>
    public static T Parse<T>(string text, string setting) where T : struct, Enum
    {
        foreach (var value in Enum.GetValues<T>())
            if (string.Equals(Word(value), text.Trim(), StringComparison.OrdinalIgnoreCase)) return value;
        throw new ArgumentException($"{setting} must be {Choices(Words<T>())}, not '{Safety.Echo.Cap(text)}'");
    }

    /// <summary>"a, b or c".</summary>
    public static string Choices(IReadOnlyList<string> words) =>
        words.Count == 1 ? words[0] : $"{string.Join(", ", words.Take(words.Count - 1))} or {words[^1]}";
}
