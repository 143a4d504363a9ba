"""Small numeric helpers shared by every module: sphere radii and projections."""

from __future__ import annotations

import math

import torch

EPS = 1e-6  # the one clamp used for every BOS probability (METHOD P5: a single clamp)


def rho(n: int) -> float:
    """E||N(0, I_n)||, the radius of the sphere a level's vectors and latents live on."""
    return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))


def to_sphere(x: torch.Tensor, radius: float, dim: int = -1) -> torch.Tensor:
    """Project `x` onto the sphere of `radius` along `dim` (zero vectors stay finite)."""
    return radius * x / x.norm(dim=dim, keepdim=True).clamp_min(1e-8)
