using Orleans.Serialization;
using Influence.Core.Jobs;
using System.Globalization;
using Influence.Abstractions;
using Influence.Core.Storage;
using Influence.Silo;
using Orleans.TestingHost;

namespace Influence.Grains.Tests;

/// <summary>Runs score jobs on an in-process test cluster and reads their outputs back.</summary>
public static class ClusterScoring
{
    public static async Task<InProcessTestCluster> StartAsync(short silos, string storeRoot)
    {
        var builder = new InProcessTestClusterBuilder(silos);
        builder.ConfigureSilo((_, silo) => silo.AddInMemoryJobState().AddInfluence(new ComputeSettings(), new LocalArtifactStore(storeRoot), allowLocalFiles: true));
        builder.ConfigureClient(client => client.Services.AddSerializer(s => s.AddInfluenceSettings()));
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return cluster;
    }

    public static async Task<JobStatus> RunAsync(IClusterClient client, string jobId, ScoreSettings request, TimeSpan timeout)
    {
        var grain = client.GetGrain<IScoreJobGrain>(jobId);
        using var deadline = new CancellationTokenSource(timeout);
        return await JobPolling.RunToEndAsync(() => grain.Start(request), grain.GetStatus, TimeSpan.FromMilliseconds(100), ct: deadline.Token);
    }

    /// <summary>influence.csv as (test, train) → influence.</summary>
    public static Dictionary<(int Test, int Train), double> ReadInfluence(IArtifactStore store, string prefix)
    {
        using var s = store.OpenRead($"{prefix}/influence.csv");
        using var r = new StreamReader(s);
        Assert.Equal("test_index,train_index,influence", r.ReadLine());
        var result = new Dictionary<(int, int), double>();
        string? line;
        while ((line = r.ReadLine()) is not null)
        {
            var p = line.Split(',');
            result[(int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture))] = double.Parse(p[2], CultureInfo.InvariantCulture);
        }
        return result;
    }

    /// <summary>self_influence.csv by training row, or null when the job wrote none.</summary>
    public static double[]? ReadSelfInfluence(IArtifactStore store, string prefix)
    {
        var key = $"{prefix}/self_influence.csv";
        if (!store.Exists(key)) return null;
        using var s = store.OpenRead(key);
        using var r = new StreamReader(s);
        Assert.Equal("train_index,self_influence", r.ReadLine());
        var values = new List<double>();
        string? line;
        while ((line = r.ReadLine()) is not null) values.Add(double.Parse(line.Split(',')[1], CultureInfo.InvariantCulture));
        return [.. values];
    }

    public static string TempStore() => Directory.CreateTempSubdirectory("influence-store-").FullName;
}
