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
    if arrays:
        batch = to_batch(arrays)
        probs = np.concatenate([predict(batch[i:i + infer_batch]) for i in range(0, len(batch), infer_batch)])
        labels = probs.argmax(axis=1)
        for i, seq in enumerate(ready):
            p = probs[i]
            outcomes[seq] = Outcome(
                seq, label=int(labels[i]), confidence=float(p[labels[i]]),
                probabilities=[round(float(x), 6) for x in p],
            )
    return [outcomes[s] for s in seqs]
