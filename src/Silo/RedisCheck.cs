using Influence.Core.Safety;
using StackExchange.Redis;

namespace Influence.Silo;

/// <summary>Whether a configured Redis answers, asked once at start so that a wrong address fails at once with its reason.</summary>
public static class RedisCheck
{
    /// <summary>null when Redis at <paramref name="connection"/> answers a PING within a few seconds; else what is wrong.</summary>
    public static async Task<string?> ProblemAsync(string connection)
    {
        ConfigurationOptions options;
        try { options = ConfigurationOptions.Parse(connection); }
        catch (ArgumentException e) { return $"'{Secrets.Redact(connection)}' is not a Redis connection string: {Secrets.Redact(e.Message)}"; }
        options.AbortOnConnectFail = true;
        options.ConnectTimeout = 5000;
        options.ConnectRetry = 1;
        try
        {
            await using var redis = await ConnectionMultiplexer.ConnectAsync(options);
            await redis.GetDatabase().PingAsync();
            return null;
        }
        catch (RedisException e)
        {
            return $"cannot reach Redis at '{Secrets.Redact(connection)}': {Secrets.Redact(e.Message.Split('\n')[0])}";
        }
    }
}
