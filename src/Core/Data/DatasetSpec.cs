namespace Influence.Core.Data;

/// <summary>Where a dataset comes from and how its features are scaled.</summary>
/// <param name="Path">A CSV file, a Parquet table (a "label" column and feature columns), or a features array whose labels <paramref name="LabelsPath"/> gives: IDX images or .npy.</param>
/// <param name="LabelsPath">IDX or .npy labels; when null for an IDX image file, the MNIST naming ("images-idx3" to "labels-idx1") is tried.</param>
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
        if (ArrayDatasetReader.IsNpy(Path))
            return ArrayDatasetReader.ReadNpy(Path, LabelsPath ?? throw new DataFormatException(Path, null, "a .npy feature array needs its labels: a .npy vector of class indices (--train-labels / --test-labels)"), FeatureScale);
        if (ArrayDatasetReader.IsParquet(Path)) return ArrayDatasetReader.ReadParquet(Path, FeatureScale);
        return CsvDatasetReader.Read(Path, FeatureScale);
    }

    /// <summary>This spec with files named "store:KEY" replaced by local copies of those artifacts (local paths only where <paramref name="allowLocalFiles"/>).</summary>
    public DatasetSpec Resolve(Storage.IArtifactStore store, bool allowLocalFiles) => this with
    {
        Path = Storage.StoredFiles.LocalPath(store, Path, allowLocalFiles),
        LabelsPath = LabelsPath is null ? null : Storage.StoredFiles.LocalPath(store, LabelsPath, allowLocalFiles),
    };

    /// <summary>
    /// Features per row and the class count K (the largest label + 1) from the file's header and
    /// labels alone (a CSV's first line and first column; an IDX header and labels file), for checks
    /// made before the features are loaded. Null for a stored artifact or a file that cannot be read
    /// this way; Classes null when the labels cannot be, or are ones <see cref="TrainTestData.Combine"/>
    /// refuses (the job then says what is wrong, with the row).
    /// </summary>
    public (int Features, int? Classes)? PeekShape()
    {
        if (Storage.StoredFiles.IsStored(Path) || !File.Exists(Path)) return null;
        try
        {
            int features;
            var present = new HashSet<int>();
            bool readable = true;
            if (ArrayDatasetReader.IsNpy(Path) || ArrayDatasetReader.IsParquet(Path))
            {
                // The features from the header; the labels are checked when the job loads the data.
                int? count = ArrayDatasetReader.IsNpy(Path) ? ArrayDatasetReader.NpyFeatureCount(Path) : null;
                return count is { } c ? (c, null) : null;
            }
            if (IsIdx(Path))
            {
                features = IdxDatasetReader.FeatureCount(Path);
                if ((LabelsPath ?? GuessLabelsPath(Path)) is { } labels && File.Exists(labels)) present.UnionWith(IdxDatasetReader.Labels(labels));
            }
            else
            {
                using var reader = new StreamReader(Path);
                if (reader.ReadLine() is not { } header) return null;
                features = header.Split(',').Length - 1;
                for (string? line; readable && (line = reader.ReadLine()) is not null;)
                {
                    if (line.Length == 0) continue;
                    var comma = line.IndexOf(',');
                    readable = int.TryParse(comma < 0 ? line : line.AsSpan(0, comma), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int label) && label >= 0;
                    present.Add(label);
                }
            }
            int? classes = readable && present.Count >= 2 && present.Max() + 1 <= TrainTestData.MaxClassesFor(present.Count) ? present.Max() + 1 : null;
            return (features, classes);
        }
        catch (Exception e) when (e is IOException or DataFormatException or InvalidDataException or UnauthorizedAccessException) { return null; }
    }

    public static bool IsIdx(string path) =>
        path.Contains("idx", StringComparison.OrdinalIgnoreCase) && !path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase)
        && !ArrayDatasetReader.IsNpy(path) && !ArrayDatasetReader.IsParquet(path);

    /// <summary>The labels file next to an IDX image file by the MNIST naming, if it exists.</summary>
    public static string? GuessLabelsPath(string imagesPath)
    {
        var name = System.IO.Path.GetFileName(imagesPath);
        if (!name.Contains("images-idx3", StringComparison.Ordinal)) return null;
        var candidate = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(imagesPath) ?? ".", name.Replace("images-idx3", "labels-idx1", StringComparison.Ordinal));
        return File.Exists(candidate) ? candidate : null;
    }
}

/// <summary>A training set and a test set that fit together, the number of classes, and what looked wrong but not fatal (empty classes).</summary>
public sealed record TrainTestData(Dataset Train, Dataset Test, int ClassCount, IReadOnlyList<string> Warnings)
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
        // K = largest label + 1. Labels are class indices: a typo (7 among 0-2) or a stray id
        // (999999) would silently make a model with empty classes, or millions of outputs.
        int classes = train.MaxLabel + 1;
        var present = train.Labels.Distinct().Order().ToArray();
        if (present.Length < 2)
            throw new DataFormatException(train.Source, null, $"the training labels have a single class (every label is {(present.Length == 0 ? "missing" : present[0].ToString(System.Globalization.CultureInfo.InvariantCulture))}); at least two are needed");
        int largestRow = Array.IndexOf(train.Labels, classes - 1);
        if (classes > MaxClassesFor(present.Length))
            throw new DataFormatException(train.Source, $"row {largestRow}",
                string.Create(System.Globalization.CultureInfo.InvariantCulture, $"label {classes - 1} makes {classes:N0} classes, but only {present.Length} distinct labels occur ({Shown(present)}): labels must be class indices 0..K-1"));
        var warnings = new List<string>();
        var empty = Enumerable.Range(0, classes).Except(present).ToArray();
        if (empty.Length > 0)
            warnings.Add($"{train.Source}: {empty.Length} of {classes} classes have no training example ({Shown(empty)}); the largest label {classes - 1} is at row {largestRow}: check the labels");
        for (int i = 0; i < test.Count; i++)
            if (test.Labels[i] >= classes)
                throw new DataFormatException(test.Source, $"row {i}", $"label {test.Labels[i]} never occurs in the training set (classes 0..{classes - 1})");
        return new TrainTestData(train, test, classes, warnings);
    }

    /// <summary>The most classes K (the largest label + 1) accepted when <paramref name="distinct"/> labels occur: empty classes beyond that are a labelling error.</summary>
    public static int MaxClassesFor(int distinct) => Math.Max(2 * distinct, distinct + 10);

    private static string Shown(int[] labels) =>
        string.Join(", ", labels.Take(10)) + (labels.Length > 10 ? $", … ({labels.Length} in all)" : "");
}
