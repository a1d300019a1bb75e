"""The two values every layer passes around: an item to classify, and what became of it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ItemSpec:
    """An image to classify: its display name, where its bytes are (spooled file, archive member), and the
    label the upload gave it, if any (class folders or labels.csv)."""

    name: str
    source: str
    member: int | None = None
    true_label: int | None = None


@dataclass(frozen=True)
class Outcome:
    """The result for one item: a label and probabilities, or an error."""

    seq: int
    label: int | None = None
    confidence: float | None = None
    probabilities: list[float] | None = None
    error: str | None = None
