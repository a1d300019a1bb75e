"""The network and its runtimes: architecture, weights manifest, backends, batch classification, timings."""
