using Xunit;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Facts about TorchSharp's dispose scopes across threads that the solver thread relies on.</summary>
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
}
