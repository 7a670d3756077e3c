namespace Influence.Core.Storage;

/// <summary>
/// Dataset files that live in the artifact store: a path "store:KEY" names the artifact KEY. A
/// silo reads such a file through a local copy (datasets are read whole, by readers that take a
/// path), downloaded once per process into a temporary folder and shared by every job.
/// </summary>
public static class StoredFiles
{
    public const string Scheme = "store:";

    public static bool IsStored(string path) => path.StartsWith(Scheme, StringComparison.Ordinal);

    public static string Reference(string key) => Scheme + key;

    /// <summary>A local path for <paramref name="path"/>: itself, or a local copy of the stored file.</summary>
    public static string LocalPath(IArtifactStore store, string path)
    {
        if (!IsStored(path)) return path;
        var key = path[Scheme.Length..];
        var local = Path.Combine(Path.GetTempPath(), $"influence-datasets-{Environment.ProcessId}", key.Replace('/', Path.DirectorySeparatorChar));
        if (File.Exists(local)) return local; // downloaded already: no call to the store
        if (!store.Exists(key)) throw new FileNotFoundException($"dataset '{key}' is not in the artifact store ({store.Describe(key)})", path);
        Directory.CreateDirectory(Path.GetDirectoryName(local)!);
        var temp = $"{local}.partial-{Guid.NewGuid():N}";
        try
        {
            using (var source = store.OpenRead(key))
            using (var target = File.Create(temp))
                source.CopyTo(target);
            File.Move(temp, local, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return local;
    }
}
