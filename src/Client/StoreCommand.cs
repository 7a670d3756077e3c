using System.CommandLine;
using Influence.Core.Safety;
using Influence.Storage;

namespace Influence.Client;

/// <summary>`influence store create`: makes the blob container a cluster's silos keep artifacts in.</summary>
public static class StoreCommand
{
    public static Command Create()
    {
        var create = new Command("create", "Create the blob container named by --store (azblob:CONTAINER, connection string in $INFLUENCE_BLOB_CONNECTION_STRING) if it is missing");
        create.Options.Add(ScoreCommand.Store);
        create.SetAction(p =>
        {
            var spec = p.GetValue(ScoreCommand.Store)!;
            try
            {
                bool created = ArtifactStores.CreateContainer(ArtifactStoreOptions.Parse(spec));
                Console.WriteLine(created ? $"created {Secrets.Redact(spec)}" : $"{Secrets.Redact(spec)} exists");
                return 0;
            }
            catch (ArtifactStoreException e) { return ScoreCommand.Fail($"--store {spec}: {e.Message}", 3); }
        });
        var command = new Command("store", "The artifact store");
        command.Subcommands.Add(create);
        return command;
    }
}
