"""Classify a chunk of items: read, decode and preprocess each, then batched inference."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from pipeline.images.archive import ArchiveError
from pipeline.images.imaging import ImageError
from pipeline.items import ItemSpec, Outcome, SourceUnavailable

log = logging.getLogger(__name__)

# Images per inference call. Measured on one thread: ONNX, INT8 and eager run as fast at 16-256 images per call
# (TorchScript is fastest at 16-64), while a worker's activation memory grows with the batch (+190 MB RSS at
# 256 for the four backends, +67 MB at 64). So chunks stay large for the queue, and inference goes in 64s.
INFER_BATCH = 64
# A model whose input is larger than this many values per image (the photo model's 3x224x224) infers in
# LARGE_INFER_BATCH, unless its manifest says otherwise (`serving.batch`): activations grow with the input.
SMALL_INPUT = 64 * 64 * 3
LARGE_INFER_BATCH = 32


def infer_batch_for(manifest) -> int:
    """Images per inference call for a model: its manifest's `serving.batch`, else by input size."""
    batch = manifest.serving.get("batch")
    if batch:
        return int(batch)
    c, h, w = manifest.input_shape
    return INFER_BATCH if c * h * w <= SMALL_INPUT else LARGE_INFER_BATCH


def classify_items(
    seqs: Sequence[int],
    specs: Sequence[ItemSpec],
    read: Callable[[ItemSpec], bytes],
    prepare: Callable[[bytes], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    infer_batch: int = INFER_BATCH,
) -> list[Outcome]:
    """One Outcome per item, in order. A bad item becomes an error outcome; it never fails the others.

    SourceUnavailable from `read` (the store cannot be reached) is no fault of the item: it propagates, and the
    chunk is retried.
    """
    from pipeline.images.preprocess import to_batch

    outcomes: dict[int, Outcome] = {}
    arrays: list[np.ndarray] = []
    ready: list[int] = []

    def infer() -> None:
        # One inference batch at a time: a chunk of 512 photos prepared at once would hold 300 MB of input.
        probs = predict(to_batch(arrays))
        labels = probs.argmax(axis=1)
        for i, seq in enumerate(ready):
            p = probs[i]
            outcomes[seq] = Outcome(
                seq, label=int(labels[i]), confidence=float(p[labels[i]]),
                probabilities=[round(float(x), 6) for x in p],
            )
        arrays.clear()
        ready.clear()

    for seq, spec in zip(seqs, specs):
        try:
            arrays.append(prepare(read(spec)))
            ready.append(seq)
        except SourceUnavailable:
            raise
        except (ImageError, ArchiveError) as exc:
            outcomes[seq] = Outcome(seq, error=str(exc))
        except OSError as exc:
            outcomes[seq] = Outcome(seq, error=f"file could not be read: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - one odd file must not fail its chunk
            log.exception("unexpected error on item %s (%s)", seq, spec.name)
            outcomes[seq] = Outcome(seq, error=f"internal error while preparing the image: {type(exc).__name__}")
        if len(arrays) >= infer_batch:
            infer()
    if arrays:
        infer()
    return [outcomes[s] for s in seqs]
