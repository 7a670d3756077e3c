using Influence.Core.Data;
using Influence.Core.Jobs;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Influence.Abstractions;

namespace Influence.Cluster.Tests;

/// <summary>
/// A cluster's surface as someone on the network or reading its outputs meets it: no secret in any
/// output, log, job record or metric; ports on the advertised address only; TLS that refuses a
/// client without the certificate; the metrics endpoint off when asked, a taken port a clean exit.
/// </summary>
public sealed class SecurityTests
{
    private const string RedisPassword = "Rds-Pw-7d1e5a-never-print";

    /// <summary>`influence ARGS --cluster redis://...` (the commands that take no --store), with more environment variables.</summary>
    private static ChildProcess Cli(RealCluster cluster, IDictionary<string, string> env, params string[] args)
    {
        var all = cluster.ClientEnv();
        foreach (var (k, v) in env) all[k] = v;
        return new ChildProcess(args[0], "dotnet", [Tools.Bin("influence.dll"), .. args, "--cluster", $"redis://{cluster.Redis.Connection}"], all);
    }

    [Fact]
    public async Task No_output_log_job_record_or_metric_carries_a_password_key_or_token()
    {
        await using var cluster = await RealCluster.StartAsync(silos: 1, redisPassword: RedisPassword);
        var outDir = Tools.TempDir("secrets-loo");
        var outputs = new List<(string Where, string Text)>();
        string jobId;
        await using (var loo = cluster.StartClient("loo", "loo", "--train", Tools.DataFile("iris_train.csv"), "--test", Tools.DataFile("iris_test.csv"),
            "--test-indices", "0", "--remove", "random:3", "--retrain", "warm", "--out", outDir))
        {
            Assert.True(await loo.WaitAsync(TimeSpan.FromMinutes(3)) == 0, loo.Tail());
            outputs.Add(("loo client", loo.Output()));
            jobId = await JobOutputs.JobIdAsync(loo, TimeSpan.FromSeconds(1));
        }
        // The commands that print the cluster or fail on it.
        foreach (var args in new[] { new[] { "job", "show", jobId }, ["job", "show", "no-such-job"], ["cluster", "status"] })
        {
            await using var p = Cli(cluster, new Dictionary<string, string>(), args);
            await p.WaitAsync(TimeSpan.FromMinutes(1));
            outputs.Add((string.Join(' ', args), p.Output()));
        }
        // A wrong password, and a store URL with a SAS token that the service refuses.
        var env = cluster.ClientEnv();
        const string SasSignature = "SasSig-3f9a-never-print";
        foreach (var args in new[]
        {
            new[] { "cluster", "status", "--cluster", $"redis://127.0.0.1:{cluster.Redis.Port},password=Wrong-{RedisPassword}" },
            ["score", "--train", Tools.DataFile("iris_train.csv"), "--test", Tools.DataFile("iris_test.csv"), "--out", Tools.TempDir("sas"),
             "--cluster", $"redis://{cluster.Redis.Connection}", "--store", $"http://127.0.0.1:{cluster.Azurite.Port}/devstoreaccount1/{cluster.Container}?sv=2024-01-01&sp=rw&sig={SasSignature}"],
        })
        {
            await using var p = new ChildProcess("bad", "dotnet", [Tools.Bin("influence.dll"), .. args], env);
            Assert.NotEqual(0, await p.WaitAsync(TimeSpan.FromMinutes(1)));
            outputs.Add((args[0], p.Output()));
        }
        // A silo that cannot reach Redis with its settings says so, without the password.
        await using (var bad = RealCluster.StartSiloProcess("bad-silo", cluster.SiloArgs(Tools.FreePort(), Tools.FreePort(), 0, "bad-silo",
            $"Cluster:Redis=127.0.0.1:{Tools.FreePort()},password={RedisPassword}")))
        {
            Assert.Equal(3, await bad.WaitAsync(TimeSpan.FromMinutes(1)));
            outputs.Add(("silo without Redis", bad.Output()));
        }

        outputs.Add(("silo log", cluster.Silos[0].Process.Output()));
        outputs.Add(("/metrics", await cluster.Silos[0].MetricsAsync()));
        outputs.Add(("redis", await cluster.Redis.DumpAsync()));
        foreach (var f in Directory.GetFiles(outDir)) outputs.Add((Path.GetFileName(f), File.ReadAllText(f)));

        Assert.Contains(outputs, o => o.Where == "redis" && o.Text.Contains(jobId, StringComparison.Ordinal)); // the job record was read
        Assert.Contains("***", string.Concat(outputs.Select(o => o.Text)), StringComparison.Ordinal); // and the addresses were shown, masked
        foreach (var secret in new[] { RedisPassword, AzuriteServer.AccountKey, AzuriteServer.AccountKey[..20], SasSignature })
            foreach (var (where, text) in outputs)
                Assert.False(text.Contains(secret, StringComparison.Ordinal), $"{where} shows a secret:\n{text[..Math.Min(text.Length, 3000)]}");
    }

    [Fact]
    public async Task A_client_whose_store_is_not_the_silos_says_where_the_results_are_and_job_export_fetches_them()
    {
        await using var cluster = await RealCluster.StartAsync(silos: 1);
        string Key(string file) => $"store:datasets/{Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Tools.DataFile(file))))[..16]}/{file}";
        // A first run puts the datasets into the silos' store.
        await using (var first = cluster.StartClient("first", "score", "--train", Tools.DataFile("iris_train.csv"), "--test", Tools.DataFile("iris_test.csv"), "--test-indices", "0", "--out", Tools.TempDir("first")))
            Assert.True(await first.WaitAsync(TimeSpan.FromMinutes(3)) == 0, first.Tail());
        // The second names them by key but reads another container: the job completes on the silos, the export cannot.
        var other = cluster.Azurite.CreateContainer("other");
        await using var mismatched = new ChildProcess("mismatched", "dotnet", [Tools.Bin("influence.dll"), "score", "--train", Key("iris_train.csv"), "--test", Key("iris_test.csv"),
            "--test-indices", "0", "--out", Tools.TempDir("mismatched"), "--cluster", $"redis://{cluster.Redis.Connection}", "--store", $"azblob:{other}"], cluster.ClientEnv());
        Assert.Equal(1, await mismatched.WaitAsync(TimeSpan.FromMinutes(3)));
        var jobId = await JobOutputs.JobIdAsync(mismatched, TimeSpan.FromSeconds(1));
        Assert.Contains($"job {jobId} completed and its outputs are under 'jobs/{jobId}' in the silos' artifact store", mismatched.Output(), StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", mismatched.Output(), StringComparison.Ordinal);
        // Where it says to look, they are.
        var outDir = Path.Combine(Tools.TempDir("export"), "out");
        await using var export = new ChildProcess("export", "dotnet", [Tools.Bin("influence.dll"), "job", "export", jobId, "--store", $"azblob:{cluster.Container}", "--out", outDir], cluster.ClientEnv());
        Assert.True(await export.WaitAsync(TimeSpan.FromMinutes(1)) == 0, export.Tail());
        Assert.True(File.Exists(Path.Combine(outDir, "influence.csv")));
    }

    [Fact]
    public async Task A_silo_refuses_requests_that_name_its_own_files_or_a_job_id_that_is_a_path()
    {
        await using var cluster = await RealCluster.StartAsync(silos: 1);
        var client = await cluster.ClientAsync();
        var secret = Path.Combine(Tools.TempDir("silo-disk"), "secret.csv");
        File.WriteAllText(secret, "label,x\n0,SECRET-ROW-CONTENT\n1,2\n");
        foreach (var (id, path, message) in new[]
        {
            ("local-path", secret, "is a local path: silos of a cluster read inputs only from the artifact store"),
            ("escaping-key", "store:" + secret, "bad artifact key"),
            ("dot-dot-key", "store:datasets/../../x.csv", "'.' or '..' segment"),
        })
        {
            await client.GetGrain<IScoreJobGrain>(id).Start(new ScoreSettings
            {
                Train = new DatasetSpec(path), Test = new DatasetSpec(path), TestIndices = [0],
            });
            var failed = await cluster.WaitForAsync<IScoreJobGrain>(id, s => s.IsFinished, TimeSpan.FromMinutes(1));
            Assert.Equal(JobPhase.Failed, failed.Phase);
            Assert.Contains(message, failed.Error, StringComparison.Ordinal);
            Assert.DoesNotContain("SECRET-ROW-CONTENT", failed.Error, StringComparison.Ordinal);
        }
        var badId = await client.GetGrain<IScoreJobGrain>("../escape").Start(new ScoreSettings
        {
            Train = new DatasetSpec("store:datasets/x/a.csv"), Test = new DatasetSpec("store:datasets/x/a.csv"), TestIndices = [0],
        });
        Assert.Equal(JobPhase.Failed, badId.Phase);
        Assert.Contains("is not a job id", badId.Error, StringComparison.Ordinal);
    }

    /// <summary>Ports of TCP sockets that process <paramref name="pid"/> listens on (from /proc).</summary>
    private static HashSet<int> ListeningPorts(int pid)
    {
        var inodes = new HashSet<string>();
        foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
        {
            try
            {
                var target = new FileInfo(fd).LinkTarget ?? "";
                if (target.StartsWith("socket:[", StringComparison.Ordinal)) inodes.Add(target[8..^1]);
            }
            catch (IOException) { }
        }
        var ports = new HashSet<int>();
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f[3] == "0A" && inodes.Contains(f[9])) ports.Add(int.Parse(f[1].Split(':')[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            }
        return ports;
    }

    private static bool Accepts(string address, int port)
    {
        using var tcp = new TcpClient();
        try { tcp.Connect(IPAddress.Parse(address), port); return true; }
        catch (SocketException) { return false; }
    }

    [Fact]
    public async Task Silos_listen_on_the_advertised_address_only_and_metrics_port_zero_listens_nowhere()
    {
        await using var cluster = await RealCluster.StartAsync(silos: 1, redisPassword: null, "Metrics:Port=0");
        var silo = cluster.Silos[0];
        // 127.0.0.2 is this machine too: a socket bound to every interface would accept there.
        Assert.True(Accepts("127.0.0.1", silo.GatewayPort));
        Assert.False(Accepts("127.0.0.2", silo.GatewayPort), "the gateway listens beyond the advertised address");
        Assert.False(Accepts("127.0.0.2", silo.SiloPort), "the silo port listens beyond the advertised address");
        // Metrics:Port=0: the silo and gateway ports are all it listens on (before: a random metrics port).
        Assert.Equal(new[] { silo.SiloPort, silo.GatewayPort }.Order(), ListeningPorts(silo.Process.Pid).Order());
    }

    [Fact]
    public async Task The_dashboard_when_on_serves_its_pages_on_loopback_only_and_on_its_own_port_only()
    {
        int port = Tools.FreePort();
        await using var cluster = await RealCluster.StartAsync(silos: 1, redisPassword: null, $"Dashboard:Port={port}");
        await Tools.WaitForPortAsync(port, TimeSpan.FromSeconds(60), () => cluster.Silos[0].Process.Tail()); // the web endpoints start after the gateway
        using var http = new HttpClient();
        Assert.Contains("<title>Orleans Dashboard</title>", await http.GetStringAsync($"http://127.0.0.1:{port}/"), StringComparison.Ordinal);
        Assert.False(Accepts("127.0.0.2", port), "the dashboard listens beyond loopback");
        // Each port serves its own endpoints: no metrics on the dashboard's, no dashboard on the metrics'.
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"http://127.0.0.1:{port}/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"http://127.0.0.1:{cluster.Silos[0].MetricsPort}/")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"http://127.0.0.1:{cluster.Silos[0].MetricsPort}/metrics")).StatusCode);
    }

    [Fact]
    public async Task A_metrics_port_in_use_exits_3_with_a_message()
    {
        await using var cluster = await RealCluster.StartAsync(silos: 0);
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        await using var silo = RealCluster.StartSiloProcess("taken", cluster.SiloArgs(Tools.FreePort(), Tools.FreePort(), port, "taken"));
        Assert.Equal(3, await silo.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Contains($"Metrics:Port {port} on 127.0.0.1 cannot be used", silo.Output(), StringComparison.Ordinal);
    }

    /// <summary>A self-signed certificate (its own CA) for 127.0.0.1, written as PEM files; returns (cert, key).</summary>
    private static (string Cert, string Key) SelfSigned(string name)
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment | X509KeyUsageFlags.KeyCertSign, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));
        var dir = Tools.TempDir($"tls-{name}");
        var certPath = Path.Combine(dir, "tls.crt");
        var keyPath = Path.Combine(dir, "tls.key");
        File.WriteAllText(certPath, cert.ExportCertificatePem());
        File.WriteAllText(keyPath, rsa.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }

    [Fact]
    public async Task With_TLS_a_client_with_the_certificate_runs_a_job_and_one_without_is_refused()
    {
        var (cert, key) = SelfSigned("influence-cluster");
        await using var cluster = await RealCluster.StartAsync(silos: 2, redisPassword: null, $"Tls:CertificateFile={cert}", $"Tls:KeyFile={key}");
        var tls = new Dictionary<string, string> { ["INFLUENCE_TLS_CERT"] = cert, ["INFLUENCE_TLS_KEY"] = key };
        var outDir = Tools.TempDir("tls-score");
        await using (var score = cluster.StartClient("tls-score", tls, "score", "--train", Tools.DataFile("iris_train.csv"), "--test", Tools.DataFile("iris_test.csv"),
            "--test-indices", "0-2", "--shards", "2", "--out", outDir))
            Assert.True(await score.WaitAsync(TimeSpan.FromMinutes(3)) == 0, $"{score.Tail()}\n{cluster.Logs()}");
        Assert.True(File.Exists(Path.Combine(outDir, "influence.csv")));

        // No certificate, or one the silos do not trust (the client itself trusts the silos' certificate,
        // so the refusal is the silos'): the connection is refused.
        var (otherCert, otherKey) = SelfSigned("someone-else");
        foreach (var env in new[] { new Dictionary<string, string>(), new() { ["INFLUENCE_TLS_CERT"] = otherCert, ["INFLUENCE_TLS_KEY"] = otherKey, ["INFLUENCE_TLS_CA"] = cert } })
        {
            await using var refused = Cli(cluster, env, "cluster", "status");
            int exit = await refused.WaitAsync(TimeSpan.FromMinutes(2));
            Assert.True(exit == 3, $"exit {exit}\n{refused.Tail()}");
            Assert.Contains("cannot connect to the cluster", refused.Output(), StringComparison.Ordinal);
        }
    }
}
