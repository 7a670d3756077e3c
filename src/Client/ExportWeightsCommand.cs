using System.CommandLine;
using Influence.Core.Models;
using Influence.Core.Safety;

namespace Influence.Client;

/// <summary>`influence export-weights`: a trained model (checkpoint.json) as a safetensors state_dict that PyTorch loads.</summary>
public static class ExportWeightsCommand
{
    public static Command Create()
    {
        var checkpointArg = new Argument<string>("checkpoint") { Description = "checkpoint.json of a score, loo or other job's --out" };
        var output = new Option<string>("--out") { Description = "The .safetensors file to write (not overwritten unless --overwrite)", Required = true };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing --out file" };
        var command = new Command("export-weights", "Write a trained model's parameters as a safetensors state_dict with nn.Sequential's names (docs/pytorch.md)");
        command.Arguments.Add(checkpointArg);
        command.Options.Add(output);
        command.Options.Add(overwrite);
        command.SetAction(p =>
        {
            string path = p.GetValue(checkpointArg)!, target = p.GetValue(output)!;
            if (!target.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
                return ScoreCommand.Fail($"--out {Echo.Cap(target)}: name a .safetensors file", 2);
            if (File.Exists(target) && !p.GetValue(overwrite))
                return ScoreCommand.Fail($"--out {Echo.Cap(target)} exists (--overwrite replaces it)", 2);
            Checkpoint checkpoint;
            try { using var s = File.OpenRead(path); checkpoint = Checkpoint.Load(s); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                return ScoreCommand.Fail($"{Echo.Cap(path)}: {e.Message}", 2);
            }
            var temporary = target + ".partial";
            using (var s = File.Create(temporary)) PyTorchWeights.Save(s, checkpoint.Spec, checkpoint.Parameters);
            File.Move(temporary, target, overwrite: true);
            Console.WriteLine($"wrote {checkpoint.Spec.Describe()} ({checkpoint.Spec.ParameterCount:N0} parameters) to {target}; in PyTorch:");
            Console.WriteLine($"  model = {PyTorchWeights.SequentialCode(checkpoint.Spec)}");
            Console.WriteLine($"  model.load_state_dict(safetensors.torch.load_file(\"{Path.GetFileName(target)}\"))");
            return 0;
        });
        return command;
    }
}
