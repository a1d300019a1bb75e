"""Training and evaluation reports: curves, confusion matrices, per-class accuracy tables."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # reports are files; never open a window
    import matplotlib.pyplot as plt

    return plt


def confusion(labels: np.ndarray, preds: np.ndarray, n: int = 10) -> np.ndarray:
    """Counts (true, predicted) as an n x n int matrix."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(preds)), 1)
    return cm


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, n: int = 10) -> list[tuple[int, float]]:
    """[(support, accuracy)] per class; accuracy is nan for a class with no samples."""
    cm = confusion(labels, preds, n)
    return [(int(cm[i].sum()), float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan")) for i in range(n)]


def write_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Loss and validation accuracy per epoch."""
    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], label="train (augmented)")
    a.plot(ep, [h["val_loss"] for h in history], label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend()
    b.plot(ep, [h["val_acc"] for h in history])
    b.set_xlabel("epoch"), b.set_ylabel("validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_confusion(labels: np.ndarray, preds: np.ndarray, classes: Sequence[str], path: Path,
                    title: str = "") -> None:
    """Row-normalized confusion matrix with counts, as a PNG."""
    plt = _pyplot()
    cm = confusion(labels, preds, len(classes))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_class_markdown(labels: np.ndarray, preds: np.ndarray, classes: Sequence[str]) -> str:
    """A markdown table: class, support, accuracy."""
    rows = ["| class | n | accuracy |", "|---|---:|---:|"]
    for name, (n, acc) in zip(classes, per_class_accuracy(labels, preds, len(classes))):
        rows.append(f"| {name} | {n} | {acc:.3f} |" if n else f"| {name} | 0 | - |")
    overall = float((np.asarray(labels) == np.asarray(preds)).mean()) if len(labels) else float("nan")
    rows.append(f"| **all** | {len(labels)} | {overall:.3f} |")
    return "\n".join(rows) + "\n"


def write_per_class(labels: np.ndarray, preds: np.ndarray, classes: Sequence[str], path: Path) -> None:
    """Write the per-class accuracy table as markdown."""
    path.write_text(per_class_markdown(labels, preds, classes))
