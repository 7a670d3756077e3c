using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Influence.Core.Data;
using Influence.Core.Models;
using Markdig;
using SkiaSharp;

namespace Influence.Reports;

/// <summary>A training or test row shown in report.html: its pixels (or features), label and the model's prediction.</summary>
public sealed record ShownRow(int Index, double[] Features, int Label, int Predicted);

/// <summary>One test point with its most helpful and most harmful training examples (topk.csv's rows).</summary>
public sealed record ExplainedTest(ShownRow Test, IReadOnlyList<(ShownRow Row, double Influence, double PredictedDelta)> Proponents,
    IReadOnlyList<(ShownRow Row, double Influence, double PredictedDelta)> Opponents);

/// <summary>What report.html shows of a score job: its test points explained, and the highest self-influence rows.</summary>
public sealed record Gallery(ImageShape? Image, IReadOnlyList<ExplainedTest> Tests, IReadOnlyList<(ShownRow Row, double SelfInfluence)> HighSelfInfluence);

/// <summary>
/// report.html: one self-contained page (images embedded as data URIs) that a browser opens from
/// disk. It holds the job's markdown reports (tables and plots) and, for jobs that score, the test
/// images beside the training images that helped and hurt them (feature rows where the rows are
/// not images).
/// </summary>
public static partial class HtmlReport
{
    /// <summary>Images larger than this are linked by name instead of embedded.</summary>
    public const long MaxEmbeddedBytes = 8 << 20;

    private static readonly MarkdownPipeline Markdown = new MarkdownPipelineBuilder().UsePipeTables().Build();

    /// <param name="folder">Where the markdown files and the PNG plots they link sit.</param>
    public static string Build(string title, string folder, IEnumerable<string> markdownFiles, Gallery? gallery)
    {
        var body = new StringBuilder();
        if (gallery is not null) body.Append(GalleryHtml(gallery));
        foreach (var name in markdownFiles)
        {
            var path = Path.Combine(folder, name);
            if (!File.Exists(path)) continue;
            body.Append($"<section class=\"markdown\" id=\"{Encode(Path.GetFileNameWithoutExtension(name))}\">");
            body.Append(EmbedImages(Markdig.Markdown.ToHtml(File.ReadAllText(path), Markdown), folder));
            body.Append("</section>\n");
        }
        return $$"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>{{Encode(title)}}</title>
            <style>
            body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
            table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
            th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
            th { background: #f0f0f0; }
            .explained { border-top: 2px solid #888; padding: 0.6em 0; }
            .row { display: inline-block; margin: 4px; text-align: center; font-size: 0.75em; vertical-align: top; }
            .row img { image-rendering: pixelated; border: 1px solid #999; display: block; margin: 0 auto 2px; }
            .helps { color: #1a7f37; } .harms { color: #b42318; } .wrong { color: #b42318; font-weight: bold; }
            .features td { font-family: monospace; }
            section.markdown img { max-width: 640px; }
            </style></head>
            <body><h1>{{Encode(title)}}</h1>
            {{body}}
            </body></html>
            """;
    }

    /// <summary>The test points with their proponents and opponents, then the highest self-influence rows.</summary>
    private static string GalleryHtml(Gallery g)
    {
        var html = new StringBuilder("<section id=\"explained\"><h2>Test points and the training examples that helped and hurt them</h2>\n");
        html.Append("<p>Helps: removing the example would raise the test loss (most negative influence). Harms: removing it would lower the test loss. Δ is the predicted change of the test loss if the example were removed.</p>\n");
        foreach (var t in g.Tests)
        {
            html.Append($"<div class=\"explained\" id=\"test-{t.Test.Index}\"><h3>Test point {t.Test.Index}</h3>");
            html.Append(Row(g.Image, t.Test, "test"));
            html.Append("<div><b class=\"helps\">helps</b> ");
            foreach (var (row, influence, delta) in t.Proponents) html.Append(Row(g.Image, row, "train", influence, delta));
            html.Append("</div><div><b class=\"harms\">harms</b> ");
            foreach (var (row, influence, delta) in t.Opponents) html.Append(Row(g.Image, row, "train", influence, delta));
            html.Append("</div></div>\n");
        }
        if (g.HighSelfInfluence.Count > 0)
        {
            html.Append("<h2 id=\"self-influence\">Highest self-influence: the training examples most likely mislabelled or atypical</h2><div>");
            foreach (var (row, self) in g.HighSelfInfluence) html.Append(Row(g.Image, row, "train", selfInfluence: self));
            html.Append("</div>\n");
        }
        return html.Append("</section>\n").ToString();
    }

    private static string Row(ImageShape? image, ShownRow row, string kind, double? influence = null, double? delta = null, double? selfInfluence = null)
    {
        var label = row.Predicted == row.Label
            ? $"label {row.Label}"
            : $"label {row.Label}, <span class=\"wrong\">predicted {row.Predicted}</span>";
        var numbers = new StringBuilder();
        if (influence is { } i) numbers.Append(FormattableString.Invariant($"<br>I = {i:G3}"));
        if (delta is { } d) numbers.Append(FormattableString.Invariant($"<br>Δ = {d:G3}"));
        if (selfInfluence is { } s) numbers.Append(FormattableString.Invariant($"<br>self = {s:G3}"));
        var picture = image is { } shape && row.Features.Length == shape.Size
            ? $"<img class=\"thumb\" alt=\"{kind} {row.Index}\" src=\"data:image/png;base64,{Convert.ToBase64String(Thumbnail(row.Features, shape))}\" width=\"{ThumbnailSize(shape).Width}\" height=\"{ThumbnailSize(shape).Height}\">"
            : FeatureTable(row.Features);
        return $"<div class=\"row {kind}\" data-index=\"{row.Index}\">{picture}{kind} {row.Index}<br>{label}{numbers}</div>";
    }

    /// <summary>A non-image row: its first features as a one-line table.</summary>
    private static string FeatureTable(double[] features)
    {
        const int shown = 8;
        var cells = string.Concat(features.Take(shown).Select(v => $"<td>{v.ToString("G4", CultureInfo.InvariantCulture)}</td>"));
        return $"<table class=\"features\"><tr>{cells}{(features.Length > shown ? $"<td>… {features.Length} features</td>" : "")}</tr></table>";
    }

    /// <summary>Thumbnails are shown about this many screen pixels across (8 × 8 digits as large as 28 × 28 images).</summary>
    private const int ThumbnailPixels = 84;

    /// <summary>
    /// An image row as a PNG at its own resolution, its values stretched to 0–255 (grey, or RGB for
    /// 3 channels). The page enlarges it (width and height attributes, pixelated rendering): an
    /// enlarged PNG per thumbnail cost about 5 ms each, 1.3 s of a 2,000-row job's page.
    /// </summary>
    public static byte[] Thumbnail(double[] pixels, ImageShape shape)
    {
        double min = pixels.Min(), max = pixels.Max(), span = max > min ? max - min : 1;
        int plane = shape.Height * shape.Width;
        var rgba = new byte[plane * 4];
        for (int p = 0; p < plane; p++)
        {
            byte Channel(int c) => (byte)Math.Round(255 * (pixels[c * plane + p] - min) / span);
            byte r = Channel(0), g = shape.Channels == 3 ? Channel(1) : r, b = shape.Channels == 3 ? Channel(2) : r;
            (rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2], rgba[4 * p + 3]) = (r, g, b, 255);
        }
        var info = new SKImageInfo(shape.Width, shape.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var image = SKImage.FromPixelCopy(info, rgba);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>The on-screen size of a thumbnail: a whole number of screen pixels per image pixel.</summary>
    private static (int Width, int Height) ThumbnailSize(ImageShape shape)
    {
        int scale = Math.Max(2, ThumbnailPixels / Math.Max(shape.Height, shape.Width));
        return (shape.Width * scale, shape.Height * scale);
    }

    /// <summary>
    /// Every &lt;img src="NAME.png"&gt; of a plain file name in <paramref name="folder"/> becomes a data URI
    /// (a name with a path, or a missing or oversized file, is left as it is).
    /// </summary>
    private static string EmbedImages(string html, string folder) => ImageSource().Replace(html, m =>
    {
        var name = WebUtility.HtmlDecode(m.Groups["name"].Value);
        var path = Path.Combine(folder, name);
        if (name != Path.GetFileName(name) || !File.Exists(path) || new FileInfo(path).Length > MaxEmbeddedBytes) return m.Value;
        return $"src=\"data:image/png;base64,{Convert.ToBase64String(File.ReadAllBytes(path))}\"";
    });

    [GeneratedRegex("src=\"(?<name>[^\"/:]+\\.png)\"")]
    private static partial Regex ImageSource();

    private static string Encode(string text) => WebUtility.HtmlEncode(text);

    /// <summary>
    /// How report.html draws a row: the --image shape of a CNN, else 28 × 28 (784 features) and
    /// 8 × 8 (64) as one-channel images; other rows are feature rows.
    /// </summary>
    public static ImageShape? ImageOf(ModelSpec spec) =>
        spec.Image ?? (spec.InputDim switch { 784 => new ImageShape(1, 28, 28), 64 => new ImageShape(1, 8, 8), _ => null });

    /// <summary>Row <paramref name="index"/> of <paramref name="data"/> as shown, with the model's prediction.</summary>
    public static ShownRow Shown(Dataset data, int index, int predicted) =>
        new(index, data.Features.AsSpan(index * data.FeatureCount, data.FeatureCount).ToArray(), data.Labels[index], predicted);
}
