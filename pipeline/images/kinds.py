"""Each model's preprocessing, by the `kind` its manifest names: a config class and the module that prepares.

    kind = kind_of(manifest_preprocess)          # a light look-up: no OpenCV, no image code imported
    cfg = kind.config_from(manifest_preprocess)  # PreprocessConfig, LetterboxConfig, ...
    x = kind.prepare(image_bytes, cfg, max_pixels=...)   # (C, S, S) float32 network input

A manifest without a `kind` is the Fashion-MNIST CNN's (segmentation to a 28x28 grey image). A new kind is a
config class (with `input_shape`), a module with `prepare(data, cfg, *, max_pixels)`, `sample_input(images, cfg)`
and, for the bench's step table, `decode_step`, `prepare_step` and `draft_side`; and a line here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

DEFAULT_KIND = "segment"


@dataclass(frozen=True)
class Kind:
    """One preprocessing: where its config class and its preparing module live (imported on first use)."""

    name: str
    config: str  # "module:Class" of a dataclass with from_dict/to_dict and `input_shape`
    module: str  # has prepare(data, cfg, *, max_pixels) and sample_input(images, cfg)

    def config_class(self) -> type:
        mod, _, cls = self.config.partition(":")
        return getattr(importlib.import_module(mod), cls)

    def config_from(self, section: dict[str, Any]):
        """The config the manifest's `preprocess` section describes (its `kind` key left out)."""
        return self.config_class().from_dict({k: v for k, v in section.items() if k != "kind"})

    @property
    def prepare(self) -> Callable[..., np.ndarray]:
        """`prepare(data, cfg, *, max_pixels)`: image bytes -> (C, S, S) float32; raises ImageError."""
        return importlib.import_module(self.module).prepare

    def steps(self):
        """The preparing module itself (the bench times its `decode_step` and `prepare_step` apart)."""
        return importlib.import_module(self.module)

    @property
    def sample_input(self) -> Callable[[np.ndarray, Any], np.ndarray]:
        """`sample_input(images, cfg)`: a manifest sample's stored images -> the (N, C, S, S) network batch."""
        return importlib.import_module(self.module).sample_input


KINDS: dict[str, Kind] = {
    "segment": Kind("segment", "pipeline.images.config:PreprocessConfig", "pipeline.images.preprocess"),
    "letterbox": Kind("letterbox", "pipeline.images.letterbox:LetterboxConfig", "pipeline.images.letterbox"),
}


def kind_of(section: dict[str, Any]) -> Kind:
    """The Kind a manifest's `preprocess` section names; ValueError for one this build does not know."""
    name = section.get("kind", DEFAULT_KIND)
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown preprocessing kind {name!r}; this build knows {', '.join(KINDS)}") from None


def kind_of_config(cfg: Any) -> Kind:
    """The Kind of a config object (its class names it)."""
    name = getattr(cfg, "kind", DEFAULT_KIND)
    return KINDS[name]
