using System.Diagnostics;
using Influence.Abstractions;

namespace Influence.Cluster.Tests;

/// <summary>Silo processes serve /metrics; a real Prometheus scrapes them while a job runs; promtool lints the project's metrics.</summary>
public sealed class MetricsTests
{
    /// <summary>
    /// Deterministic by construction: cumulative counters are read after the job that moved them
    /// has finished (Prometheus is polled until its scrape has caught up); the per-job gauges are
    /// read while a second job is held running: a job of thousands of retrains that only the test
    /// ends, by cancelling it, and whose status is checked to be unfinished after each reading.
    /// No assertion depends on a scrape landing inside a short job.
    /// </summary>
    [Fact]
    public async Task Prometheus_scrapes_every_silo_and_reads_back_the_work_of_a_job()
    {
        await using var cluster = await RealCluster.StartAsync(silos: 2);
        await using var prometheus = await PrometheusServer.StartAsync(cluster.Silos.Select(s => s.MetricsPort));
        var kinds = Influence.Grains.JobKinds.All;

        // Idle silos: every kind has a running-jobs series, at 0.
        await WaitForAsync(prometheus, "count(up{job=\"influence\"} == 1)", v => v == 2);
        await WaitForAsync(prometheus, "count(influence_jobs_running == 0)", v => v == 2 * kinds.Count);

        var outDir = Tools.TempDir("metrics-loo");
        await using (var loo = cluster.StartClient("loo", "loo", "--train", Tools.DataFile("digits_train.csv"), "--test", Tools.DataFile("digits_test.csv"),
            "--l2", "1e-2", "--test-indices", "0-1", "--shards", "2", "--remove", "random:30,2", "--retrain", "warm,cold", "--out", outDir))
            Assert.True(await loo.WaitAsync(TimeSpan.FromMinutes(4)) == 0, loo.Tail());

        // Every retrain and scored example of the job counted once across the silos.
        await WaitForAsync(prometheus, "sum(influence_retrains_completed_total)", v => v == 60);
        await WaitForAsync(prometheus, "sum(influence_examples_scored_total)", v => v == 1257);
        await WaitForAsync(prometheus, "sum(influence_jobs_finished_total{kind=\"loo\",outcome=\"completed\"})", v => v == 1);
        Assert.Equal(0, await ValueAsync(prometheus, "sum(influence_retrains_failed_total)"));
        // The job's artifacts went through the blob store: its traffic is counted on both sides.
        Assert.True(await ValueAsync(prometheus, "sum(influence_store_written_bytes_total)") > 0);
        Assert.True(await ValueAsync(prometheus, "sum(influence_store_read_bytes_total)") > 0);
        Assert.Equal(0, await ValueAsync(prometheus, "sum(influence_retrains_in_flight)"));
        Assert.True(await ValueAsync(prometheus, "sum(influence_retrain_unit_duration_seconds_count)") > 0);
        Assert.True(await ValueAsync(prometheus, "histogram_quantile(0.5, sum by (le) (influence_retrain_unit_duration_seconds_bucket))") is > 0 and < 60);
        // After the job: still a series per kind, all 0, and no job's progress.
        await WaitForAsync(prometheus, "count(influence_jobs_running == 0)", v => v == 2 * kinds.Count);
        Assert.Empty(await prometheus.QueryAsync("influence_job_progress"));
        var services = await prometheus.QueryAsync("target_info");
        Assert.Equal(2, services.Count);
        Assert.All(services, s => Assert.Equal("influence-silo", s.Labels["service_name"]));
        Assert.Equal(cluster.Silos.Select(s => s.Name).Order(), services.Select(s => s.Labels["service_instance_id"]).Order());
        Assert.NotEmpty(await prometheus.QueryAsync("orleans_catalog_activations"));

        // A job held running (1257 cold retrains: minutes of work, ended only by the test's cancel).
        await using var held = cluster.StartClient("held", "loo", "--train", Tools.DataFile("digits_train.csv"), "--test", Tools.DataFile("digits_test.csv"),
            "--l2", "1e-2", "--test-indices", "0", "--shards", "2", "--remove", "all", "--retrain", "cold", "--out", Tools.TempDir("metrics-held"));
        var jobId = await JobOutputs.JobIdAsync(held, TimeSpan.FromSeconds(60));
        var running = await cluster.WaitForAsync<ILooJobGrain>(jobId, s => s.Phase == JobPhase.Retraining || s.IsFinished, TimeSpan.FromMinutes(3));
        Assert.False(running.IsFinished, $"the held job ended: {running.Phase} {running.Error}");
        var coordinator = cluster.Silos.Single(s => s.Owns(running.Coordinator));
        var during = new List<string>();
        foreach (var silo in cluster.Silos) during.Add(await silo.MetricsAsync());
        // Its progress and running count, read from the coordinator's /metrics and through Prometheus.
        var progress = Sample(during[cluster.Silos.ToList().IndexOf(coordinator)], "influence_job_progress", $"job_id=\"{jobId}\"", "kind=\"loo\"");
        Assert.True(progress is >= 0 and <= 1, $"progress {progress}");
        await WaitForAsync(prometheus, $"count(influence_job_progress{{job_id=\"{jobId}\",kind=\"loo\"}} <= 1)", v => v == 1);
        await WaitForAsync(prometheus, "sum(influence_jobs_running{kind=\"loo\"})", v => v == 1);
        var still = await cluster.WaitForAsync<ILooJobGrain>(jobId, _ => true, TimeSpan.FromSeconds(30));
        Assert.False(still.IsFinished, $"the held job ended before the test cancelled it ({still.Phase}): the readings above prove nothing");
        Assert.Equal(1, Sample(during[cluster.Silos.ToList().IndexOf(coordinator)], "influence_jobs_running", "kind=\"loo\""));

        // Cancelled: its progress series goes, the running count is back to 0, the end is counted.
        await (await cluster.ClientAsync()).GetGrain<ILooJobGrain>(jobId).Cancel();
        await WaitForAsync(prometheus, "sum(influence_jobs_finished_total{kind=\"loo\",outcome=\"cancelled\"})", v => v == 1);
        await WaitForAsync(prometheus, "count(influence_jobs_running == 0)", v => v == 2 * kinds.Count);
        await WaitForAsync(prometheus, "count(influence_job_progress) or vector(0)", v => v == 0);

        // Every metric the Grafana dashboard plots was in what the silos exported while the job ran.
        var names = during.SelectMany(text => text.Split('\n')).Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l[..l.IndexOfAny(['{', ' '])]).ToHashSet(StringComparer.Ordinal);
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

    /// <summary>The value of the one sample of <paramref name="metric"/> in a /metrics text that carries every label="value" given.</summary>
    private static double Sample(string metrics, string metric, params string[] labels)
    {
        var lines = metrics.Split('\n').Where(l => l.StartsWith(metric + "{", StringComparison.Ordinal)
            && labels.All(label => l.Contains(label, StringComparison.Ordinal))).ToList();
        Assert.True(lines.Count == 1, $"{lines.Count} samples of {metric} with {string.Join(",", labels)}:\n{metrics}");
        return double.Parse(lines[0][(lines[0].LastIndexOf('}') + 1)..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
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
