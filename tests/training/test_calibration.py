"""training.calibration: ECE, reliability bins and the temperature fit, on data whose answer is known."""
from __future__ import annotations

import numpy as np

from training.calibration import (
    ece,
    fit_temperature,
    reliability,
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
