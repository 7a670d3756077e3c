using Xunit;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Facts about TorchSharp across threads that silos and the solver thread rely on.</summary>
public class TorchThreadingTests
{
    [Fact]
    public void A_scope_on_one_thread_does_not_take_tensors_made_on_another()
    {
        using var opened = new ManualResetEventSlim();
        using var made = new ManualResetEventSlim();
        Tensor? other = null;
        var a = new Thread(() =>
        {
            using (var scope = NewDisposeScope())
            {
                opened.Set();
                made.Wait();
            }
        });
        a.Start();
        opened.Wait();
        var b = new Thread(() => { other = ones(3); made.Set(); });
        b.Start();
        b.Join();
        a.Join();
        Assert.False(other!.IsInvalid, "a tensor made on thread B was disposed by thread A's scope");
        Assert.Equal(3, other.sum().item<float>());
    }

    [Fact]
    public void The_test_host_runs_with_the_native_lifetime_setting()
    {
        // Without it the stress test below crashes the host in 1-10 s (measured), taking every
        // other test's report with it: say so plainly first.
        Assert.True(Compute.NativeLifetimeGuard.Active, $"{Compute.NativeLifetimeGuard.MinOptsVariable}=1 is not set for the test host (tests/test.runsettings)");
    }

    [Fact]
    public void Implicit_scalars_survive_collections_started_by_another_thread()
    {
        // TorchSharp's a.add_(b) makes a Scalar (alpha = 1) that nothing keeps alive through the
        // native call; another thread forces collections meanwhile. A freed Scalar shows as
        // "Expected false to be true" (Scalar::toDouble) or a segfault, or as a wrong sum.
        bool stop = false;
        var collector = new Thread(() =>
        {
            long allocated = 0;
            while (!Volatile.Read(ref stop))
            {
                var garbage = new byte[1000];
                allocated += garbage.Length;
                if ((allocated & 0xFFFFF) == 0) GC.Collect(0);
            }
        }) { IsBackground = true };
        collector.Start();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int collectionsBefore = GC.CollectionCount(0);
        long rounds = 0;
        try
        {
            while (clock.Elapsed < TimeSpan.FromSeconds(6))
            {
                using var scope = NewDisposeScope();
                var a = zeros(64, 64, dtype: ScalarType.Float64);
                var b = ones(64, 64, dtype: ScalarType.Float64);
                for (int i = 0; i < 1000; i++) (i % 2 == 0 ? a.add_(b) : a.add_(b, 1.0)).mul_(1.0);
                Assert.Equal(1000.0, a[3, 5].ToDouble());
                rounds++;
            }
        }
        finally { Volatile.Write(ref stop, true); }
        Assert.True(GC.CollectionCount(0) - collectionsBefore > 100, "too few collections ran for the test to mean anything");
        Assert.True(rounds > 10);
    }
}
