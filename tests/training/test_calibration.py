"""training.calibration: ECE, reliability bins and the temperature fit, on data whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from training.calibration import (
    balanced_ece,
    balanced_weights,
    ece,
    fit_calibration,
    fit_temperature,
    leave_one_source_out,
    reliability,
    retemper,
    softmax,
    write_reliability,
)


def sampled(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): calibrated exactly at that temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 10))
    p = softmax(logits, temperature)
    labels = np.array([rng.choice(10, p=row) for row in p])
    return logits, labels


def test_the_fit_recovers_the_temperature_that_made_the_labels():
    logits, labels = sampled(6000, temperature=2.5)
    assert abs(fit_temperature(logits, labels) - 2.5) < 0.25


def test_calibrated_probabilities_have_a_small_ece_and_overconfident_ones_a_large_one():
    logits, labels = sampled(6000, temperature=2.0, seed=1)
    assert ece(softmax(logits, 2.0), labels) < 0.03
    assert ece(softmax(logits, 0.5), labels) > 0.2


def test_reliability_bins_count_every_prediction_once(tmp_path):
    logits, labels = sampled(500, temperature=1.0, seed=2)
    probs = softmax(logits)
    table = reliability(probs, labels)
    assert len(table) == 15 and sum(b["n"] for b in table) == 500
    assert write_reliability(probs, labels, tmp_path / "r.png") == ece(probs, labels)
    assert (tmp_path / "r.png").stat().st_size > 1000


def two_populations(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A large, calibrated population on classes 0-4 (source 'a') and a small, 3x over-confident one on
    classes 5-9 (source 'b'): logits, labels, sources."""
    rng = np.random.default_rng(seed)
    parts = []
    for n, temperature, classes, source in ((4000, 1.0, slice(0, 5), "a"), (400, 3.0, slice(5, 10), "b")):
        logits = np.full((n, 10), -50.0)
        logits[:, classes] = rng.normal(0, 3, size=(n, 5))
        p = softmax(logits, temperature)
        parts.append((logits, np.array([rng.choice(10, p=row) for row in p]), np.array([source] * n)))
    return tuple(np.concatenate(a) for a in zip(*parts))


def test_balanced_weights_give_every_class_and_every_source_of_a_class_the_same_weight():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4)
    sources = np.array(["a"] * 5 + ["b"] + ["a", "a"] + ["a", "b", "b", "b"])
    w = balanced_weights(labels)
    assert np.isclose(w.mean(), 1) and np.allclose([w[labels == c].sum() for c in range(3)], 4)
    w = balanced_weights(labels, sources)
    assert np.allclose([w[labels == c].sum() for c in range(3)], 4)
    assert np.isclose(w[(labels == 0) & (sources == "a")].sum(), w[(labels == 0) & (sources == "b")].sum())
    assert np.isclose(w[(labels == 2) & (sources == "a")].sum(), 2)


def test_class_balanced_fit_follows_the_minority_classes_when_they_are_over_confident():
    logits, labels, sources = two_populations()
    plain = fit_calibration("heldout", logits, labels, sources)
    balanced = fit_calibration("balanced", logits, labels, sources)
    per_source = fit_calibration("per-source", logits, labels, sources)
    assert plain < 1.5 and balanced > plain + 0.3 and per_source > plain + 0.3
    assert abs(fit_temperature(logits, labels, weights=np.ones(len(labels))) - plain) < 1e-9
    probs = softmax(logits, balanced)
    assert balanced_ece(probs, labels) != ece(probs, labels)  # the minority weighs half of the balanced ECE


def test_augmented_methods_pool_the_variants_and_need_them():
    logits, labels, sources = two_populations()
    a = sources == "a"
    # "Augmented" variants of population a that are as over-confident as b: the fit moves towards them.
    rng = np.random.default_rng(4)
    aug_logits = logits[a][:1000] * 3
    aug_labels = np.array([rng.choice(10, p=row) for row in softmax(aug_logits, 3.0)])
    aug = (aug_logits, aug_labels, sources[a][:1000])
    assert fit_calibration("balanced-augmented", logits, labels, sources, aug) > fit_calibration(
        "balanced", logits, labels, sources)
    with pytest.raises(ValueError):
        fit_calibration("balanced-augmented", logits, labels, sources)
    with pytest.raises(ValueError):
        fit_calibration("nonsense", logits, labels, sources)


def test_leave_one_source_out_scores_every_source_with_a_temperature_fitted_without_it():
    logits, labels, sources = two_populations()
    table = leave_one_source_out("heldout", logits, labels, sources)
    assert set(table) == {"a", "b", "mean", "pooled"}
    assert table["a"]["temperature"] > 2  # fitted on b alone (T = 3): a (T = 1) looks under-confident
    assert abs(table["b"]["temperature"] - 1) < 0.2
    assert np.isclose(table["mean"]["ece15"], (table["a"]["ece15"] + table["b"]["ece15"]) / 2)
    assert table["b"]["n"] == 400


def test_retemper_recovers_other_temperatures_from_the_probabilities():
    logits, _ = sampled(200, temperature=1.0, seed=5)
    folded = softmax(logits, 0.7)
    assert np.allclose(retemper(folded, 0.7, 1.3), softmax(logits, 1.3), atol=1e-9)
