using Influence.Core.Data;

namespace Influence.Core.Tests;

/// <summary>Bundled datasets (data/ at the repository root) and small synthetic ones.</summary>
public static class TestData
{
    public static string RepoRoot { get; } = FindRoot();

    public static string DataFile(string name) => Path.Combine(RepoRoot, "data", name);

    public static TrainTestData Iris() => TrainTestData.Load(new DatasetSpec(DataFile("iris_train.csv")), new DatasetSpec(DataFile("iris_test.csv")));

    /// <summary>A seeded Gaussian-blob classification problem.</summary>
    public static Dataset Blobs(int n, int features, int classes, int seed, double spread = 1.5)
    {
        var rng = new Random(seed);
        var centers = new double[classes, features];
        for (int c = 0; c < classes; c++)
            for (int j = 0; j < features; j++) centers[c, j] = rng.NextDouble() * 2 - 1;
        var x = new double[n * features];
        var y = new int[n];
        for (int i = 0; i < n; i++)
        {
            y[i] = i % classes;
            for (int j = 0; j < features; j++)
            {
                double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
                x[i * features + j] = centers[y[i], j] * 2 + spread * g * 0.5;
            }
        }
        return new Dataset($"blobs(seed {seed})", x, y, features);
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Influence.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Influence.sln not found above " + AppContext.BaseDirectory);
    }
}
