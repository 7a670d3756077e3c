namespace Influence.Core.Data;

/// <summary>Where a dataset comes from and how its features are scaled.</summary>
/// <param name="Path">A CSV file, or an IDX image file (then <paramref name="LabelsPath"/> names its labels).</param>
/// <param name="LabelsPath">IDX labels file; when null for an IDX image file, the MNIST naming ("images-idx3" to "labels-idx1") is tried.</param>
/// <param name="FeatureScale">Features are divided by this (255 for raw pixels).</param>
public sealed record DatasetSpec(string Path, string? LabelsPath = null, double FeatureScale = 1.0)
{
    public Dataset Load()
    {
        if (IsIdx(Path))
        {
            var labels = LabelsPath ?? GuessLabelsPath(Path)
                ?? throw new DataFormatException(Path, null, "this looks like an IDX image file; give its labels file too");
            return IdxDatasetReader.Read(Path, labels, FeatureScale);
        }
        return CsvDatasetReader.Read(Path, FeatureScale);
    }

    /// <summary>This spec with files named "store:KEY" replaced by local copies of those artifacts.</summary>
    public DatasetSpec Resolve(Storage.IArtifactStore store) => this with
    {
        Path = Storage.StoredFiles.LocalPath(store, Path),
        LabelsPath = LabelsPath is null ? null : Storage.StoredFiles.LocalPath(store, LabelsPath),
    };

    public static bool IsIdx(string path) =>
        path.Contains("idx", StringComparison.OrdinalIgnoreCase) && !path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase);

    /// <summary>The labels file next to an IDX image file by the MNIST naming, if it exists.</summary>
    public static string? GuessLabelsPath(string imagesPath)
    {
        var name = System.IO.Path.GetFileName(imagesPath);
        if (!name.Contains("images-idx3", StringComparison.Ordinal)) return null;
        var candidate = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(imagesPath) ?? ".", name.Replace("images-idx3", "labels-idx1", StringComparison.Ordinal));
        return File.Exists(candidate) ? candidate : null;
    }
}

/// <summary>A training set and a test set that fit together, and the number of classes.</summary>
public sealed record TrainTestData(Dataset Train, Dataset Test, int ClassCount)
{
    /// <summary>Loads both sets and checks that they fit: same feature count, test labels among the training classes.</summary>
    public static TrainTestData Load(DatasetSpec train, DatasetSpec test)
    {
        var tr = train.Load();
        var te = test.Load();
        return Combine(tr, te);
    }

    public static TrainTestData Combine(Dataset train, Dataset test)
    {
        if (train.FeatureCount != test.FeatureCount)
            throw new DataFormatException(test.Source, null, $"{test.FeatureCount} features per row, but the training set {train.Source} has {train.FeatureCount}");
        int classes = train.MaxLabel + 1;
        if (classes < 2) throw new DataFormatException(train.Source, null, "the training labels have a single class; at least two are needed");
        for (int i = 0; i < test.Count; i++)
            if (test.Labels[i] >= classes)
                throw new DataFormatException(test.Source, $"row {i}", $"label {test.Labels[i]} never occurs in the training set (classes 0..{classes - 1})");
        return new TrainTestData(train, test, classes);
    }
}
