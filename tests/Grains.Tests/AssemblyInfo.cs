// Cluster tests share two cores: run them one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
