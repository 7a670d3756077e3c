using Influence.Core.Safety;

namespace Influence.Core.Storage;

/// <summary>
/// Input files of a job (datasets, index files, checkpoints) named in its request: "store:KEY" for
/// an artifact, or a local path. A request is untrusted: a silo of a cluster reads inputs only from
/// the artifact store, with the key checked before any filesystem access; local paths are for the
/// embedded mode, where the request comes from the same user on the same machine.
/// </summary>
public static class StoredFiles
{
    public const string Scheme = "store:";

    /// <summary>
    /// This process's copies of stored inputs: a fresh folder only this user can enter (0700), so
    /// that no other local user can plant a file where a copy is looked for.
    /// </summary>
    private static readonly Lazy<string> CacheRoot = new(() =>
    {
        var root = Directory.CreateTempSubdirectory("influence-datasets-").FullName;
        // Removed when the process exits (a killed process leaves it: it is private and named at random).
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { } };
        return root;
    });

    public static bool IsStored(string path) => path.StartsWith(Scheme, StringComparison.Ordinal);

    public static string Reference(string key) => Scheme + StoreKeys.Check(key);

    /// <summary>
    /// A local path for <paramref name="path"/>: itself when local files are allowed, or a local
    /// copy of the stored artifact. Throws <see cref="ArgumentException"/> for a local path where
    /// they are not, or a malformed key.
    /// </summary>
    public static string LocalPath(IArtifactStore store, string path, bool allowLocalFiles)
    {
        if (!IsStored(path))
        {
            if (!allowLocalFiles)
                throw new ArgumentException($"'{Echo.Cap(path)}' is a local path: silos of a cluster read inputs only from the artifact store (store:KEY; the client uploads its files there)");
            return path;
        }
        var key = StoreKeys.Check(path[Scheme.Length..]);
        var local = Path.Combine(CacheRoot.Value, key.Replace('/', Path.DirectorySeparatorChar));
        if (File.Exists(local)) return local; // downloaded already: no call to the store
        if (!store.Exists(key)) throw new FileNotFoundException($"'{Echo.Cap(key)}' is not in the artifact store ({Secrets.Redact(store.Describe(key))})", Echo.Cap(path));
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
