namespace Influence.Core.Data;

/// <summary>Bad input data. The message names the file, the place in it and the problem.</summary>
public sealed class DataFormatException(string file, string? location, string problem)
    : Exception(location is null ? $"{file}: {problem}" : $"{file}, {location}: {problem}")
{
    public string File { get; } = file;
    public string? Location { get; } = location;
    public string Problem { get; } = problem;
}
