using System.CommandLine;
using Influence.Core.Jobs;

namespace Influence.Client;

/// <summary>`influence methods`: every influence method this build has, from the registry (Methods.All).</summary>
public static class MethodsCommand
{
    public static Command Create()
    {
        var command = new Command("methods", "List the influence methods (--method NAME): what each estimates, and what it gives or needs");
        command.SetAction(_ =>
        {
            int width = Methods.Names.Max(n => n.Length) + 2;
            foreach (var m in Methods.All)
            {
                string self = m.SelfInfluenceSource switch
                {
                    SelfInfluenceSource.Preconditioner => "self-influence: yes",
                    SelfInfluenceSource.Solves => "self-influence: with --solve-self-influence (one solve per example)",
                    _ => $"self-influence: none ({m.NoSelfInfluenceReason})",
                };
                Console.WriteLine($"{m.Name.PadRight(width)}{m.Summary}");
                Console.WriteLine($"{new string(' ', width)}{self}{(m.NeedsCheckpoints ? "; needs --optimizer sgd or adam (it sums over checkpoints)" : "")}");
            }
            Console.WriteLine("Parameters and measured accuracy: docs/methods.md.");
            return 0;
        });
        return command;
    }
}
