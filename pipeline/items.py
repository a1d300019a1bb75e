"""The two values every layer passes around: an item to classify, and what became of it."""
from __future__ import annotations

from dataclasses import dataclass


class SourceUnavailable(RuntimeError):
    """An item's bytes exist but cannot be had right now (object store unreachable, throttled): retry the
    chunk later, never fail the item for it."""


class ItemUnreadable(OSError):
    """This item's bytes cannot be had, though the store answers (an object archived, shorter than listed, out
    of range): the item fails alone, with this message."""


@dataclass(frozen=True)
class Span:
    """Where an archive member's data lies in its archive, as the scan found it, so that a worker can read it
    with one ranged read instead of opening the archive: offset and length of the (compressed) data, the
    compression method, and the size and CRC-32 the directory declares (checked after reading)."""

    offset: int
    length: int
    method: int
    size: int
    crc32: int


@dataclass(frozen=True)
class ItemSpec:
    """An image to classify: its display name, where its bytes are (spooled file, archive member), and the
    label the upload gave it, if any (class folders or labels.csv)."""

    name: str
    source: str
    member: int | None = None
    true_label: int | None = None
    span: Span | None = None


@dataclass(frozen=True)
class Outcome:
    """The result for one item: a label and probabilities, or an error."""

    seq: int
    label: int | None = None
    confidence: float | None = None
    probabilities: list[float] | None = None
    error: str | None = None
