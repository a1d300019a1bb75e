"""Augmentation: shapes and ranges, reproducibility, and identity when switched off."""
from __future__ import annotations

import torch

from training.augment import AugmentConfig, augment_batch


def images(n: int = 16) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 4:24, 8:20] = 0.8
    return x


def test_augmented_batch_keeps_shape_and_range():
    out = augment_batch(images(), AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == (16, 1, 28, 28) and out.min() >= 0 and out.max() <= 1


def test_same_seed_same_batch_different_seed_different_batch():
    a = augment_batch(images(), AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment_batch(images(), AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment_batch(images(), AugmentConfig(), torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_switched_off_it_is_the_identity():
    cfg = AugmentConfig(p_any=0.0, p_flip=0.0)
    x = images()
    assert torch.allclose(augment_batch(x, cfg, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_flip_mirrors_a_left_pointing_shoe():
    # Given a shape only on the left / When flipped with certainty and nothing else / Then it is on the right
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 2:10] = 1
    out = augment_batch(x, AugmentConfig(p_any=0.0, p_flip=1.0), torch.Generator().manual_seed(0))
    assert out[..., 18:26].sum() > 0.9 * x.sum() and out[..., :10].sum() < 0.1 * x.sum()
