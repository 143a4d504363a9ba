"""DDMM noise schedule (METHOD §8-9): the forward process on the latent sphere, the time
distributions of the training passes, and the segment relaxation ("Mixed" target).
It has no parameters and does not know about models.

Axes: m windows, s positions, c latents, d dim.
"""

from __future__ import annotations

import torch

from zonkey._utils import draw, fp32, rho, to_sphere


def add_noise(z: torch.Tensor, t: torch.Tensor, generator=None, scale: float = 1.0) -> torch.Tensor:
    """z: (m, c, d) on the rho(c*d) sphere, t: (m,) noise fraction -> z_t on the same sphere.

    z_t = rho * normalize(sqrt(t) xi + sqrt(1 - t) z), xi ~ N(0, I); t = 1 is pure noise.
    scale multiplies xi (the sampling temperature; training always uses 1)."""
    xi = draw(torch.randn, z.shape, generator=generator, device=z.device, dtype=z.dtype)
    if scale != 1.0:
        xi = xi * scale
    tt = t.to(z.dtype)[:, None, None]
    mixed = tt.sqrt() * xi + (1 - tt).sqrt() * z
    return to_sphere(mixed.flatten(1), rho(z[0].numel())).view_as(z)


def pure_noise(m: int, c: int, d: int, generator=None, device=None) -> torch.Tensor:
    """(m, c, d) latents drawn uniformly on the rho(c*d) sphere."""
    xi = draw(torch.randn, (m, c * d), generator=generator, device=device)
    return to_sphere(xi, rho(c * d)).view(m, c, d)


def sample_clean_t(m: int, t_max: float, generator=None, device=None) -> torch.Tensor:
    """t0 = t_max * Beta(1, 3) (mean t_max / 4): the near-clean pass."""
    u = draw(torch.rand, (m,), generator=generator, device=device)
    return t_max * (1 - u ** (1 / 3))


@fp32
def relaxed_targets(h, a, x, w, t_min: float = 0.0):
    """Segment relaxation of the dirty pass ("Mixed" target, METHOD §9).

    For each window pick t* in [0, 1] so that the target a + t*(x - a) between the previous
    estimate `a` and the truth `x` is best matched by the prediction `h` (weighted mean cosine over
    the window, candidates {t_min, 1, t_bar}, t* >= t_min). h, a, x: (m, s, d); w: (m, s)
    -> (targets (m, s, d), t* (m,)). With t_min = 0 (the release) the target can be the previous
    estimate itself, which gives the dirty pass no denoising signal (measured: the level-1 dirty
    loss is ~6e-4 at initialization); `ZonkeyConfig.relax_min` sets the floor.
    t* is chosen without gradient; gradients flow to h and x through the returned targets."""
    with torch.no_grad():
        dlt = x - a
        hd, ha = (h * dlt).sum(-1), (h * a).sum(-1)
        ad, aa, dd = (a * dlt).sum(-1), (a * a).sum(-1), (dlt * dlt).sum(-1)
        num = hd * aa - ha * ad
        den = ha * dd - hd * ad
        tj = torch.where(den.abs() > 1e-8, num / den, torch.ones_like(num)).clamp(t_min, 1)  # (m, s)
        wj = w * hd.abs()
        tbar = (wj * tj).sum(-1) / wj.sum(-1).clamp_min(1e-8)  # (m,)
        cands = torch.stack([torch.full_like(tbar, t_min), torch.ones_like(tbar), tbar], dim=1)  # (m, 3)
        tgt = a[:, None] + cands[..., None, None] * dlt[:, None]  # (m, 3, s, d)
        cos = torch.nn.functional.cosine_similarity(h[:, None], tgt, dim=-1)  # (m, 3, s)
        score = (cos * w[:, None]).sum(-1)
        tstar = cands.gather(1, score.argmax(1, keepdim=True)).squeeze(1)  # (m,)
    return a.detach() + tstar[:, None, None] * (x - a.detach()), tstar
