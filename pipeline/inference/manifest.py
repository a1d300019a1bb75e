"""A model's weights manifest (weights/<model>/manifest.json): what a loader needs, and checksums it must trust.

Everything model-specific is read from here: the architecture (`arch`), the preprocessing (`preprocess.kind`,
pipeline/images/kinds.py), the input shape, the classes, and how to serve it (`serving`: the preferred backend
per pool, the inference batch). pipeline/inference/catalogue.py finds the models under FB_WEIGHTS_DIR.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.images.kinds import kind_of

MANIFEST_NAME = "manifest.json"
FORMAT = 1
REQUIRED_KEYS = ("format", "arch", "classes", "preprocess", "files")


class WeightsError(RuntimeError):
    """Weights that are missing, malformed or do not match their manifest; the message says what to do."""


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest; `files` maps a name (a backend, or "sample") to {path, sha256, bytes}."""

    root: Path
    classes: list[str]
    arch: dict[str, Any]
    preprocess: Any  # the config of its preprocessing kind: PreprocessConfig, LetterboxConfig, ...
    files: dict[str, dict[str, Any]]
    accuracy: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # sha256 of manifest.json: names these weights on every result they give
    name: str = ""  # the model's name (`name` in the manifest, else its folder's)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image as the network takes it."""
        return tuple(self.preprocess.input_shape)

    @property
    def serving(self) -> dict[str, Any]:
        """How to serve it: {"cpu": backend, "gpu": backend, "batch": images per inference call}, all optional."""
        return dict(self.raw.get("serving") or {})


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(root: Path, path: Path) -> dict[str, Any]:
    """The manifest's record of one file: path relative to `root`, sha256 and size."""
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def load_manifest(weights_dir: Path) -> Manifest:
    """Read and validate `weights_dir/manifest.json`; raises WeightsError with the reason."""
    root = Path(weights_dir)
    path = root / MANIFEST_NAME
    try:
        text = path.read_bytes()
        raw = json.loads(text)
    except FileNotFoundError:
        raise WeightsError(f"no weights manifest at {path}; run `python -m training.train` to create the "
                           "weights, or point FB_WEIGHTS_DIR at the folder that holds the model folders") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights manifest {path}: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise WeightsError(f"weights manifest {path} lacks {missing}; re-export the weights")
    if raw["format"] != FORMAT:
        raise WeightsError(f"weights manifest {path} has format {raw['format']}, this build reads {FORMAT}")
    try:
        preprocess = kind_of(raw["preprocess"]).config_from(raw["preprocess"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights manifest {path}: bad 'preprocess' section: {exc}") from None
    return Manifest(root=root, classes=list(raw["classes"]), arch=dict(raw["arch"]), preprocess=preprocess,
                    files=dict(raw["files"]), accuracy=dict(raw.get("accuracy", {})), raw=raw,
                    version=hashlib.sha256(text).hexdigest(), name=str(raw.get("name") or root.name))


def verified_path(manifest: Manifest, backend: str) -> Path:
    """Path of the file for `backend` after checking its sha256 against the manifest; else WeightsError."""
    entry = manifest.files.get(backend)
    if entry is None:
        raise WeightsError(f"the weights manifest in {manifest.root} lists no file for {backend!r} "
                           f"(it lists {sorted(manifest.files)}); re-export the weights")
    path = manifest.root / entry["path"]
    if not path.is_file():
        raise WeightsError(f"weights file {path} for {backend!r} is missing; restore it or re-export the weights")
    found = sha256_file(path)
    if found != entry["sha256"]:
        raise WeightsError(
            f"weights file {path} does not match its manifest: expected sha256 {entry['sha256']}, found {found}. "
            "The file was modified or replaced; refusing to load it. Restore the file that goes with this "
            "manifest (e.g. from the release or git), or re-export the weights with `python -m training.train`."
        )
    return path
