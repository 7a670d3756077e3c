using Influence.Core.Jobs;
using Orleans.Serialization;

namespace Influence.Abstractions;

/// <summary>
/// Core's settings records travel as their one JSON form (<see cref="SettingsJson"/>): the same
/// names and enum words as on the command line, in the store and in summary.json. Every silo and
/// client registers this.
/// </summary>
public static class SettingsSerialization
{
    public static ISerializerBuilder AddInfluenceSettings(this ISerializerBuilder builder) =>
        builder.AddJsonSerializer(isSupported: SettingsJson.IsSettingsType, jsonSerializerOptions: SettingsJson.Options);
}
