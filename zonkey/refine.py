"""Second pass of generation: re-infill the generated words the model reads least confidently
(not in the method; `refine=0` is the method's sampler, one pass).

After the top level is sampled and cut at its existence threshold, every kept slot of every
window is decoded alone down to bytes and scored by the level-0 decoder's confidence (the mean
log probability of the most probable byte, `zonkey.infill.decode_scored`). The `refine` fraction
of each window's slots with the lowest confidence (at least one) become unknown slots (the learned
MLM mask vector) in an infill canvas whose other slots are the generated vectors, clamped; the
canvas is denoised with the infill sampler (`zonkey.infill.run_canvas`), SAMPLES samples per
window in one batch, and each window keeps the sample whose re-infilled slots are read most
confidently. This is the low-confidence remasking of masked diffusion LMs applied to word slots,
with METHOD §13's decode-clamp-encode loop as the predictor. `zonkey-small`, standard evaluation:
generated words 0.66 -> 0.78 valid at refine 0.3, distinct-2 0.86 -> 0.79.

Axes: m windows, r samples per window, s window slots, d dim.
"""

from __future__ import annotations

import torch

from zonkey._utils import rho, to_sphere
from zonkey.decoder import Decoded
from zonkey.inference import vectors_to_latents
from zonkey.infill import SAMPLES, Canvas, byte_confidence, decode_scored, run_canvas
from zonkey.losses import char_logits
from zonkey.samplers import kept_lengths


def slot_confidence(model, level: int, v: torch.Tensor) -> torch.Tensor:
    """(n, d) slot vectors of `level` -> (n,) the confidence of each slot decoded alone, as
    `decode_scored(model, level, v[j:j+1])` gives it; level 1 decodes all slots in one batch."""
    if level != 1:
        return torch.tensor([decode_scored(model, level, v[j : j + 1])[1] for j in range(v.shape[0])])
    lv = model.levels[0]
    dec = lv.decoder(vectors_to_latents(model, 0, v), torch.zeros(v.shape[0], device=v.device))  # (n, s, d0)
    n_bytes = kept_lengths(dec.logp, model.config.infill_threshold)  # a lone window's cut (the stitcher's)
    best = byte_confidence(char_logits(dec.x, model.embed.weight))  # (n, s)
    alive = torch.arange(best.shape[1], device=v.device)[None] < n_bytes[:, None]
    return ((best * alive).sum(1) / n_bytes).cpu()


def refine(model, level: int, dec: Decoded, fraction: float, steps: int, g, temperature: float, on_step):
    """dec: the sampler's final decode of `level` (m windows). Returns (vectors (N, d) of the kept
    slots, in order, and the kept samples' existence (m, s)); `on_step(t, vectors, existence)` sees
    each step of the kept samples."""
    lc = model.config.levels[level]
    S, thr, R = lc.seg_len, model.config.infill_threshold, SAMPLES
    m = dec.x.shape[0]
    keep = kept_lengths(dec.logp, thr).tolist()  # the slots `cut_at_existence` keeps
    mask_vec = to_sphere(model.levels[level].mask_vector.detach(), rho(lc.d_model))
    x = torch.zeros(m * R, S, lc.d_model, device=dec.x.device)
    known = torch.zeros(m * R, S, dtype=torch.bool, device=dec.x.device)
    low = []
    for w, n in enumerate(keep):
        conf = slot_confidence(model, level, dec.x[w, :n])
        lo = conf.argsort()[: max(1, round(fraction * n))].tolist()
        low.append(lo)
        mask = torch.zeros(n, dtype=torch.bool, device=dec.x.device)
        mask[lo] = True
        rows = slice(w * R, (w + 1) * R)
        x[rows, :n] = torch.where(mask[:, None], mask_vec, dec.x[w, :n])
        known[rows, :n] = ~mask
    exist_len = torch.tensor(keep, device=dec.x.device).repeat_interleave(R)
    out, _, frames = run_canvas(model, level, Canvas(x, known, exist_len), steps, g, None, temperature)
    best = []
    for w in range(m):  # each sample's re-infilled slots, all R samples in one batch
        conf = slot_confidence(model, level, out.x[w * R : (w + 1) * R, low[w]].flatten(0, 1))
        best.append(w * R + int(conf.view(R, -1).mean(1).argmax()))

    def kept(d: Decoded) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([d.x[row, :n] for row, n in zip(best, keep)]), d.logp[best]

    for t, d in frames:
        on_step(t, *kept(d))
    return kept(out)
