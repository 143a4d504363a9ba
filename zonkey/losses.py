"""Stateless loss functions of METHOD §10. They take tensors and weights and return scalars;
weighting across terms happens in `ZonkeyLevel` with `LossWeights`. Every one runs in float32
(`fp32`), also under bf16 autocast.

Axes: m windows, s positions, d dim, v vocabulary (256 bytes), k negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zonkey._utils import EPS, draw, fp32
from zonkey.config import SAME_COS

POOL_CAP = 1024  # most pool vectors one InfoNCE call scores against


def cos_logits(cos: torch.Tensor) -> torch.Tensor:
    """2 * atanh(cos), cos clamped to +-(1 - 1e-6): the release's logit of a cosine. Needs float32
    (bf16 rounds the clamp to 1); its callers here are `fp32` functions."""
    return 2 * torch.atanh(cos.clamp(-1 + 1e-6, 1 - 1e-6))


def similarity_logits(cos: torch.Tensor, scale: float = 0.0) -> torch.Tensor:
    """An InfoNCE logit of a cosine: the release's 2 * atanh(cos) (`scale` 0) or `scale` * cos
    (`LevelConfig.mlm_logit_scale`)."""
    return cos_logits(cos) if scale <= 0 else scale * cos


@fp32
def char_logits(x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """(..., d) vectors, (v, d) tied embeddings -> (..., v) logits 2*atanh(cos)."""
    cos = F.normalize(x, dim=-1) @ F.normalize(emb, dim=-1).t()
    return cos_logits(cos)


def weighted_mean(values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (values * w).sum() / w.sum().clamp_min(1e-8)


@fp32
def char_ce(x: torch.Tensor, ids: torch.Tensor, emb: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Level-0 reconstruction: share-weighted CE of tied-embedding cosine logits.
    x: (m, s, d), ids: (m, s), w: (m, s) -> scalar."""
    logits = char_logits(x, emb)  # (m, s, v)
    ce = F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="none").view_as(w)
    return weighted_mean(ce, w)


@fp32
def info_nce(x, targets, pool, w, k: int, generator=None, pos_cos=None, same_cos: float = SAME_COS, scale: float = 0.0):
    """Level >= 1 reconstruction: InfoNCE of each predicted vector against its target with k
    negatives drawn uniformly from `pool` (real target vectors of the batch).

    x, targets: (m, s, d); pool: (p, d); w: (m, s). pos_cos: optional (m, s) positive cosine
    (the segment-relaxed one of the dirty pass). Negatives equal to the target are masked (P8):
    those whose cosine to the target exceeds `same_cos` (default: equal up to rounding; lower it to
    count other occurrences of the same word as the target too). Logits: `similarity_logits`.
    Only rows with weight > 0 are scored (the others add nothing to the weighted mean; the MLM
    term weights about a fifth of the rows). The cosines to the pool are one matmul and the k
    negatives are gathered from it; a pool larger than POOL_CAP is first subsampled uniformly, so
    the cost stays linear in the batch size."""
    keep = (w > 0).flatten()  # (ms,)
    xn = F.normalize(x.flatten(0, 1)[keep], dim=-1)  # (n, d)
    tn = F.normalize(targets.flatten(0, 1)[keep], dim=-1)
    pn = F.normalize(pool, dim=-1)  # (p, d)
    pos = pos_cos.flatten()[keep] if pos_cos is not None else (xn * tn).sum(-1)  # (n,)
    if pn.shape[0] > POOL_CAP:  # a uniform subset: each row's negatives stay uniform over the pool
        pick = draw(torch.randperm, pn.shape[0], generator=generator, device=x.device)[:POOL_CAP]
        pn = pn[pick]
    idx = draw(torch.randint, 0, pn.shape[0], (xn.shape[0], k), generator=generator, device=x.device)  # (n, k)
    ncos = (xn @ pn.t()).gather(1, idx)  # (n, k)
    with torch.no_grad():
        same = (tn @ pn.t()).gather(1, idx) > same_cos
    neg = similarity_logits(ncos, scale).masked_fill(same, -1e4)
    logits = torch.cat([similarity_logits(pos, scale)[:, None], neg], dim=-1)
    ce = F.cross_entropy(logits, torch.zeros(xn.shape[0], dtype=torch.long, device=x.device), reduction="none")
    return weighted_mean(ce, w.flatten()[keep])


@fp32
def existence_bce(logp_pred: torch.Tensor, p_label: torch.Tensor) -> torch.Tensor:
    """BCE between predicted existence exp(logp_pred) and a label existence, positions j >= 1.
    (m, s), (m, s) -> scalar."""
    lp = logp_pred[:, 1:].clamp(max=-EPS)
    l1mp = torch.log(-torch.expm1(lp)).clamp_min(-30)
    y = p_label[:, 1:].detach()
    return -(y * lp + (1 - y) * l1mp).mean()


@fp32
def mean_cross_doc_cosine(z: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine between flattened latents of segments from different documents."""
    u = F.normalize(z.flatten(1), dim=-1)  # (m, D)
    diff = doc[:, None] != doc[None, :]
    if not diff.any():
        return z.new_zeros(())
    return (u @ u.t())[diff].mean()


@fp32
def stitch_position_loss(offset_pred, offset_true, w) -> torch.Tensor:
    """Share-weighted mass of window positions lying between the true and the inferred offset,
    with fractional coverage at the ends (METHOD §11.3). offset_*: (p,), w: (p, s) -> scalar."""
    s = w.shape[1]
    j = torch.arange(s, device=w.device, dtype=w.dtype)[None]  # (1, s)
    lo = torch.minimum(offset_pred, offset_true.to(w.dtype))[:, None]
    hi = torch.maximum(offset_pred, offset_true.to(w.dtype))[:, None]
    cover = (torch.minimum(j + 1, hi) - torch.maximum(j, lo)).clamp_min(0)  # (p, s)
    return ((cover * w).sum(1) / w.sum(1).clamp_min(1e-8)).mean()
