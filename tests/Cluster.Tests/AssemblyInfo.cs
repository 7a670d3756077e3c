// Silo processes, servers and jobs share 2 cores: one test class at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
