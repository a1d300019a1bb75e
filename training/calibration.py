"""Confidence that means what it says: expected calibration error, reliability diagrams, temperature scaling.

Temperature scaling (Guo et al., 2017) divides the logits by one number T fitted on held-out data to minimise
the negative log-likelihood; it changes no label, only how sure each label says it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ECE_BINS = 15


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin: how many predictions fell in it, their mean confidence and accuracy."""
    conf, pred = probs.max(1), probs.argmax(1)
    right = pred == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # (lo, hi] per bin
    out = []
    for b in range(bins):
        sel = which == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(sel.sum()),
                    "confidence": float(conf[sel].mean()) if sel.any() else float("nan"),
                    "accuracy": float(right[sel].mean()) if sel.any() else float("nan")})
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the bin-weighted mean |accuracy - confidence| (0 is perfectly calibrated)."""
    table = reliability(probs, labels, bins)
    n = sum(b["n"] for b in table)
    return float(sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in table if b["n"]) / max(n, 1))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, in float64 for the fit."""
    z = np.asarray(logits, np.float64) / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    p = softmax(logits, temperature)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.maximum(p, 1e-12)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.25, hi: float = 8.0,
                    steps: int = 200) -> float:
    """The T in [lo, hi] minimizing NLL: a log-spaced grid, then a finer grid around the best point."""
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), steps))
    best = float(grid[np.argmin([nll(logits, labels, t) for t in grid])])
    fine = np.linspace(best / 1.05, best * 1.05, 101)
    return float(fine[np.argmin([nll(logits, labels, t) for t in fine])])


def fold_temperature(head, temperature: float) -> None:
    """Divide a final linear layer (torch.nn.Linear) by `temperature` in place, so its logits come out already
    scaled: every exported backend is calibrated with no change to the loaders (mirror averaging of the logits
    is linear, so it commutes with the division)."""
    import torch

    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)


def write_reliability(probs: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> float:
    """A reliability diagram (accuracy against confidence per bin, with counts) as a PNG; returns the ECE."""
    from training.report import _pyplot

    plt = _pyplot()
    table = reliability(probs, labels)
    score = ece(probs, labels)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    centres = [(b["lo"] + b["hi"]) / 2 for b in table]
    width = 1.0 / len(table)
    top.bar(centres, [b["accuracy"] if b["n"] else 0 for b in table], width=width * 0.95, color="#3b82f6",
            label="accuracy in bin")
    top.plot([0, 1], [0, 1], "--", color="#666", label="perfect calibration")
    top.scatter([b["confidence"] for b in table if b["n"]], [b["accuracy"] for b in table if b["n"]], color="#dc2626",
                s=12, zorder=3, label="(mean confidence, accuracy)")
    top.set_ylabel("accuracy"), top.set_ylim(0, 1), top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{title}  ECE ({len(table)} bins) = {score:.3f}")
    bottom.bar(centres, [b["n"] for b in table], width=width * 0.95, color="#9ca3af")
    bottom.set_xlabel("confidence"), bottom.set_ylabel("images"), bottom.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return score
