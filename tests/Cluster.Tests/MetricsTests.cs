using System.Diagnostics;

namespace Influence.Cluster.Tests;

/// <summary>Silo processes serve /metrics; a real Prometheus scrapes them while a job runs; promtool lints the project's metrics.</summary>
public sealed class MetricsTests
{
    [Fact]
    public async Task Prometheus_scrapes_every_silo_and_reads_back_the_work_of_a_job()
    {
        await using var cluster = await RealCluster.StartAsync(silos: 2);
        await using var prometheus = await PrometheusServer.StartAsync(cluster.Silos.Select(s => s.MetricsPort));

        var outDir = Tools.TempDir("metrics-loo");
        await using (var loo = cluster.StartClient("loo", "loo", "--train", Tools.DataFile("digits_train.csv"), "--test", Tools.DataFile("digits_test.csv"),
            "--l2", "1e-2", "--test-indices", "0-1", "--shards", "2", "--remove", "random:30,2", "--retrain", "warm,cold", "--out", outDir))
            Assert.True(await loo.WaitAsync(TimeSpan.FromMinutes(4)) == 0, loo.Tail());

        // Both silos up, and every retrain and scored example of the job counted once across them.
        await WaitForAsync(prometheus, "count(up{job=\"influence\"} == 1)", v => v == 2);
        await WaitForAsync(prometheus, "sum(influence_retrains_completed_total)", v => v == 60);
        await WaitForAsync(prometheus, "sum(influence_examples_scored_total)", v => v == 1257);
        Assert.Equal(0, await ValueAsync(prometheus, "sum(influence_retrains_failed_total)"));
        Assert.Equal(0, await ValueAsync(prometheus, "sum(influence_retrains_in_flight)"));
        await WaitForAsync(prometheus, "sum(influence_jobs_finished_total{kind=\"loo\",outcome=\"completed\"})", v => v == 1);
        Assert.True(await ValueAsync(prometheus, "sum(influence_retrain_unit_duration_seconds_count)") > 0);
        Assert.True(await ValueAsync(prometheus, "histogram_quantile(0.5, sum by (le) (influence_retrain_unit_duration_seconds_bucket))") is > 0 and < 60);
        var services = await prometheus.QueryAsync("target_info");
        Assert.Equal(2, services.Count);
        Assert.All(services, s => Assert.Equal("influence-silo", s.Labels["service_name"]));
        Assert.Equal(cluster.Silos.Select(s => s.Name).Order(), services.Select(s => s.Labels["service_instance_id"]).Order());
        Assert.NotEmpty(await prometheus.QueryAsync("orleans_catalog_activations"));

        // Every metric the Grafana dashboard plots exists in what the silos exported during the job.
        var names = (await prometheus.LabelValuesAsync("__name__")).ToHashSet(StringComparer.Ordinal);
        var dashboard = File.ReadAllText(Path.Combine(Tools.RepoRoot, "helm", "influence", "dashboards", "influence.json"));
        var plotted = System.Text.RegularExpressions.Regex.Matches(dashboard, @"\b(?:influence|orleans)_[a-z_]+").Select(m => m.Value).Distinct().ToList();
        Assert.True(plotted.Count >= 10, string.Join(", ", plotted));
        Assert.All(plotted, name => Assert.True(names.Contains(name), $"the dashboard plots {name}, which no silo exported; exported: {string.Join(", ", names.Where(n => n.StartsWith("influence_", StringComparison.Ordinal)))}"));

        // The project's own metrics pass promtool's lint (Orleans' own carry warnings the project does not control).
        var histograms = 0;
        foreach (var silo in cluster.Silos)
        {
            var text = await silo.MetricsAsync();
            var ours = string.Join('\n', text.Split('\n').Where(l => l.StartsWith("influence_", StringComparison.Ordinal)
                || l.StartsWith("# HELP influence_", StringComparison.Ordinal) || l.StartsWith("# TYPE influence_", StringComparison.Ordinal))) + "\n";
            // A silo that ran no unit (placement gave them all to the other) has no unit histogram yet.
            if (ours.Contains("influence_retrain_unit_duration_seconds_bucket", StringComparison.Ordinal)) histograms++;
            var (exit, output) = await PromtoolAsync(ours);
            Assert.True(exit == 0 && output.Length == 0, $"promtool check metrics: exit {exit}\n{output}");
            // No label carries a path.
            Assert.DoesNotContain("/", string.Join('\n', ours.Split('\n').Where(l => !l.StartsWith('#')).Select(l => l.Split(' ')[0])), StringComparison.Ordinal);
        }
        Assert.True(histograms >= 1, "no silo exported the unit-duration histogram");
    }

    private static async Task<double> ValueAsync(PrometheusServer prometheus, string query)
    {
        var result = await prometheus.QueryAsync(query);
        return result.Count == 0 ? double.NaN : result[0].Value;
    }

    private static async Task WaitForAsync(PrometheusServer prometheus, string query, Func<double, bool> ok)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        double last = double.NaN;
        while (DateTime.UtcNow < deadline)
        {
            last = await ValueAsync(prometheus, query);
            if (ok(last)) return;
            await Task.Delay(500);
        }
        Assert.Fail($"{query} = {last} after 30 s");
    }

    private static async Task<(int Exit, string Output)> PromtoolAsync(string metrics)
    {
        var psi = new ProcessStartInfo(Tools.Find("promtool"), ["check", "metrics"])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        await p.StandardInput.WriteAsync(metrics);
        p.StandardInput.Close();
        var output = await p.StandardOutput.ReadToEndAsync() + await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, output.Trim());
    }
}
