using Influence.Core.Hessians;
using Influence.Core.Models;
using Influence.Core.Objectives;
using Influence.Core.Scoring;
using static TorchSharp.torch;

namespace Influence.Core.Tests;

/// <summary>Test shorthands over the scoring pipeline.</summary>
public static class ExactScoring
{
    /// <summary>The exact influence in one call (the jobs build a ScorePlan per method): one term at θ̂ with preconditioned queries (Q×P), self-influence from the factorisation (or none).</summary>
    public static ShardScores Score(ModelSpec spec, Tensor theta, DataTensors rows, int firstIndex, Tensor preconditionedQueries,
        HessianInverse? inverse, int topK, int batchSize = 512, IProgress<long>? progress = null)
    {
        // The plan borrows theta, the queries and the inverse: only the self-influence's buffer is disposed here.
        using var self = inverse is null ? null : new SelfInfluence.Exact(inverse, ownsInverse: false);
        var plan = new ScorePlan([new ScoreTerm(theta, preconditionedQueries, 1.0)], self, cosine: false);
        try { return ShardScorer.Score(spec, plan, rows, firstIndex, topK, batchSize, long.MaxValue, progress); }
        finally { plan.ReleaseQueries(); }
    }

}
