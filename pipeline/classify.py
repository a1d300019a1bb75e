"""Classify a chunk of items: read, decode and preprocess each, then one batched inference."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from pipeline.archive import ArchiveError
from pipeline.imaging import ImageError
from pipeline.jobs import ItemSpec, Outcome

log = logging.getLogger(__name__)


def classify_items(
    seqs: Sequence[int],
    specs: Sequence[ItemSpec],
    read: Callable[[ItemSpec], bytes],
    prepare: Callable[[bytes], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
) -> list[Outcome]:
    """One Outcome per item, in order. A bad item becomes an error outcome; it never fails the others."""
    from pipeline.preprocess import to_batch

    outcomes: dict[int, Outcome] = {}
    arrays: list[np.ndarray] = []
    ready: list[int] = []
    for seq, spec in zip(seqs, specs):
        try:
            arrays.append(prepare(read(spec)))
            ready.append(seq)
        except (ImageError, ArchiveError) as exc:
            outcomes[seq] = Outcome(seq, error=str(exc))
        except OSError as exc:
            outcomes[seq] = Outcome(seq, error=f"file could not be read: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - one odd file must not fail its chunk
            log.exception("unexpected error on item %s (%s)", seq, spec.name)
            outcomes[seq] = Outcome(seq, error=f"internal error while preparing the image: {type(exc).__name__}")
    if arrays:
        probs = predict(to_batch(arrays))
        labels = probs.argmax(axis=1)
        for i, seq in enumerate(ready):
            p = probs[i]
            outcomes[seq] = Outcome(
                seq, label=int(labels[i]), confidence=float(p[labels[i]]),
                probabilities=[round(float(x), 6) for x in p],
            )
    return [outcomes[s] for s in seqs]
