using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Influence.Cluster.Tests;

/// <summary>
/// Where the servers and tools live: Debian's redis-server, prometheus and promtool on PATH;
/// azurite and helm in the repository's .tools/bin (scripts/install-test-tools.sh puts them there).
/// A missing tool fails the test with the command that installs it.
/// </summary>
public static class Tools
{
    public static readonly string RepoRoot = FindRepoRoot();
    public static string Bin(string name) => Path.Combine(AppContext.BaseDirectory, name);

    public static string Find(string name)
    {
        var local = Path.Combine(RepoRoot, ".tools", "bin", name);
        if (File.Exists(local)) return local;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, name))) return Path.Combine(dir, name);
        throw new InvalidOperationException($"'{name}' is not installed: run scripts/install-test-tools.sh (./test.sh does)");
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Influence.sln"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository root (Influence.sln) above " + AppContext.BaseDirectory);
    }

    public static string DataFile(string name) => Path.Combine(RepoRoot, "data", name);

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static async Task WaitForPortAsync(int port, TimeSpan timeout, Func<string>? whyNot = null)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            try
            {
                using var c = new TcpClient();
                await c.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException) { await Task.Delay(100); }
        }
        throw new TimeoutException($"nothing listens on port {port} after {timeout.TotalSeconds:F0} s. {whyNot?.Invoke()}");
    }

    public static string TempDir(string prefix)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}

/// <summary>A child process whose output goes to a log file; killed (with its children) on dispose.</summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process process;
    private readonly StreamWriter log;
    private readonly object gate = new();

    public ChildProcess(string name, string fileName, IEnumerable<string> args, IDictionary<string, string>? env = null, string? workingDirectory = null)
    {
        Name = name;
        LogPath = Path.Combine(Path.GetTempPath(), $"influence-test-{name}-{Guid.NewGuid().ToString("N")[..6]}.log");
        log = new StreamWriter(LogPath) { AutoFlush = true };
        var psi = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (workingDirectory is not null) psi.WorkingDirectory = workingDirectory;
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Write(e.Data);
        process.ErrorDataReceived += (_, e) => Write(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Name { get; }
    public string LogPath { get; }
    public bool HasExited => process.HasExited;
    public int ExitCode => process.ExitCode;
    public int Pid => process.Id;

    private void Write(string? line)
    {
        if (line is null) return;
        lock (gate) log.WriteLine(line);
    }

    public string Output()
    {
        lock (gate) log.Flush();
        using var s = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(s).ReadToEnd();
    }

    /// <summary>The last lines of the output, for assertion messages.</summary>
    public string Tail(int lines = 30) => string.Join('\n', Output().Split('\n').TakeLast(lines));

    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try { await process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:F0} s:\n{Tail()}"); }
        process.WaitForExit(); // flushes the asynchronous output readers
        return process.ExitCode;
    }

    /// <summary>SIGKILL: no shutdown, no hand-back; what a crashed host looks like.</summary>
    public void Kill()
    {
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.WaitForExit();
    }

    /// <summary>SIGTERM: a graceful stop.</summary>
    public void Terminate()
    {
        if (!process.HasExited) Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!.WaitForExit();
    }

    public async ValueTask DisposeAsync()
    {
        try { Kill(); } catch (InvalidOperationException) { }
        await Task.Yield();
        process.Dispose();
        lock (gate) log.Dispose();
    }
}
