using Influence.Core.Storage;
using Xunit;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

public class HandOffTests
{
    private sealed class Item : IDisposable
    {
        public bool Disposed { get; private set; }
        public void Dispose() => Disposed = true;
    }

    [Fact]
    public void An_item_is_taken_once_by_its_store_and_key_and_keeping_another_disposes_an_untaken_one()
    {
        var handOff = new HandOff();
        var root = Directory.CreateTempSubdirectory("handoff-").FullName;
        IArtifactStore store = new LocalArtifactStore(root), other = new LocalArtifactStore(root);
        var first = new Item();
        handOff.Keep(store, "jobs/a/inverse.safetensors", first);
        Assert.Null(handOff.Take<Item>(store, "jobs/b/inverse.safetensors")); // another key
        Assert.Null(handOff.Take<Item>(other, "jobs/a/inverse.safetensors")); // another store
        Assert.Null(handOff.Take<Tensor>(store, "jobs/a/inverse.safetensors")); // another type
        Assert.Same(first, handOff.Take<Item>(store, "jobs/a/inverse.safetensors"));
        Assert.Null(handOff.Take<Item>(store, "jobs/a/inverse.safetensors")); // taken: the next reader reads the store
        Assert.False(first.Disposed); // the taker owns it

        var untaken = new Item();
        handOff.Keep(store, "jobs/a/hessian.safetensors", untaken);
        handOff.Keep(store, "jobs/c/hessian.safetensors", new Item());
        Assert.True(untaken.Disposed);
        Assert.Null(handOff.Take<Item>(store, "jobs/a/hessian.safetensors"));
        Directory.Delete(root, true);
    }

    [Fact]
    public void A_kept_tensor_outlives_the_dispose_scope_it_was_made_in()
    {
        var handOff = new HandOff();
        var root = Directory.CreateTempSubdirectory("handoff-").FullName;
        var store = new LocalArtifactStore(root);
        using (NewDisposeScope()) handOff.Keep(store, "k", ones(3, dtype: ScalarType.Float64));
        using var taken = handOff.Take<Tensor>(store, "k");
        Assert.NotNull(taken);
        Assert.Equal([1.0, 1, 1], taken!.data<double>().ToArray());
        Directory.Delete(root, true);
    }
}
