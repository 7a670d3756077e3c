using System.Text.Json;
using Influence.Core.Safety;
using Influence.Core.Storage;

namespace Influence.Client;

/// <summary>A job finished, but its outputs cannot be copied into --out (missing from the store, or listed under names that are not plain file names).</summary>
public sealed class JobOutputException(string message) : Exception(message);

/// <summary>
/// The --out folder of a command. Checked before any job runs (a file, a device or an unwritable
/// place exits 2 at once), and claimed with a manifest (<see cref="ManifestName"/>) that lists
/// every file the run writes there. A folder that already holds results is refused unless
/// --overwrite is given; then the files of the earlier run are removed first, so that no stale
/// file of another kind of job stays beside the new ones. Files are only ever written under
/// plain names (no '/', no '..'), each through a temporary name unique to the write.
/// </summary>
public sealed class OutputFolder
{
    public const string ManifestName = ".influence-outputs.json";

    private readonly List<string> files = [];

    private OutputFolder(string path, string command)
    {
        FullPath = path;
        Command = command;
    }

    public string FullPath { get; }
    private string Command { get; }

    /// <summary>
    /// Checks <paramref name="path"/> and claims it for <paramref name="command"/>. Throws
    /// <see cref="ArgumentException"/> (exit 2) when it cannot be used: a file, not writable, or
    /// holding results without <paramref name="overwrite"/>.
    /// </summary>
    public static OutputFolder Prepare(string path, bool overwrite, string command)
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ArgumentException($"--out '{Echo.Cap(path)}' is not a usable path: {e.Message}");
        }
        if (File.Exists(full)) throw new ArgumentException($"--out {Echo.Cap(full)} is a file, not a folder");
        var manifest = Path.Combine(full, ManifestName);
        if (Directory.Exists(full))
        {
            // Claimed by an earlier run that wrote nothing (cancelled, interrupted, failed): free to reuse,
            // so that `--resume JOB --out SAME` works.
            var earlier = File.Exists(manifest) ? ReadManifest(manifest) : null;
            bool hasResults = earlier is { Files.Length: > 0 };
            bool empty = !Directory.EnumerateFileSystemEntries(full).Any(e => earlier is null || Path.GetFileName(e) != ManifestName);
            if (hasResults && !overwrite)
                throw new ArgumentException($"--out {Echo.Cap(full)} holds the results of an earlier run (influence {Echo.Cap(earlier!.Command, 40)}, {earlier.Files.Length} files, {earlier.WrittenUtc:yyyy-MM-dd HH:mm} UTC): give --overwrite to replace them, or choose another folder");
            if (!empty && !hasResults && !overwrite)
                throw new ArgumentException($"--out {Echo.Cap(full)} is not empty and holds no earlier results of this program: choose an empty or new folder (--overwrite writes beside its files)");
        }
        try
        {
            Directory.CreateDirectory(full);
            // Writable? Found now, not after the job has run.
            var probe = Path.Combine(full, $".influence-probe-{Guid.NewGuid():N}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"--out {Echo.Cap(full)}: cannot write there ({e.Message})");
        }
        var folder = new OutputFolder(full, command);
        try
        {
            if (File.Exists(manifest)) folder.RemoveEarlierResults(manifest); // only with --overwrite, or when it lists nothing
            folder.SaveManifest();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"--out {Echo.Cap(full)}: cannot replace the earlier results ({e.Message})");
        }
        return folder;
    }

    /// <summary>A name this folder may hold: one plain segment (no '/', no '..'), and not the manifest.</summary>
    private static bool IsOutputName(string? name) => StoreKeys.IsPlainFileName(name) && name != ManifestName;

    /// <summary>The path of the plain file <paramref name="name"/> in this folder, recorded as written by this run.</summary>
    public string PathOf(string name)
    {
        if (!IsOutputName(name)) throw new ArgumentException($"'{Echo.Cap(name)}' is not a plain output file name");
        if (!files.Contains(name))
        {
            files.Add(name);
            SaveManifest();
        }
        return Path.Combine(FullPath, name);
    }

    /// <summary>
    /// A subfolder (compare-methods: one per method), created by this run and recorded so that a
    /// later --overwrite removes it. One that is already there is not this run's (an earlier run's
    /// were removed by --overwrite): it is refused rather than claimed, so no user folder is ever
    /// recorded and later deleted. Call before any job runs (ArgumentException: exit 2).
    /// </summary>
    public OutputFolder Sub(string name)
    {
        if (!IsOutputName(name)) throw new ArgumentException($"'{Echo.Cap(name)}' is not a plain output folder name");
        var path = Path.Combine(FullPath, name);
        if (File.Exists(path) || Directory.Exists(path))
            throw new ArgumentException($"--out {Echo.Cap(FullPath)} already has '{name}', which is not from an earlier run of this program: choose another folder");
        var sub = Prepare(path, overwrite: false, Command);
        PathOf(name); // recorded only once created
        return sub;
    }

    /// <summary>
    /// Writes a file through a temporary name unique to this write, then renames it into place. A
    /// table (NAME.csv) gets its Parquet twin NAME.parquet beside it, with typed columns (pandas.read_parquet).
    /// </summary>
    public void Write(string name, Action<Stream> write)
    {
        WriteOne(name, write);
        if (name.EndsWith(".csv", StringComparison.Ordinal))
            WriteOne(name[..^".csv".Length] + ".parquet", target => ParquetTables.FromCsv(Path.Combine(FullPath, name), target));
    }

    private void WriteOne(string name, Action<Stream> write)
    {
        var target = PathOf(name);
        var temp = Path.Combine(FullPath, $".{name}.partial-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write)) write(stream);
            File.Move(temp, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public void WriteText(string name, string text) => Write(name, s => { using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false)); w.Write(text); });

    /// <summary>
    /// Copies a finished job's outputs from the store. The names come from the store (the job's
    /// outputs.json), which is not trusted: every one must be a plain file name, or nothing is copied.
    /// </summary>
    public IReadOnlyList<string> Export(IArtifactStore store, string jobId, IReadOnlyList<string> defaultFiles, string required)
    {
        var prefix = JobKeys.Prefix(jobId);
        IReadOnlyList<string> names = defaultFiles;
        var manifestKey = JobKeys.Manifest(jobId);
        if (store.Exists(manifestKey))
        {
            try
            {
                using var manifest = store.OpenRead(manifestKey);
                names = JsonSerializer.Deserialize<string[]>(manifest) ?? [];
            }
            catch (JsonException e) { throw new JobOutputException($"job {jobId}: its outputs.json in the store is not a list of file names ({Echo.Cap(e.Message)}); nothing was exported"); }
        }
        foreach (var name in names)
            if (!IsOutputName(name))
                throw new JobOutputException($"job {jobId}: its outputs.json lists '{Echo.Cap(name ?? "null")}', which is not a plain file name; nothing was exported (someone with write access to the store may have changed it)");
        if (names.Count > 1000) throw new JobOutputException($"job {jobId}: its outputs.json lists {names.Count} files; at most 1000 are exported");
        if (!store.Exists($"{prefix}/{required}"))
            throw new JobOutputException($"job {jobId} completed and its outputs are under '{prefix}' in the silos' artifact store, but this client's --store ({Secrets.Redact(store.Describe(prefix))}) does not hold its {required}: give --store the silos' store (their Store settings) and export again with `influence job export {jobId}`");
        var written = new List<string>();
        foreach (var name in names.Distinct(StringComparer.Ordinal))
        {
            var key = $"{prefix}/{name}";
            if (!store.Exists(key)) continue;
            Write(name, target => { using var source = store.OpenRead(key); source.CopyTo(target); });
            written.Add(name);
        }
        return written;
    }

    private void RemoveEarlierResults(string manifest)
    {
        foreach (var name in ReadManifest(manifest).Files)
        {
            // Plain names only: a manifest edited to name "../x" removes nothing outside this folder.
            if (!IsOutputName(name)) continue;
            var path = Path.Combine(FullPath, name);
            if (File.Exists(path)) File.Delete(path);
            else if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        }
    }

    private void SaveManifest()
    {
        var json = JsonSerializer.Serialize(new Manifest(Command, DateTime.UtcNow, [.. files]), ManifestJson);
        var temp = Path.Combine(FullPath, $"{ManifestName}.partial-{Guid.NewGuid():N}");
        File.WriteAllText(temp, json);
        File.Move(temp, Path.Combine(FullPath, ManifestName), overwrite: true);
    }

    /// <summary>The manifest of an earlier run; an unreadable or malformed one lists nothing (so nothing is removed).</summary>
    private static Manifest ReadManifest(string path)
    {
        try
        {
            var m = JsonSerializer.Deserialize<Manifest>(File.ReadAllText(path), ManifestJson);
            return new Manifest(m?.Command ?? "?", m?.WrittenUtc ?? default, m?.Files?.Where(f => f is not null).ToArray() ?? []);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException) { return new Manifest("?", default, []); }
    }

    private static readonly JsonSerializerOptions ManifestJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    private sealed record Manifest(string Command, DateTime WrittenUtc, string[] Files);
}
