"""The edge: the `fashion-batch` CLI, its HTTP client, the local launcher, embedded servers, the benchmark.

Nothing in the project imports this package; it imports everything it drives.
"""
