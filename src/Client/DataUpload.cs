using System.Security.Cryptography;
using Influence.Abstractions;
using Influence.Core.Data;
using Influence.Core.Jobs;
using Influence.Core.Storage;

namespace Influence.Client;

/// <summary>
/// Silos of a real cluster do not see the client's files: before a job is submitted to one, its
/// dataset files are put into the artifact store under their content hash
/// (datasets/HASH/NAME, so the same file is uploaded once) and the request names them "store:KEY".
/// </summary>
public sealed class DataUpload(IArtifactStore store)
{
    private readonly Dictionary<string, string> uploaded = new(StringComparer.Ordinal);

    public ScoreSettings Apply(ScoreSettings r) => r with { Train = Apply(r.Train), Test = Apply(r.Test), Checkpoint = r.Checkpoint is null ? null : Put(r.Checkpoint), Weights = r.Weights is null ? null : Put(r.Weights) };

    public LooJobRequest Apply(LooJobRequest r) => r with { Settings = r.Settings with { Score = Apply(r.Settings.Score), Remove = ApplyToRemoval(r.Settings.Remove) } };

    /// <summary>file:PATH parts of a removal set (a '+' union) name the uploaded file instead.</summary>
    private string ApplyToRemoval(string remove) => string.Join("+", remove.Split('+').Select(part =>
        part.Trim().StartsWith("file:", StringComparison.Ordinal) ? "file:" + Put(Path.GetFullPath(part.Trim()["file:".Length..])) : part));

    public FadingJobRequest Apply(FadingJobRequest r) => r with { Settings = r.Settings with { Score = Apply(r.Settings.Score), Remove = ApplyToRemoval(r.Settings.Remove) } };

    public CorrectJobRequest Apply(CorrectJobRequest r) => r with { Settings = r.Settings with { Score = Apply(r.Settings.Score) } };

    public StudyJobRequest Apply(StudyJobRequest r) => r with { Points = r.Points.Select(p => p with { Study = Apply(p.Study) }).ToArray() };

    private DatasetSpec Apply(DatasetSpec s)
    {
        // The silo cannot find an IDX labels file by its name next to the images once both are in the store.
        var labels = s.LabelsPath ?? (DatasetSpec.IsIdx(s.Path) ? DatasetSpec.GuessLabelsPath(s.Path) : null);
        return s with { Path = Put(s.Path), LabelsPath = labels is null ? null : Put(labels) };
    }

    private string Put(string path)
    {
        if (StoredFiles.IsStored(path)) return path;
        if (uploaded.TryGetValue(path, out var reference)) return reference;
        string hash;
        using (var f = File.OpenRead(path)) hash = Convert.ToHexStringLower(SHA256.HashData(f))[..16];
        // The file's name, made a valid key segment (the hash keeps different files apart).
        var name = new string(Path.GetFileName(path).Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '_').ToArray());
        if (name.Length > 100) name = name[^100..];
        if (name.Trim('.').Length == 0) name = "data";
        var key = $"datasets/{hash}/{name}";
        if (!store.Exists(key))
            store.Write(key, target => { using var source = File.OpenRead(path); source.CopyTo(target); });
        return uploaded[path] = StoredFiles.Reference(key);
    }
}
