"""Batched augmentation that imitates what preprocessing real photos leaves behind.

Preprocessing (pipeline/preprocess.py) crops the object, fits its long side to 28 px and zeroes the
background, but imperfectly: crops are loose or tight by a few pixels, shadows stretch the box, textured
backgrounds leave speckle, small objects come out blurry, lighting changes the tones, parts of a garment
vanish into a background of the same colour. Each transform below models one of those residues.
All work on a whole batch at once (float in [0, 1], shape (N,1,28,28)) so they cost little next to the
network, and draw from an explicit generator so a seed reproduces a run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each transform; `p_any` is the share of samples that get any at all."""

    p_any: float = 0.7
    p_flip: float = 0.5  # catalogue shoes often point right; Fashion-MNIST's all point left
    scale: tuple[float, float] = (0.78, 1.08)
    aspect: float = 0.12  # +-12% squash: some sources resize photos without keeping the aspect
    shift: float = 0.08  # fraction of the frame
    rotate_deg: float = 10.0
    p_gamma: float = 0.5
    gamma: tuple[float, float] = (0.6, 1.6)
    p_contrast: float = 0.4
    contrast: tuple[float, float] = (0.55, 1.0)
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 0.8)
    p_noise: float = 0.3
    noise_std: tuple[float, float] = (0.01, 0.06)
    p_cutout: float = 0.25
    cutout_frac: tuple[float, float] = (0.12, 0.35)


def _rand(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _coin(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def geometric(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, active: torch.Tensor) -> torch.Tensor:
    """Flip, scale, squash, shift and rotate each image about the centre (zeros fill the border)."""
    n = x.shape[0]
    flip = torch.where(_coin(g, n, cfg.p_flip), -1.0, 1.0)
    s = _rand(g, n, *cfg.scale)
    a = torch.exp(_rand(g, n, -cfg.aspect, cfg.aspect))
    th = _rand(g, n, -cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    tx, ty = _rand(g, n, -cfg.shift, cfg.shift) * 2, _rand(g, n, -cfg.shift, cfg.shift) * 2
    # Inactive samples get the identity (flips still apply: a mirrored garment is still that garment).
    one = torch.ones(n)
    s, a, th = torch.where(active, s, one), torch.where(active, a, one), torch.where(active, th, 0 * one)
    tx, ty = torch.where(active, tx, 0 * one), torch.where(active, ty, 0 * one)
    # affine_grid maps output coords to input coords, so the matrix is the inverse of the wanted transform.
    sx, sy = 1 / (s * a), a / s
    cos, sin = torch.cos(th), torch.sin(th)
    theta = torch.stack([
        torch.stack([flip * sx * cos, -sx * sin, tx], 1),
        torch.stack([flip * sy * sin, sy * cos, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def photometric(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, active: torch.Tensor) -> torch.Tensor:
    """Gamma (mid-tone) and overall intensity changes; the zero background stays zero."""
    n = x.shape[0]
    view = (n, 1, 1, 1)
    gam = torch.where(active & _coin(g, n, cfg.p_gamma), _rand(g, n, *cfg.gamma), torch.ones(n))
    x = x.clamp_min(0).pow(gam.view(view))
    c = torch.where(active & _coin(g, n, cfg.p_contrast), _rand(g, n, *cfg.contrast), torch.ones(n))
    # A faint garment (close in tone to its background, or a capped stretch) comes out dimmer overall.
    return x * c.view(view)


def blur(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, active: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma (a small object upscaled to 28 px looks like this)."""
    n = x.shape[0]
    on = active & _coin(g, n, cfg.p_blur)
    if not bool(on.any()):
        return x
    sigma = _rand(g, n, *cfg.blur_sigma)
    r = torch.arange(-2, 3, dtype=x.dtype)
    k1 = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    # Separable per-sample kernels as a grouped convolution: one group per image.
    xb = x.view(1, n, 28, 28)
    xb = F.conv2d(F.pad(xb, (2, 2, 0, 0)), k1.view(n, 1, 1, 5), groups=n)
    xb = F.conv2d(F.pad(xb, (0, 0, 2, 2)), k1.view(n, 1, 5, 1), groups=n)
    return torch.where(on.view(n, 1, 1, 1), xb.view_as(x), x)


def noise_and_cutout(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, active: torch.Tensor) -> torch.Tensor:
    """Additive sensor/texture noise, and a random rectangle of the garment lost to the background."""
    n = x.shape[0]
    view = (n, 1, 1, 1)
    std = torch.where(active & _coin(g, n, cfg.p_noise), _rand(g, n, *cfg.noise_std), torch.zeros(n))
    x = x + torch.randn(x.shape, generator=g) * std.view(view)
    on = active & _coin(g, n, cfg.p_cutout)
    size = (_rand(g, n, *cfg.cutout_frac) * 28).round()
    cy, cx = _rand(g, n, 0, 28), _rand(g, n, 0, 28)
    ys = torch.arange(28).view(1, 28, 1)
    xs = torch.arange(28).view(1, 1, 28)
    half = (size / 2).view(n, 1, 1)
    box = ((ys - cy.view(n, 1, 1)).abs() < half) & ((xs - cx.view(n, 1, 1)).abs() < half)
    box = box & on.view(n, 1, 1)
    return x.masked_fill(box.unsqueeze(1), 0.0).clamp(0, 1)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Augment a batch of [0, 1] images (N,1,28,28); a share 1 - p_any passes with only a flip."""
    active = _coin(g, x.shape[0], cfg.p_any)
    x = geometric(x, cfg, g, active)
    x = photometric(x, cfg, g, active)
    x = blur(x, cfg, g, active)
    return noise_and_cutout(x, cfg, g, active)
