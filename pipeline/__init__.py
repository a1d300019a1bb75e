"""The core, one sub-package per concern: images, inference, blobs, store; plus settings, items, callbacks and
the Celery application factory (broker). `pipeline.tools` is the edge (CLI, launcher, benchmark) that nothing
imports. README: Architecture."""
