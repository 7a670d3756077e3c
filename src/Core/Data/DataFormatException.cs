using Influence.Core.Safety;

namespace Influence.Core.Data;

/// <summary>
/// Bad input data. The message names the file, the place in it and the problem. Whatever the
/// thrower quoted, the message stays short: the file name and the problem are capped here too
/// (a safety net behind the capped values each reader quotes).
/// </summary>
public sealed class DataFormatException(string file, string? location, string problem)
    : Exception(location is null ? $"{Echo.Cap(file, 200)}: {Echo.Cap(problem, 400)}" : $"{Echo.Cap(file, 200)}, {Echo.Cap(location, 100)}: {Echo.Cap(problem, 400)}")
{
    public string File { get; } = file;
    public string? Location { get; } = location;
    public string Problem { get; } = problem;
}
