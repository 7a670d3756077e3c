using System.Runtime.InteropServices;

namespace Influence.Core.Compute;

/// <summary>
/// Asks libtorch's CPU allocator to back large tensors (≥ 2 MB) with transparent huge pages.
/// <para>
/// Jobs here allocate and free P×P matrices of hundreds of MB (a 7,850² float64 Hessian is 493 MB)
/// several times. With 4 KB pages every fresh allocation is ~120,000 page faults, and on this
/// kind of VM the kernel time they cost was as large as the arithmetic: the 2,000-row
/// exact job spent 18 s in the kernel and 17 s preparing the Hessian, against 8 s and 10 s with
/// huge pages (docs/benchmarks.md). libtorch reads <c>THP_MEM_ALLOC_ENABLE</c> once, at its first
/// allocation, from the native environment, which .NET's Environment.SetEnvironmentVariable does not
/// change; so this calls libc's setenv. A value the user set is left alone (0 turns it off).
/// </para>
/// </summary>
public static class HugePages
{
    public const string Variable = "THP_MEM_ALLOC_ENABLE";

    /// <summary>Call in Main before any TorchSharp call (after <see cref="NativeLifetimeGuard.EnsureActive"/>).</summary>
    public static void Enable()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(Variable) is not null) return;
        if (setenv(Variable, "1", 0) == 0) Environment.SetEnvironmentVariable(Variable, "1"); // child processes see it too
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int setenv(string name, string value, int overwrite);
}
