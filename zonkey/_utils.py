"""Small numeric helpers shared by every module: sphere radii and projections, seeded draws that
do not depend on the model's device, and the fp32 guard for mixed precision."""

from __future__ import annotations

import functools
import math

import torch

EPS = 1e-6  # the one clamp used for every BOS probability (METHOD P5: a single clamp)


def rho(n: int) -> float:
    """E||N(0, I_n)||, the radius of the sphere a level's vectors and latents live on."""
    return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))


def to_sphere(x: torch.Tensor, radius: float, dim: int = -1) -> torch.Tensor:
    """Project `x` onto the sphere of `radius` along `dim` (zero vectors stay finite)."""
    return radius * x / x.norm(dim=dim, keepdim=True).clamp_min(1e-8)


def draw(fn, *args, generator=None, device=None, **kwargs) -> torch.Tensor:
    """`fn(*args, **kwargs)` (torch.rand, randn, randint, randperm) drawn on the generator's device,
    then moved to `device`.

    The text-level API seeds a CPU generator; drawing there keeps a seed's numbers the same whether
    the model runs on the CPU or a GPU (and a CPU generator cannot draw on a GPU). Without a
    generator it draws on `device` directly."""
    src = generator.device if generator is not None else device
    x = fn(*args, generator=generator, device=src, **kwargs)
    return x if device is None else x.to(device)


def _up(a):
    return a.float() if torch.is_tensor(a) and a.is_floating_point() and a.dtype != torch.float32 else a


def fp32(fn):
    """Run `fn` in full precision under bf16 autocast: autocast is switched off inside and its
    floating tensor arguments are cast to float32. Used for every loss, probability and existence
    computation (logits 2*atanh(cos) need cos < 1 - 1e-6, which bf16 cannot represent; beta
    clamped to 1 - EPS rounds to 1 in bf16 and log(1 - beta) becomes -inf). Without autocast it
    only passes float32 tensors through."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = tuple(_up(a) for a in args)
        kwargs = {k: _up(v) for k, v in kwargs.items()}
        dev = next((a.device.type for a in (*args, *kwargs.values()) if torch.is_tensor(a)), "cpu")
        if not torch.is_autocast_enabled(dev):
            return fn(*args, **kwargs)
        with torch.autocast(dev, enabled=False):
            return fn(*args, **kwargs)

    return wrapper
