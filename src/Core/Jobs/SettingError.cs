using System.Text.Json;
using System.Text.RegularExpressions;

namespace Influence.Core.Jobs;

/// <summary>
/// A setting out of range or inconsistent with another. The message names settings as
/// {snake_name} (their name in <see cref="SettingsJson"/>); <see cref="Exception.Message"/> shows
/// those names, and the command line shows its flags instead (<see cref="Render"/>), so that Core
/// knows settings, not flags.
/// </summary>
public sealed partial class SettingError(string template) : ArgumentException(Render(template, name => name))
{
    public string Template { get; } = template;

    /// <summary>The reference to a setting in a message: {name} of a C# property name.</summary>
    public static string Name(string property) => "{" + JsonNamingPolicy.SnakeCaseLower.ConvertName(property) + "}";

    /// <summary>The message with each {name} replaced by <paramref name="show"/>(name).</summary>
    public string Render(Func<string, string> show) => Render(Template, show);

    private static string Render(string template, Func<string, string> show) => SettingReference().Replace(template, m => show(m.Groups[1].Value));

    [GeneratedRegex(@"\{([a-z][a-z0-9_]*)\}")]
    private static partial Regex SettingReference();
}
