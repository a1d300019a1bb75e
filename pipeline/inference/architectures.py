"""Architectures by the name a manifest's `arch.name` gives: each module has ARCH_NAME, DEFAULT_ARGS and `build`.

Only the eager backend (and training) builds a network from code; TorchScript and ONNX files carry their graph.
A third model's architecture is a module with those three names and a line here.
"""
from __future__ import annotations

import importlib
from typing import Any

ARCHITECTURES: dict[str, str] = {
    "fashion_vgg": "pipeline.inference.model",
    "efficientnet_lite0": "pipeline.inference.efficientnet",
}


def build_from_arch(arch: dict[str, Any]):
    """The randomly initialised torch module a manifest's `arch` section names, from its recorded arguments."""
    name = arch.get("name")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; this build knows {', '.join(ARCHITECTURES)}")
    module = importlib.import_module(ARCHITECTURES[name])
    return module.build(**{**module.DEFAULT_ARGS, **(arch.get("args") or {})})
