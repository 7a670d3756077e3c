using System.Runtime.InteropServices;
using TorchSharp;

namespace Influence.Core.Compute;

/// <summary>The one place the compute device is chosen: CUDA when libtorch sees a GPU, else CPU.</summary>
public static class Devices
{
    private static readonly Lazy<torch.Device> Chosen = new(() =>
        torch.cuda.is_available() ? torch.CUDA : torch.CPU);

    public static torch.Device Default => Chosen.Value;

    /// <summary>Sets libtorch's intra- and inter-op thread counts once per process (a second call is ignored).</summary>
    public static void ConfigureThreads(int threads)
    {
        lock (Sync)
        {
            if (configured) return;
            configured = true;
            if (threads > 0)
            {
                torch.set_num_threads(threads);
                try { torch.set_num_interop_threads(threads); }
                catch (ExternalException) { /* libtorch allows this only before any parallel work ran */ }
            }
        }
    }

    private static readonly object Sync = new();
    private static bool configured;
}
