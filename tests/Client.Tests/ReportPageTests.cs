using System.Diagnostics;
using System.Text.RegularExpressions;
using SkiaSharp;

namespace Influence.Client.Tests;

/// <summary>
/// report.html of every command, opened in a real browser: headless Chromium (Debian's
/// `chromium`, installed by scripts/install-test-tools.sh) dumps the page's DOM and renders it to
/// a PNG; the DOM must hold the expected pictures and tables, and the screenshot must not be blank.
/// </summary>
public class ReportPageTests
{
    private static string Data(string name) => Path.Combine(CommandLineTests.Data, name);

    private static (string Dom, SKBitmap Screenshot) Render(string html)
    {
        string browser = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("Chromium is not installed: run scripts/install-test-tools.sh (apt package chromium)");
        var shot = Path.Combine(Path.GetDirectoryName(html)!, "screenshot.png");
        string Browse(params string[] args)
        {
            var psi = new ProcessStartInfo(browser) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1200,1600" }.Concat(args)) psi.ArgumentList.Add(a);
            psi.ArgumentList.Add(new Uri(html).AbsoluteUri);
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            _ = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(1))) { p.Kill(true); throw new TimeoutException($"chromium {string.Join(' ', args)}"); }
            Assert.Equal(0, p.ExitCode);
            return stdout.Result;
        }
        var dom = Browse("--dump-dom");
        Browse($"--screenshot={shot}");
        return (dom, SKBitmap.Decode(shot) ?? throw new InvalidDataException($"{shot} is not an image"));
    }

    /// <summary>Not blank: a fair share of the page is not the background, in more than a few colours.</summary>
    private static void AssertNotBlank(SKBitmap shot, string what)
    {
        long inked = 0, total = 0;
        var colours = new HashSet<uint>();
        for (int y = 0; y < shot.Height; y += 2)
            for (int x = 0; x < shot.Width; x += 2)
            {
                var c = shot.GetPixel(x, y);
                total++;
                if (c.Red < 240 || c.Green < 240 || c.Blue < 240) inked++;
                if (colours.Count < 1000) colours.Add((uint)c);
            }
        Assert.True(inked > total / 100, $"{what}: only {inked} of {total} sampled pixels are not background");
        Assert.True(colours.Count > 20, $"{what}: {colours.Count} colours");
    }

    private static int Count(string dom, string pattern) => Regex.Matches(dom, pattern).Count;

    private static string RunOk(string outDir, params string[] args)
    {
        var (exit, stdout, stderr) = CommandLineTests.Run([.. args, "--out", outDir]);
        Assert.True(exit == 0, $"{string.Join(' ', args)}: {stdout}{stderr}");
        var html = Path.Combine(outDir, "report.html");
        Assert.True(File.Exists(html), $"{args[0]} wrote no report.html");
        return html;
    }

    [Fact]
    public void A_score_job_on_images_shows_each_test_image_beside_its_proponents_and_opponents()
    {
        var html = RunOk(Path.Combine(Directory.CreateTempSubdirectory("influence-report").FullName, "score"),
            "score", "--train", Data("digits_train.csv"), "--test", Data("digits_test.csv"), "--model", "logreg", "--test-indices", "0-2", "--top-k", "4");
        var (dom, shot) = Render(html);
        foreach (var t in new[] { 0, 1, 2 }) Assert.Contains($"id=\"test-{t}\"", dom);
        // Per test point its image and 4 + 4 training images (the page shows up to 5 a side), then 16 high self-influence rows.
        Assert.Equal(3 * (1 + 4 + 4) + 16, Count(dom, "<img class=\"thumb\" alt=\"[a-z]+ [0-9]+\" src=\"data:image/png;base64,"));
        Assert.Contains("id=\"self-influence\"", dom);
        Assert.Contains("label ", dom);
        AssertNotBlank(shot, "score report");
    }

    [Fact]
    public void Every_other_command_writes_a_report_page_that_renders_with_its_tables_and_plots()
    {
        var root = Directory.CreateTempSubdirectory("influence-reports").FullName;
        var iris = new[] { "--train", Data("iris_train.csv"), "--test", Data("iris_test.csv") };
        var digits = new[] { "--train", Data("digits_train.csv"), "--test", Data("digits_test.csv") };
        var labels = File.ReadLines(Data("iris_train.csv")).Skip(1).Select(l => int.Parse(l.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var noisy = Path.Combine(root, "noisy.csv");
        File.WriteAllLines(noisy, new[] { "index,label_clean,label_noisy" }.Concat(labels.Select((y, i) => $"{i},{y},{(i % 10 == 3 ? (y + 1) % 3 : y)}")));

        var runs = new (string Name, string[] Args, string[] Expected)[]
        {
            // Rows that are not images: feature rows instead of pictures, and the LOO plots embedded.
            ("loo", ["loo", .. iris, "--model", "logreg", "--test-indices", "0-1", "--remove", "random:8,0"], ["class=\"features\"", "<table", "src=\"data:image/png;base64,", "id=\"test-0\""]),
            ("study", ["study", Path.Combine(AppContext.BaseDirectory, "studies", "smoke-iris.yaml")], ["<table", "<th>"]),
            ("mislabel", ["mislabel", .. iris, "--labels", noisy, "--model", "logreg", "--l2", "0.01", "--test-indices", "0"], ["id=\"self-influence\"", "<table", "recall"]),
            ("compare", ["compare-methods", .. iris, "--model", "logreg", "--test-indices", "0-1", "--methods", "cg,grad-dot"], ["<table", "grad-dot"]),
            ("fading", ["fading", .. digits, "--model", "logreg", "--test-indices", "0-2", "--remove", "random:3,0", "--steps", "20"], ["<table", "src=\"data:image/png;base64,", "<img class=\"thumb\""]),
            ("correct", ["correct", .. digits, "--model", "logreg", "--test-indices", "0-99", "--k", "1,5", "--steps", "1", "--selections", "influence,random", "--selection-seeds", "1"], ["<table", "<img class=\"thumb\""]),
        };
        foreach (var (name, args, expected) in runs)
        {
            var html = RunOk(Path.Combine(root, name), args);
            var (dom, shot) = Render(html);
            foreach (var e in expected) Assert.True(dom.Contains(e, StringComparison.Ordinal), $"{name}: report.html has no {e}");
            AssertNotBlank(shot, name);
        }
    }
}
