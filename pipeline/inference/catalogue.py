"""The models a deployment serves: one folder per model under FB_WEIGHTS_DIR, each with its manifest.json.

Reading the catalogue reads manifests only (JSON and a checksum of each manifest): the web service does it for
the model names, classes and versions, without torch, ONNX Runtime or OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.inference.manifest import MANIFEST_NAME, Manifest, WeightsError, load_manifest


class UnknownModel(WeightsError):
    """A job or command named a model this deployment does not have."""


def model_dirs(root: Path) -> dict[str, Path]:
    """{folder name: folder} of every model folder (one holding a manifest.json) under `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise WeightsError(f"no weights folder at {root}; point FB_WEIGHTS_DIR at the folder that holds the "
                           "model folders (weights/photo, weights/fmnist, ...)")
    found = {p.name: p for p in sorted(root.iterdir()) if (p / MANIFEST_NAME).is_file()}
    if not found:
        hint = (" (it holds a manifest.json itself: models now live one folder each, e.g. weights/fmnist/)"
                if (root / MANIFEST_NAME).is_file() else "")
        raise WeightsError(f"no model folders with a {MANIFEST_NAME} under {root}{hint}")
    return found


@dataclass(frozen=True)
class Catalogue:
    """Every model found under `root`, by name."""

    root: Path
    manifests: dict[str, Manifest]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.manifests)

    def get(self, name: str) -> Manifest:
        """The named model's manifest; UnknownModel (saying which there are) if there is none."""
        try:
            return self.manifests[name]
        except KeyError:
            raise UnknownModel(f"unknown model {name!r}: choose one of {', '.join(self.names)}") from None

    def versions(self) -> dict[str, str]:
        """{model: version (manifest sha256)}."""
        return {name: m.version for name, m in self.manifests.items()}


def load_catalogue(root: Path) -> Catalogue:
    """Read every model's manifest under `root` (WeightsError if one is malformed or none is there)."""
    manifests = {}
    for folder_name, folder in model_dirs(root).items():
        manifest = load_manifest(folder)
        manifests[manifest.name] = manifest
    return Catalogue(root=Path(root), manifests=manifests)
