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
}
