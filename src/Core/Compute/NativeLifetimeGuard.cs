using System.Runtime.InteropServices;
using System.Text;

namespace Influence.Core.Compute;

/// <summary>
/// Keeps TorchSharp's managed wrappers alive through their own native calls.
/// <para>
/// TorchSharp 0.107 passes <c>scalar.Handle</c> / <c>tensor.Handle</c> to libtorch without
/// <c>GC.KeepAlive</c>, and creates Scalars it never disposes (<c>a.add(b)</c> is
/// <c>a.add(b, 1)</c>, an implicit Scalar). Optimised JIT code lets such an object die once its
/// handle is read, so a garbage collection started by another thread can run its finalizer while
/// libtorch still uses it: "Expected false to be true" in <c>Scalar::toDouble</c>, or a segfault.
/// It only shows where other threads allocate during native calls (silos, the solver thread);
/// <c>TorchThreadingTests.Implicit_scalars_survive_collections_started_by_another_thread</c> reproduces it in seconds without this setting.
/// </para>
/// <para>
/// Unoptimised (MinOpts) JIT code reports every argument and local live to the end of its method,
/// which closes the window for all of TorchSharp at once. It is a runtime setting read at startup,
/// so a process that lacks it re-executes itself (same PID, arguments and streams) with
/// <c>DOTNET_JITMinOpts=1</c> and <c>DOTNET_TieredCompilation=0</c> (the framework keeps its
/// precompiled, optimised code). The cost is unoptimised managed code; libtorch's kernels, where
/// the time goes, are unchanged. Special cases (explicit Scalars at single call sites) would not
/// cover TorchSharp's own implicit ones.
/// </para>
/// </summary>
public static class NativeLifetimeGuard
{
    public const string MinOptsVariable = "DOTNET_JITMinOpts";
    public const string TieredVariable = "DOTNET_TieredCompilation";
    /// <summary>Set in the re-executed process so that a failed setting can never loop.</summary>
    private const string AttemptedVariable = "INFLUENCE_REEXECUTED";

    /// <summary>True when this process runs with the setting (it cannot be changed once started).</summary>
    public static bool Active => Environment.GetEnvironmentVariable(MinOptsVariable) == "1";

    /// <summary>
    /// Call first thing in Main. Returns when the process is safe, or when it cannot re-execute
    /// (not Linux, or execve failed), after a warning on stderr; on success it does not return.
    /// </summary>
    public static void EnsureActive()
    {
        if (Active) return;
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(AttemptedVariable) == "1")
        {
            Console.Error.WriteLine($"warning: {MinOptsVariable}=1 is not set: TorchSharp objects can be freed during native calls (intermittent crashes); set it in the environment");
            return;
        }
        var argv = File.ReadAllBytes("/proc/self/cmdline");
        var arguments = Encoding.UTF8.GetString(argv).TrimEnd('\0').Split('\0');
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Select(e => $"{e.Key}={e.Value}")
            .Where(e => !e.StartsWith(MinOptsVariable + "=", StringComparison.Ordinal) && !e.StartsWith(TieredVariable + "=", StringComparison.Ordinal))
            .Concat([$"{MinOptsVariable}=1", $"{TieredVariable}=0", $"{AttemptedVariable}=1"])
            .ToArray();
        Console.Out.Flush();
        Console.Error.Flush();
        // The host's real path (not /proc/self/exe), so that the process keeps its name in ps and pgrep.
        execve(Environment.ProcessPath ?? "/proc/self/exe", [.. arguments, null], [.. environment, null]);
        Console.Error.WriteLine($"warning: could not re-execute with {MinOptsVariable}=1 (errno {Marshal.GetLastPInvokeError()}); TorchSharp objects can be freed during native calls");
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int execve(string path, string?[] argv, string?[] envp);
}
