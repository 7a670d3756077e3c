namespace Influence.Reports;

/// <summary>Scatter plots of predicted against actual changes, with the y = x line, as PNG bytes.</summary>
public static class Plots
{
    public static byte[] Scatter(double[] x, double[] y, string title, string xLabel, string yLabel, int width = 640, int height = 480)
    {
        var plot = new ScottPlot.Plot();
        if (x.Length > 0)
        {
            var points = plot.Add.ScatterPoints(x, y);
            points.MarkerSize = x.Length > 2000 ? 2 : 4;
            var finite = x.Concat(y).Where(double.IsFinite).ToArray();
            if (finite.Length > 0)
            {
                double lo = finite.Min(), hi = finite.Max();
                var line = plot.Add.Line(lo, lo, hi, hi);
                line.LinePattern = ScottPlot.LinePattern.Dashed;
                line.LegendText = "y = x";
            }
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        return plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }

    private static readonly ScottPlot.MarkerShape[] Markers =
    [
        ScottPlot.MarkerShape.FilledCircle, ScottPlot.MarkerShape.OpenSquare, ScottPlot.MarkerShape.FilledTriangleUp,
        ScottPlot.MarkerShape.OpenDiamond, ScottPlot.MarkerShape.Cross, ScottPlot.MarkerShape.OpenCircle,
    ];
    private static readonly ScottPlot.LinePattern[] Patterns = [ScottPlot.LinePattern.Solid, ScottPlot.LinePattern.Dashed, ScottPlot.LinePattern.Dotted];

    /// <summary>
    /// Lines of several series, each with its own marker and dash (so that coinciding series stay
    /// visible), a log axis drawn as log10 values with ticks labelled by the values themselves, and
    /// the legend outside the data (so that it hides no point).
    /// </summary>
    public static byte[] Lines(string title, string xLabel, string yLabel, IReadOnlyList<(string Name, double[] X, double[] Y)> series,
        bool logX = false, bool logY = false, int width = 760, int height = 480)
    {
        static double[] Log(double[] v) => v.Select(x => x > 0 ? Math.Log10(x) : double.NaN).ToArray();
        var plot = new ScottPlot.Plot();
        for (int i = 0; i < series.Count; i++)
        {
            var (name, x, y) = series[i];
            var line = plot.Add.Scatter(logX ? Log(x) : x, logY ? Log(y) : y);
            line.LegendText = name;
            line.MarkerShape = Markers[i % Markers.Length];
            line.MarkerSize = 8;
            line.LinePattern = Patterns[i / Markers.Length % Patterns.Length];
        }
        if (logX) plot.Axes.Bottom.TickGenerator = LogTicks();
        if (logY) plot.Axes.Left.TickGenerator = LogTicks();
        if (series.Count > 1) plot.ShowLegend(ScottPlot.Edge.Right);
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        return plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png);
    }

    /// <summary>Ticks for an axis of log10 values: at integer powers, labelled 1, 10, 100, … (minor ticks between).</summary>
    private static ScottPlot.TickGenerators.NumericAutomatic LogTicks() => new()
    {
        MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
        IntegerTicksOnly = true,
        LabelFormatter = v => Math.Pow(10, v).ToString("G4", System.Globalization.CultureInfo.InvariantCulture),
    };
}
