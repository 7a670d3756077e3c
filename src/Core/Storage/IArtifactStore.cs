namespace Influence.Core.Storage;

/// <summary>
/// Datasets, checkpoints, score blocks and reports, addressed by '/'-separated keys. Writes are
/// atomic: a reader sees either nothing or the whole artifact, never a half-written one.
/// Calls are synchronous: they run on compute threads, not on the grain scheduler.
/// </summary>
public interface IArtifactStore
{
    bool Exists(string key);
    Stream OpenRead(string key);
    void Write(string key, Action<Stream> write);
    void DeletePrefix(string prefix);
    /// <summary>Where the key lives, for messages (a path or a URL).</summary>
    string Describe(string key);
}

/// <summary>The local filesystem (the embedded mode): write to a temporary name, then rename.</summary>
public sealed class LocalArtifactStore : IArtifactStore
{
    public LocalArtifactStore(string root)
    {
        Root = Path.GetFullPath(root);
        Directory.CreateDirectory(Root);
    }

    public string Root { get; }

    /// <summary>$INFLUENCE_STORE, else ~/.cache/influence/store.</summary>
    public static string DefaultRoot() =>
        Environment.GetEnvironmentVariable("INFLUENCE_STORE") is { Length: > 0 } env
            ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "influence", "store");

    public bool Exists(string key) => File.Exists(PathOf(key));

    public Stream OpenRead(string key)
    {
        var path = PathOf(key);
        if (!File.Exists(path)) throw new FileNotFoundException($"artifact '{key}' not found in {Root}", path);
        // A link inside the store could point anywhere on this machine: artifacts are plain files.
        if (new FileInfo(path).LinkTarget is not null) throw new IOException($"artifact '{key}' in {Root} is a symbolic link; the store holds plain files only");
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
    }

    public void Write(string key, Action<Stream> write)
    {
        var path = PathOf(key);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = $"{path}.partial-{Guid.NewGuid():N}";
        try
        {
            if (DirectFileWriter.TryCreate(temp) is { } direct)
            {
                using (direct)
                {
                    write(direct);
                    direct.Complete();
                }
            }
            else
            {
                using var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
                write(stream);
                stream.Flush(true);
            }
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public void DeletePrefix(string prefix)
    {
        var path = PathOf(prefix);
        if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        else if (File.Exists(path)) File.Delete(path);
    }

    public string Describe(string key) => PathOf(key);

    /// <summary>The file that holds a key (checked first: see <see cref="Safety.StoreKeys"/>).</summary>
    public string PathOf(string key) => Path.Combine(Root, Safety.StoreKeys.Check(key).Replace('/', Path.DirectorySeparatorChar));
}
