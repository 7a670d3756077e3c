using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace Influence.Cluster.Tests;

/// <summary>The helm chart, checked with the real helm 3 binary and its output parsed as Kubernetes objects.</summary>
public sealed partial class HelmChartTests
{
    private static readonly string Chart = Path.Combine(Tools.RepoRoot, "helm", "influence");

    private static (int Exit, string Output) Helm(params string[] args)
    {
        var psi = new ProcessStartInfo(Tools.Find("helm"), args) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["HELM_CACHE_HOME"] = Path.Combine(Path.GetTempPath(), "influence-helm-cache");
        psi.Environment["HELM_CONFIG_HOME"] = Path.Combine(Path.GetTempPath(), "influence-helm-config");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>`helm template` output as objects (documents that are empty after rendering are skipped).</summary>
    private static List<Dictionary<object, object>> Template(params string[] extra) => Template(out _, extra);

    /// <summary>The same, with the rendered text the objects were parsed from.</summary>
    private static List<Dictionary<object, object>> Template(out string rendered, params string[] extra)
    {
        var (exit, output) = Helm(["template", "rel", Chart, .. extra]);
        Assert.True(exit == 0, output);
        rendered = output;
        var deserializer = new DeserializerBuilder().Build();
        var parser = new Parser(new StringReader(output));
        parser.Consume<StreamStart>();
        var docs = new List<Dictionary<object, object>>();
        while (parser.Accept<DocumentStart>(out _))
        {
            var doc = deserializer.Deserialize<Dictionary<object, object>?>(parser);
            if (doc is not null) docs.Add(doc);
        }
        foreach (var d in docs)
        {
            Assert.IsType<string>(d["apiVersion"]);
            Assert.IsType<string>(d["kind"]);
            var name = (string)Map(d, "metadata")["name"];
            Assert.Matches(DnsName(), name);
        }
        return docs;
    }

    private static Dictionary<object, object> Map(Dictionary<object, object> m, params string[] path)
    {
        foreach (var p in path) m = (Dictionary<object, object>)m[p];
        return m;
    }

    private static List<object> List(Dictionary<object, object> m, string key) => (List<object>)m[key];

    private static Dictionary<object, object> One(List<Dictionary<object, object>> docs, string kind) => Assert.Single(docs, d => (string)d["kind"] == kind);

    [Fact]
    public void Lint_passes_strictly_with_the_default_and_the_GPU_values()
    {
        var (exit, output) = Helm("lint", "--strict", Chart);
        Assert.True(exit == 0, output);
        (exit, output) = Helm("lint", "--strict", Chart, "-f", Path.Combine(Chart, "values-gpu.yaml"), "--set", "client.enabled=true", "--set", "metrics.serviceMonitor.enabled=true");
        Assert.True(exit == 0, output);
    }

    [Fact]
    public void Default_values_render_silos_that_take_name_and_address_from_the_pod_and_stop_within_the_grace_period()
    {
        var docs = Template(out var rendered);
        Assert.Equal(["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service", "Service", "Service", "StatefulSet"], docs.Select(d => (string)d["kind"]).Order());

        var silo = One(docs, "StatefulSet");
        var podSpec = Map(silo, "spec", "template", "spec");
        var container = (Dictionary<object, object>)Assert.Single(List(podSpec, "containers"));
        var env = List(container, "env").Cast<Dictionary<object, object>>().ToDictionary(e => (string)e["name"]);
        Assert.Equal("status.podIP", Map(env["Cluster__AdvertisedIP"], "valueFrom", "fieldRef")["fieldPath"]);
        Assert.Equal("metadata.name", Map(env["Cluster__SiloName"], "valueFrom", "fieldRef")["fieldPath"]);
        Assert.Equal("connection-string", Map(env["Store__ConnectionString"], "valueFrom", "secretKeyRef")["key"]);

        // The Redis connection (with the password generated at install) lives in a Secret only.
        var redisSecret = Map(One(docs, "Secret"), "stringData");
        var password = (string)redisSecret["password"];
        Assert.Matches("^[A-Za-z0-9]{32}$", password);
        Assert.Equal($"rel-influence-redis:6379,password={password}", redisSecret["connection"]);
        Assert.Equal(Map(One(docs, "Secret"), "metadata")["name"], Map(env["Cluster__Redis"], "valueFrom", "secretKeyRef")["name"]);
        Assert.Equal("connection", Map(env["Cluster__Redis"], "valueFrom", "secretKeyRef")["key"]);
        var redis = (Dictionary<object, object>)List(Map(One(docs, "Deployment"), "spec", "template", "spec"), "containers")[0];
        Assert.Contains("--requirepass", List(redis, "args").Cast<string>());
        var config = Map(docs.Single(d => (string)d["kind"] == "ConfigMap" && ((string)Map(d, "metadata")["name"]).EndsWith("-silo", StringComparison.Ordinal)), "data");
        Assert.Equal("redis", config["Cluster__Clustering"]);
        Assert.False(config.ContainsKey("Cluster__Redis"));
        // /metrics on every interface of the pod (kubectl port-forward reaches it; the NetworkPolicy admits Prometheus only).
        Assert.Equal("*", config["Metrics__Host"]);
        // The password is in the rendered Secret and nowhere else of the same rendering.
        Assert.Single(rendered.Split("\n---"), d => d.Contains(password, StringComparison.Ordinal));

        // NetworkPolicies: silo ports from silos and the release's clients, metrics from Prometheus, Redis from silos and clients.
        var policies = docs.Where(d => (string)d["kind"] == "NetworkPolicy").ToDictionary(d => (string)Map(d, "metadata")["name"]);
        var siloIngress = List(Map(policies["rel-influence-silo"], "spec"), "ingress").Cast<Dictionary<object, object>>().ToList();
        string Port(Dictionary<object, object> rule) => (string)((Dictionary<object, object>)List(rule, "ports")[0])["port"];
        Assert.Equal(["silo", "gateway", "metrics"], siloIngress.Select(Port));
        Assert.All(siloIngress, r => Assert.NotEmpty(List(r, "from")));
        Assert.Equal("client", Map((Dictionary<object, object>)List(siloIngress[1], "from")[1], "podSelector", "matchLabels")["app.kubernetes.io/component"]);
        Assert.Equal("prometheus", Map((Dictionary<object, object>)List(siloIngress[2], "from")[0], "podSelector", "matchLabels")["app.kubernetes.io/name"]);
        Assert.Equal("redis", Port((Dictionary<object, object>)List(Map(policies["rel-influence-redis"], "spec"), "ingress")[0]));
        Assert.True(int.Parse((string)podSpec["terminationGracePeriodSeconds"], System.Globalization.CultureInfo.InvariantCulture) > int.Parse((string)config["Cluster__ShutdownTimeoutSeconds"], System.Globalization.CultureInfo.InvariantCulture));

        // Prometheus finds the pods by annotation; every selector matches the pods' labels.
        var podMeta = Map(silo, "spec", "template", "metadata");
        Assert.Equal("true", Map(podMeta, "annotations")["prometheus.io/scrape"]);
        var podLabels = Map(podMeta, "labels");
        foreach (var selector in new[] { Map(silo, "spec", "selector", "matchLabels"), Map(One(docs, "PodDisruptionBudget"), "spec", "selector", "matchLabels") }
                     .Concat(docs.Where(d => (string)d["kind"] == "Service" && !((string)Map(d, "metadata")["name"]).EndsWith("-redis", StringComparison.Ordinal)).Select(d => Map(d, "spec", "selector"))))
            foreach (var (k, v) in selector)
                Assert.Equal(v, podLabels[k]);
        Assert.False(Map(container, "resources", "limits").ContainsKey("nvidia.com/gpu"));

        // The dashboard ships as a ConfigMap Grafana's sidecar picks up.
        var dashboard = docs.Single(d => (string)d["kind"] == "ConfigMap" && ((string)Map(d, "metadata")["name"]).EndsWith("-dashboard", StringComparison.Ordinal));
        Assert.Equal("1", Map(dashboard, "metadata", "labels")["grafana_dashboard"]);
        using var json = JsonDocument.Parse((string)Map(dashboard, "data")["influence.json"]);
        Assert.True(json.RootElement.GetProperty("panels").GetArrayLength() >= 10);
    }

    [Fact]
    public void GPU_values_request_a_GPU_per_silo_on_GPU_nodes_and_the_client_job_targets_the_cluster()
    {
        var docs = Template("-f", Path.Combine(Chart, "values-gpu.yaml"), "--set", "client.enabled=true", "--set", "store.connectionString=UseDevelopmentStorage=true",
            "--set", "metrics.serviceMonitor.enabled=true");
        var silo = One(docs, "StatefulSet");
        Assert.Equal("4", silo["spec"] is Dictionary<object, object> spec ? spec["replicas"] : null);
        var podSpec = Map(silo, "spec", "template", "spec");
        var container = (Dictionary<object, object>)List(podSpec, "containers")[0];
        Assert.Equal("1", Map(container, "resources", "limits")["nvidia.com/gpu"]);
        Assert.Equal("1", Map(container, "resources", "requests")["nvidia.com/gpu"]);
        Assert.Contains(List(podSpec, "tolerations").Cast<Dictionary<object, object>>(), t => (string)t["key"] == "nvidia.com/gpu");
        Assert.Equal("true", Map(podSpec, "nodeSelector")["nvidia.com/gpu.present"]);
        Assert.StartsWith("ghcr.io/influence/influence-cuda:", (string)container["image"], StringComparison.Ordinal);

        Assert.Equal("UseDevelopmentStorage=true", Map(docs.Single(d => (string)d["kind"] == "Secret" && ((string)Map(d, "metadata")["name"]).EndsWith("-store", StringComparison.Ordinal)), "stringData")["connection-string"]);
        Assert.Equal("metrics", ((Dictionary<object, object>)List(Map(One(docs, "ServiceMonitor"), "spec"), "endpoints")[0])["port"]);
        var job = One(docs, "Job");
        var client = (Dictionary<object, object>)List(Map(job, "spec", "template", "spec"), "containers")[0];
        // The cluster address, password included, comes from the Redis Secret, not the Job's arguments.
        Assert.DoesNotContain("--cluster", List(client, "args").Cast<string>());
        var clientEnv = List(client, "env").Cast<Dictionary<object, object>>().ToDictionary(e => (string)e["name"]);
        Assert.Equal("cluster-url", Map(clientEnv["INFLUENCE_CLUSTER"], "valueFrom", "secretKeyRef")["key"]);
    }

    [Fact]
    public void TLS_values_mount_the_certificate_secret_into_silos_and_the_client_job_and_an_external_redis_stays_in_a_secret()
    {
        var docs = Template(out var rendered, "--set", "tls.enabled=true", "--set", "tls.secretName=influence-tls", "--set", "client.enabled=true",
            "--set", "redis.bundled=false", "--set", "redis.external.address=redis.example:6380\\,password=hunter2-external");
        var config = Map(docs.Single(d => (string)d["kind"] == "ConfigMap" && ((string)Map(d, "metadata")["name"]).EndsWith("-silo", StringComparison.Ordinal)), "data");
        Assert.Equal("/etc/influence/tls/tls.crt", config["Tls__CertificateFile"]);
        Assert.Equal("/etc/influence/tls/ca.crt", config["Tls__CaFile"]);
        foreach (var kind in new[] { "StatefulSet", "Job" })
        {
            var podSpec = Map(One(docs, kind), "spec", "template", "spec");
            Assert.Equal("influence-tls", Map((Dictionary<object, object>)Assert.Single(List(podSpec, "volumes")), "secret")["secretName"]);
            var mount = (Dictionary<object, object>)Assert.Single(List((Dictionary<object, object>)List(podSpec, "containers")[0], "volumeMounts"));
            Assert.Equal("/etc/influence/tls", mount["mountPath"]);
        }
        var clientEnv = List((Dictionary<object, object>)List(Map(One(docs, "Job"), "spec", "template", "spec"), "containers")[0], "env").Cast<Dictionary<object, object>>().ToDictionary(e => (string)e["name"]);
        Assert.Equal("/etc/influence/tls/tls.key", clientEnv["INFLUENCE_TLS_KEY"]["value"]);
        Assert.Equal("redis://redis.example:6380,password=hunter2-external", Map(One(docs, "Secret"), "stringData")["cluster-url"]);
        Assert.DoesNotContain(docs, d => (string)d["kind"] == "Deployment"); // no bundled Redis
        Assert.Single(rendered.Split("\n---"), d => d.Contains("hunter2-external", StringComparison.Ordinal)); // the Secret alone
        (int exit, string output) = Helm("template", "rel", Chart, "--set", "tls.enabled=true");
        Assert.NotEqual(0, exit);
        Assert.Contains("tls.secretName is required", output, StringComparison.Ordinal);
    }

    [Fact]
    public void A_grace_period_shorter_than_the_silo_shutdown_is_refused()
    {
        var (exit, output) = Helm("template", "rel", Chart, "--set", "silo.terminationGracePeriodSeconds=10", "--set", "silo.shutdownTimeoutSeconds=20");
        Assert.NotEqual(0, exit);
        Assert.Contains("silo.terminationGracePeriodSeconds (10) must be longer than silo.shutdownTimeoutSeconds (20)", output, StringComparison.Ordinal);
        (exit, output) = Helm("template", "rel", Chart, "--set", "redis.bundled=false");
        Assert.NotEqual(0, exit);
        Assert.Contains("redis.external.address (HOST:PORT[,password=...]) or redis.external.existingSecret is required", output, StringComparison.Ordinal);
    }

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
    private static partial Regex DnsName();
}
