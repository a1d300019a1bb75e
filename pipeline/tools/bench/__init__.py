"""`fashion-batch bench`: the pipeline's throughput against its tight-loop limit, on a quiet machine."""
