"""DDMM sampler (METHOD §12) with a step-wise interface, and unconditional generation.

Each step re-noises the current latent to the step's noise level (fixes P2: the release never
re-noised), decodes it, lets an optional `clamp` hook overwrite known content in data space (used
by infilling), and re-compresses the prediction. A final decode at t = 0 ends the loop.
Generation then cuts the top level at its existence threshold and decodes down level by level,
cutting every level at its real stitched length (fixes P20). By default a second pass then
re-infills the least confident fraction of the generated word slots (`refine`, `zonkey.refine`;
not in the method: `refine=0` is the method's sampler alone).

Temperature (not in the method; 1 = the method's sampler) scales the Gaussian noise of each
re-noising step while the decoder is still told the step's nominal t: below 1 the latent keeps
more of the previous prediction than the decoder expects, so the text is more conservative and less
varied (`zonkey-small`, standard evaluation of `training/evaluate.py`: valid generated words
0.66 / 0.72 / 0.76 and distinct-2 0.86 / 0.78 / 0.67 at temperature 1 / 0.7 / 0.5, refine 0). The first
latent is pure noise on the sphere whatever the temperature.

Axes: m windows, c latents, s window length, d dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zonkey.decoder import Decoded
from zonkey.diffusion import add_noise, pure_noise
from zonkey.inference import decode_down
from zonkey.outputs import GenerationResult, TrajectoryStep
from zonkey.validation import (
    DEFAULT_REFINE,
    MAX_SEGMENTS,
    ZonkeyInputError,
    check_refine,
    check_seed,
    check_steps,
    check_temperature,
)


@dataclass
class StepOutput:
    """z: (m, c, d) next latent; x: (m, s, d) prediction after clamping; logp: (m, s) existence."""

    z: torch.Tensor
    x: torch.Tensor
    logp: torch.Tensor
    t: float


class DDMMSampler:
    """Decode -> clamp -> compress loop over one level, from t = 1 to 0."""

    def __init__(self, level, temperature: float = 1.0):
        self.level = level
        self.temperature = check_temperature(temperature)
        self.timesteps: list[float] | None = None

    def set_timesteps(self, num_steps: int) -> None:
        check_steps(num_steps)
        self.timesteps = [1.0 - s / num_steps for s in range(num_steps)]

    def step(self, z, t: float, *, generator=None, clamp=None) -> StepOutput:
        if self.timesteps is None:
            raise RuntimeError("call set_timesteps(num_steps) before step()")
        tt = torch.full((z.shape[0],), t, device=z.device)
        dec = self.level.decoder(add_noise(z, tt, generator=generator, scale=self.temperature), tt)
        if clamp is not None:
            dec = clamp(dec)
        valid = torch.ones_like(dec.logp, dtype=torch.bool)
        return StepOutput(self.level.compressor(dec.x, dec.logp, valid), dec.x, dec.logp, t)

    def final(self, z, *, clamp=None) -> Decoded:
        dec = self.level.decoder(z, torch.zeros(z.shape[0], device=z.device))
        return clamp(dec) if clamp is not None else dec


def kept_lengths(logp: torch.Tensor, threshold: float) -> torch.Tensor:
    """(m, s) existence -> (m,) how many slots of each window exist (above threshold; at least 1)."""
    return (logp.exp() > threshold).sum(-1).clamp_min(1)


def cut_at_existence(x: torch.Tensor, logp: torch.Tensor, threshold: float) -> torch.Tensor:
    """(m, s, d), (m, s) -> (N, d): each window's prefix whose existence exceeds threshold (>= 1)."""
    keep = kept_lengths(logp, threshold)  # (m,)
    return torch.cat([x[i, : int(k)] for i, k in enumerate(keep)], dim=0)


@torch.inference_mode()
def generate(
    model,
    num_segments=None,
    steps: int = 20,
    seed: int = 0,
    callback=None,
    level: int | None = None,
    temperature: float = 1.0,
    refine: float = DEFAULT_REFINE,
) -> GenerationResult:
    """Unconditional generation: `num_segments` segments (default 1) sampled from noise at `level`
    (default: the top level), then decoded down to text; `temperature` as in the module docstring.
    `refine`: the fraction of the generated word slots re-infilled in a second pass (`zonkey.refine`;
    0 = the method's sampler alone); it applies when sampling at level 1 or above (the result
    records 0 otherwise)."""
    steps, seed, temperature = check_steps(steps), check_seed(seed), check_temperature(temperature)
    refine = check_refine(refine)
    k = 1 if num_segments is None else num_segments
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SEGMENTS:
        raise ZonkeyInputError(f"num_segments={num_segments!r} is invalid; use None or an int in 1..{MAX_SEGMENTS}.")
    if level is not None and (
        isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < model.num_levels
    ):
        raise ZonkeyInputError(f"level={level!r} is invalid; use None or an int in 0..{model.num_levels - 1}.")
    model.eval()
    top = model.num_levels - 1 if level is None else level
    lc, lv = model.config.levels[top], model.levels[top]
    g = torch.Generator(device="cpu").manual_seed(seed)
    thr = model.config.infill_threshold
    sampler = DDMMSampler(lv, temperature)
    sampler.set_timesteps(steps)
    z = pure_noise(k, lc.n_latents, lc.d_model, generator=g, device=model.device)
    trajectory = []

    def report(t, vectors, logp):  # vectors: (N, d) the kept slots of every window, in order
        text = decode_down(model, top, vectors)
        st = TrajectoryStep(len(trajectory), t, top, text, [(0, len(text))], logp.exp().flatten().tolist())
        trajectory.append(st)
        if callback is not None:
            callback(st)

    for t in sampler.timesteps:
        out = sampler.step(z, t, generator=g)
        z = out.z
        report(t, cut_at_existence(out.x, out.logp, thr), out.logp)
    dec = sampler.final(z)
    report(0.0, cut_at_existence(dec.x, dec.logp, thr), dec.logp)
    refine = refine if top > 0 else 0.0  # level 0 has no word slots to re-infill
    if refine > 0:  # second pass: the least confident words re-infilled
        from zonkey.refine import refine as refine_pass  # (it builds on zonkey.infill, which imports this module)

        vectors, logp = refine_pass(model, top, dec, refine, steps, g, temperature, report)
        report(0.0, vectors, logp)
    return GenerationResult(trajectory[-1].text, trajectory, seed, steps, temperature, refine)
