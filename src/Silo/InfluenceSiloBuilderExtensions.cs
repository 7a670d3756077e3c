using System.Net;
using System.Net.Sockets;
using Influence.Abstractions;
using Orleans.Serialization;
using Influence.Core.Storage;
using Influence.Grains;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using StackExchange.Redis;

namespace Influence.Silo;

public static class InfluenceSiloBuilderExtensions
{
    /// <summary>The grain-state provider coordinators keep their job records in.</summary>
    public const string JobStorage = JobGrainNames.StorageName;

    /// <summary>Registers what every Influence grain needs: the compute executor, the artifact cache, the artifact store, the placement of workers.</summary>
    /// <param name="allowLocalFiles">Whether jobs may name local input files: only for a silo inside the user's own process (the embedded mode).</param>
    public static ISiloBuilder AddInfluence(this ISiloBuilder silo, ComputeSettings compute, IArtifactStore store, bool allowLocalFiles = false)
    {
        var problems = compute.Problems().ToList();
        if (problems.Count > 0) throw new ArgumentException(string.Join("; ", problems));
        silo.Services.AddSingleton(Options.Create(compute));
        silo.Services.AddSerializer(s => s.AddInfluenceSettings());
        silo.Services.AddPlacementDirector<SpreadByIndexPlacement, SpreadByIndexPlacementDirector>();
        silo.Services.AddSingleton<ComputeExecutor>();
        silo.Services.AddHostedService<ComputeDrain>();
        silo.Services.AddSingleton<ArtifactCache>();
        silo.Services.AddSingleton<IArtifactStore>(store as MeteredArtifactStore ?? new MeteredArtifactStore(store));
        silo.Services.AddSingleton<IOptions<InputFileOptions>>(Options.Create(new InputFileOptions { AllowLocalFiles = allowLocalFiles }));
        return silo;
    }

    /// <summary>
    /// Membership, job state and reminders. Localhost: membership on this machine, job state and
    /// reminders in memory (they live as long as the cluster). Redis: all three in Redis, so a job
    /// outlives any one silo.
    /// </summary>
    public static ISiloBuilder UseInfluenceCluster(this ISiloBuilder silo, ClusterSettings cluster)
    {
        var problems = cluster.Problems().ToList();
        if (problems.Count > 0) throw new ArgumentException(string.Join("; ", problems));
        silo.Configure<ClusterOptions>(o => { o.ClusterId = cluster.ClusterId; o.ServiceId = cluster.ServiceId; });
        if (cluster.SiloName is { Length: > 0 } name) silo.Configure<SiloOptions>(o => o.SiloName = name);

        if (cluster.IsRedis)
        {
            var redis = ConfigurationOptions.Parse(cluster.Redis!);
            silo.UseRedisClustering(o => o.ConfigurationOptions = redis.Clone());
            silo.AddRedisGrainStorage(JobStorage, o => o.ConfigurationOptions = redis.Clone());
            WithOrleansSerializer<Orleans.Persistence.RedisStorageOptions>(silo);
            silo.UseRedisReminderService(o => o.ConfigurationOptions = redis.Clone());
            var ip = cluster.AdvertisedIP is { Length: > 0 } a ? IPAddress.Parse(a) : FirstAddress();
            // Listen on the advertised address only, unless told otherwise (a pod's IP is on its own interface).
            silo.ConfigureEndpoints(ip, cluster.SiloPort, cluster.GatewayPort, listenOnAnyHostAddress: cluster.ListenOnAllInterfaces);
        }
        else
        {
            silo.UseLocalhostClustering(cluster.SiloPort, cluster.GatewayPort, new IPEndPoint(IPAddress.Loopback, cluster.PrimaryPort), cluster.ServiceId, cluster.ClusterId);
            silo.AddInMemoryJobState();
        }

        if (cluster.FastFailureDetection)
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromSeconds(2);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
                o.TableRefreshTimeout = TimeSpan.FromSeconds(5);
            });
        return silo;
    }

    /// <summary>Job records and reminders in memory: they live as long as the cluster (the embedded mode, localhost clusters, test clusters).</summary>
    public static ISiloBuilder AddInMemoryJobState(this ISiloBuilder silo)
    {
        silo.AddMemoryGrainStorage(JobStorage);
        WithOrleansSerializer<MemoryGrainStorageOptions>(silo);
        silo.UseInMemoryReminderService();
        return silo;
    }

    /// <summary>
    /// Job records hold Core's settings records: stored with the Orleans serializer (which writes
    /// settings as their one JSON form), not the providers' default Newtonsoft reflection. In memory
    /// too: the memory provider's storage grains serialize a record when a job's grain is activated
    /// again on another silo, and Newtonsoft's failure there was an exception no silo could send
    /// back (CodecNotFoundException in a test that kills a silo mid-study).
    /// </summary>
    private static void WithOrleansSerializer<TOptions>(ISiloBuilder silo) where TOptions : class, Orleans.Storage.IStorageProviderSerializerOptions =>
        silo.Services.AddOptions<TOptions>(JobStorage)
            .Configure<Serializer>((o, serializer) => o.GrainStorageSerializer = new Orleans.Storage.OrleansGrainStorageSerializer(serializer));

    private static IPAddress FirstAddress()
    {
        var addresses = Dns.GetHostAddresses(Dns.GetHostName()).Where(a => a.AddressFamily == AddressFamily.InterNetwork).ToList();
        return addresses.FirstOrDefault(a => !IPAddress.IsLoopback(a)) ?? addresses.FirstOrDefault() ?? IPAddress.Loopback;
    }
}
