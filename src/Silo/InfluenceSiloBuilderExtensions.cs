using Influence.Core.Storage;
using Influence.Grains;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Influence.Silo;

/// <summary>Settings of an Influence silo (section "Influence" of the configuration).</summary>
public sealed class InfluenceSiloOptions
{
    /// <summary>Root folder of the local artifact store.</summary>
    public string StoreRoot { get; set; } = LocalArtifactStore.DefaultRoot();
    /// <summary>Heavy tasks at once on this silo.</summary>
    public int ConcurrentTasks { get; set; } = 1;
    /// <summary>libtorch threads; 0 = libtorch's default (all cores).</summary>
    public int TorchThreads { get; set; }
}

public static class InfluenceSiloBuilderExtensions
{
    /// <summary>Registers the compute executor, the artifact cache and the artifact store every Influence grain needs.</summary>
    public static ISiloBuilder AddInfluence(this ISiloBuilder silo, Action<InfluenceSiloOptions>? configure = null)
    {
        var options = silo.Services.AddOptions<InfluenceSiloOptions>();
        if (configure is not null) options.Configure(configure);
        options.Validate(o => o.ConcurrentTasks >= 1, "Influence:ConcurrentTasks must be at least 1")
            .Validate(o => o.TorchThreads >= 0, "Influence:TorchThreads must be 0 (default) or more")
            .Validate(o => !string.IsNullOrWhiteSpace(o.StoreRoot), "Influence:StoreRoot must name a folder")
            .ValidateOnStart();
        silo.Services.AddSingleton<IOptions<ComputeOptions>>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<InfluenceSiloOptions>>().Value;
            return Options.Create(new ComputeOptions { ConcurrentTasks = o.ConcurrentTasks, TorchThreads = o.TorchThreads });
        });
        silo.Services.AddPlacementDirector<SpreadByIndexPlacement, SpreadByIndexPlacementDirector>();
        silo.Services.AddSingleton<ComputeExecutor>();
        silo.Services.AddSingleton<ArtifactCache>();
        silo.Services.AddSingleton<IArtifactStore>(sp => new LocalArtifactStore(sp.GetRequiredService<IOptions<InfluenceSiloOptions>>().Value.StoreRoot));
        return silo;
    }
}
