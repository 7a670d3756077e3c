using System.Globalization;
using System.Text.RegularExpressions;

namespace Influence.Cluster.Tests;

/// <summary>Reading the CSV outputs of jobs, and the job ids clients print.</summary>
public static partial class JobOutputs
{
    /// <summary>loo.csv as (test, train, mode) → (predicted, actual); fails on a row recorded twice.</summary>
    public static Dictionary<(int Test, int Train, string Mode), (double Predicted, double Actual)> ReadLoo(string dir)
    {
        var lines = File.ReadAllLines(Path.Combine(dir, "loo.csv"));
        var header = lines[0].Split(',');
        Assert.Equal(["test_index", "train_index", "predicted_delta", "loo_delta"], header.Take(4));
        var rows = new Dictionary<(int, int, string), (double, double)>();
        foreach (var line in lines.Skip(1))
        {
            var f = line.Split(',');
            var key = (int.Parse(f[0], CultureInfo.InvariantCulture), int.Parse(f[1], CultureInfo.InvariantCulture), f.Length > 4 ? f[4] : "");
            Assert.True(rows.TryAdd(key, (double.Parse(f[2], CultureInfo.InvariantCulture), double.Parse(f[3], CultureInfo.InvariantCulture))), $"{key} recorded twice in {dir}");
        }
        return rows;
    }

    /// <summary>influence.csv as (test, train) → influence.</summary>
    public static Dictionary<(int Test, int Train), double> ReadInfluence(string dir) =>
        File.ReadLines(Path.Combine(dir, "influence.csv")).Skip(1).Select(l => l.Split(','))
            .ToDictionary(f => (int.Parse(f[0], CultureInfo.InvariantCulture), int.Parse(f[1], CultureInfo.InvariantCulture)), f => double.Parse(f[2], CultureInfo.InvariantCulture));

    /// <summary>Every key of <paramref name="expected"/> in <paramref name="actual"/> and no other, values equal within <paramref name="tolerance"/> of the largest magnitude.</summary>
    public static void AssertSame<TKey>(IReadOnlyDictionary<TKey, double> expected, IReadOnlyDictionary<TKey, double> actual, double tolerance, string what) where TKey : notnull
    {
        Assert.Equal(expected.Count, actual.Count);
        double scale = expected.Values.Max(Math.Abs), worst = 0;
        TKey? worstKey = default;
        foreach (var (key, e) in expected)
        {
            Assert.True(actual.TryGetValue(key, out var a), $"{what}: {key} missing");
            if (Math.Abs(a - e) > worst) (worst, worstKey) = (Math.Abs(a - e), key);
        }
        int over = expected.Count(kv => Math.Abs(actual[kv.Key] - kv.Value) > tolerance * scale);
        Assert.True(worst <= tolerance * scale, $"{what}: largest difference {worst:E2} at {worstKey} against values up to {scale:E2}; {over} of {expected.Count} beyond {tolerance:E0}");
    }

    /// <summary>The job id a client printed ("Job loo-... on the ..."), waiting for it to appear.</summary>
    public static async Task<string> JobIdAsync(ChildProcess client, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (JobLine().Match(client.Output()) is { Success: true } m) return m.Groups[1].Value;
            if (client.HasExited) break;
            await Task.Delay(100);
        }
        throw new TimeoutException($"{client.Name} printed no job id:\n{client.Tail()}");
    }

    [GeneratedRegex(@"^(?:Job|Study) (\S+) on the ", RegexOptions.Multiline)]
    private static partial Regex JobLine();
}
