"""Confidence that means what it says: expected calibration error, reliability diagrams, temperature scaling.

Temperature scaling (Guo et al., 2017) divides the logits by one number T fitted on held-out data to minimise
the negative log-likelihood; it changes no label, only how sure each label says it is.

The held-out part of realphoto-train is easier than the photos the model meets (52% catalogue shoes), so a T
fitted there plainly is over-confident elsewhere. `CALIBRATION_METHODS` are the ways of fitting the one T
(`fit_calibration`): plain NLL, class-balanced NLL, and class-balanced NLL over the held-out photos plus
augmented variants of them; `balanced-source` also weighs the sources of a class equally, `per-source` weighs
every source the same (and the classes within a source the same).
`leave_one_source_out` scores a method by fitting on all but one source and measuring the class-balanced ECE
on the one left out, which is how the method is chosen (never on realphoto-dev).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ECE_BINS = 15


CALIBRATION_METHODS = ("heldout", "balanced", "balanced-augmented", "balanced-source", "balanced-source-augmented",
                       "per-source", "per-source-augmented")


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS,
                weights: np.ndarray | None = None) -> list[dict[str, float]]:
    """Per equal-width confidence bin: how many predictions fell in it, their mean confidence and accuracy
    (with `weights`, weighted means; `weight` is the bin's total weight, `n` still the count)."""
    conf, pred = probs.max(1), probs.argmax(1)
    right = pred == np.asarray(labels)
    w = np.ones(len(conf)) if weights is None else np.asarray(weights, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # (lo, hi] per bin
    out = []
    for b in range(bins):
        sel = which == b
        ws = w[sel].sum()
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(sel.sum()), "weight": float(ws),
                    "confidence": float((w[sel] * conf[sel]).sum() / ws) if ws > 0 else float("nan"),
                    "accuracy": float((w[sel] * right[sel]).sum() / ws) if ws > 0 else float("nan")})
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS, weights: np.ndarray | None = None) -> float:
    """Expected calibration error: the bin-weighted mean |accuracy - confidence| (0 is perfectly calibrated);
    with `weights`, each prediction counts that much (see `balanced_ece`)."""
    table = reliability(probs, labels, bins, weights)
    total = sum(b["weight"] for b in table)
    return float(sum(b["weight"] * abs(b["accuracy"] - b["confidence"]) for b in table if b["weight"] > 0)
                 / max(total, 1e-12))


def balanced_weights(labels: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Per-sample weights (mean 1) under which every class present weighs the same; with `groups` (the source
    of each sample), the groups present within a class also weigh the same as each other."""
    labels = np.asarray(labels)
    groups = np.zeros(len(labels), np.int64) if groups is None else np.asarray(groups)
    w = np.zeros(len(labels), np.float64)
    classes = np.unique(labels)
    for c in classes:
        in_c = labels == c
        cells = np.unique(groups[in_c])
        for g in cells:
            sel = in_c & (groups == g)
            w[sel] = 1.0 / (len(classes) * len(cells) * sel.sum())
    return w * len(labels) if len(labels) else w


def balanced_ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with every class weighing the same (what a set with as many photos of each class measures)."""
    return ece(probs, labels, bins, balanced_weights(labels))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, in float64 for the fit."""
    z = np.asarray(logits, np.float64) / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float, weights: np.ndarray | None = None) -> float:
    """Mean (or `weights`-weighted mean) negative log-likelihood of `labels` under softmax(logits / temperature)."""
    p = softmax(logits, temperature)[np.arange(len(labels)), np.asarray(labels)]
    return float(np.average(-np.log(np.maximum(p, 1e-12)), weights=weights))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.25, hi: float = 8.0,
                    steps: int = 200, weights: np.ndarray | None = None) -> float:
    """The T in [lo, hi] minimizing (weighted) NLL: a log-spaced grid, then a finer grid around the best point."""
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), steps))
    best = float(grid[np.argmin([nll(logits, labels, t, weights) for t in grid])])
    fine = np.linspace(best / 1.05, best * 1.05, 101)
    return float(fine[np.argmin([nll(logits, labels, t, weights) for t in fine])])


def fit_calibration(method: str, logits: np.ndarray, labels: np.ndarray, sources: np.ndarray,
                    aug: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> float:
    """The temperature `method` (one of CALIBRATION_METHODS) fits on clean held-out (logits, labels, sources)
    and, for the `-augmented` methods, `aug` = (logits, labels, sources) of augmented variants of the same
    photos, pooled with the clean ones:

    * heldout: plain NLL on the clean held-out photos (every photo counts once);
    * balanced: NLL with every class weighing the same;
    * balanced-augmented: the same over the clean photos plus their augmented variants (harder, shifted inputs);
    * balanced-source(-augmented): classes equal, and within a class every source equal;
    * per-source(-augmented): sources equal, and within a source every class equal (the weighting the
      leave-one-source-out score itself uses).
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; one of {CALIBRATION_METHODS}")
    if method.endswith("-augmented"):
        if aug is None:
            raise ValueError(f"{method} needs augmented variants of the held-out photos")
        logits, labels, sources = (np.concatenate([a, b]) for a, b in zip((logits, labels, sources), aug))
    if method == "heldout":
        return fit_temperature(logits, labels)
    if method.startswith("per-source"):
        return fit_temperature(logits, labels, weights=balanced_weights(sources, labels))
    groups = sources if method.startswith("balanced-source") else None
    return fit_temperature(logits, labels, weights=balanced_weights(labels, groups))


def leave_one_source_out(method: str, logits: np.ndarray, labels: np.ndarray, sources: np.ndarray,
                         aug: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, dict]:
    """For every source: T fitted by `method` on the other sources (clean, and augmented variants of their
    photos only), and the class-balanced ECE15 that T gives on the left-out source's clean photos. Also
    'mean' (the sources weighing the same) and 'pooled' (class-balanced ECE over all left-out predictions)."""
    sources, out = np.asarray(sources), {}
    pooled = np.zeros((len(labels), logits.shape[1]))
    for s in sorted(set(sources.tolist())):
        keep = sources != s
        rest = None if aug is None else tuple(a[aug[2] != s] for a in aug)
        t = fit_calibration(method, logits[keep], labels[keep], sources[keep], rest)
        p = softmax(logits[~keep], t)
        pooled[~keep] = p
        out[s] = {"temperature": t, "n": int((~keep).sum()), "ece15": balanced_ece(p, labels[~keep])}
    out["mean"] = {"ece15": float(np.mean([v["ece15"] for v in out.values()]))}
    out["pooled"] = {"ece15": balanced_ece(pooled, labels)}
    return out


def retemper(probs: np.ndarray, folded: float, temperature: float) -> np.ndarray:
    """Probabilities of a model with `folded` divided into its logits, as if `temperature` had been folded in
    instead: log-probabilities are the logits up to a per-row constant, so softmax(log p * folded / T)."""
    return softmax(np.log(np.maximum(np.asarray(probs, np.float64), 1e-300)) * folded, temperature)


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
