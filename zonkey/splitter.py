"""Segment Splitter (METHOD §5): per-position BOS probabilities, a sampled (training) or
thresholded (inference) segmentation with forced coverage, overlapping windows, existence and
share weights, and the splitter regularizers. It does not compress or decode.

Axes: b documents, n positions (chars at level 0, word vectors at level 1), m windows (all
documents together), s window length S, d model dim, w local attention window.

Decisions (each fixes a pitfall of METHOD §17):
- beta is 1 at every position at or past a document's end, so existence inside a window ends at
  the document end (P3); the attention key mask also removes those positions (P4).
- Windows may run past the buffer: the buffer is padded by S positions, nothing is removed at
  its end (P6), and forced coverage works on each document's real length.
- No per-batch cap silently drops windows (P7): every sampled window is trained at this level;
  only the hand-up to the next level is capped (`max_up`), and the dropped count is returned.
- One clamp, EPS = 1e-6, for every use of beta (P5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zonkey._utils import EPS, draw, fp32
from zonkey.attention import log_existence, sinusoid_table


def sample_boundaries(beta, lengths, *, threshold: float | None = None, generator=None):
    """(b, n) BOS probs, (b,) lengths -> (b, n) bool BOS.

    threshold=None samples BOS_j ~ Bernoulli(beta_j) (training); a float uses beta_j > threshold
    (the deterministic inference rule). Position 0 is always a BOS; positions past the end never."""
    b, n = beta.shape
    real = torch.arange(n, device=beta.device)[None] < lengths[:, None]  # (b, n)
    if threshold is None:
        u = draw(torch.rand, beta.shape, generator=generator, device=beta.device)
        bos = u < beta
    else:
        bos = beta > threshold
    bos = bos & real
    bos[:, 0] = True
    return bos


def force_coverage(bos, lengths, seg_len: int):
    """Insert BOS at prev+S, prev+2S, ... after each BOS so no segment exceeds S positions.
    Vectorized with a running "last BOS" index. (b, n) bool -> (b, n) bool."""
    b, n = bos.shape
    idx = torch.arange(n, device=bos.device).expand(b, n)
    last = torch.where(bos, idx, torch.full_like(idx, -1)).cummax(dim=1).values  # (b, n)
    gap = idx - last
    real = idx < lengths[:, None]
    forced = (gap > 0) & (gap % seg_len == 0) & real
    return bos | forced


@dataclass
class Windows:
    """Overlapping windows, one per BOS, each S positions long.

    doc, start: (m,) long; x: (m, s, d) vectors; beta: (m, s); logp: (m, s) log existence
    (fp32, 0 at j=0); valid: (m, s) bool (inside the document); share: (m, s) loss weight of each
    position (sums to 1 over the windows covering a real position); rank: (m,) index of the
    window within its document; counts: (b,) windows per document; ids: (m, s) char ids (level 0).
    """

    doc: torch.Tensor
    start: torch.Tensor
    x: torch.Tensor
    beta: torch.Tensor
    logp: torch.Tensor
    valid: torch.Tensor
    share: torch.Tensor
    rank: torch.Tensor
    counts: torch.Tensor
    ids: torch.Tensor | None = None


def make_windows(x, beta, bos, lengths, seg_len: int, ids=None) -> Windows:
    """Gather one S-window per BOS with a single index tensor; compute existence and shares."""
    b, n, d = x.shape
    s = seg_len
    doc, start = bos.nonzero(as_tuple=True)  # (m,), (m,) sorted by (doc, start)
    pos = start[:, None] + torch.arange(s, device=x.device)  # (m, s)
    valid = pos < lengths[doc][:, None]  # (m, s)
    xp = F.pad(x, (0, 0, 0, s))  # (b, n + s, d)
    bp = F.pad(beta, (0, s), value=1.0)  # (b, n + s)
    xw = xp[doc[:, None], pos]  # (m, s, d)
    bw = bp[doc[:, None], pos].masked_fill(~valid, 1.0)  # (m, s): existence ends at the doc end
    logp = log_existence(bw)  # (m, s)
    p = logp.exp() * valid
    flat = (doc[:, None] * (n + s) + pos).reshape(-1)  # (m*s,)
    denom = torch.zeros(b * (n + s), device=x.device, dtype=p.dtype).index_add_(0, flat, p.reshape(-1))
    share = p / denom[flat].view_as(p).clamp_min(1e-12)  # (m, s)
    counts = torch.bincount(doc, minlength=b)  # (b,)
    first = torch.cumsum(counts, 0) - counts  # (b,)
    rank = torch.arange(doc.numel(), device=x.device) - first[doc]
    idw = None
    if ids is not None:
        idw = F.pad(ids, (0, s))[doc[:, None], pos].masked_fill(~valid, 0)
    return Windows(doc, start, xw, bw, logp, valid, share, rank, counts, idw)


@fp32
def splitter_regularizers(beta, lengths, seg_len: int, min_segment: int, rate_target: float):
    """Closed-form splitter terms (METHOD §5.5) over real positions 1..len-1.

    The buffer is first padded past its end (beta = 1, not real), so the terms do not depend on
    how much padding follows a document: every real start position gets its full look-ahead.
    `min_segment` is the C of the short-segment loss (the method uses n_latents).
    Returns dict(patch, short, compression_raw) and the BOS rate r (differentiable)."""
    beta = F.pad(beta, (0, seg_len + 2), value=1.0)
    b, n = beta.shape
    idx = torch.arange(n, device=beta.device)[None]
    real = (idx < lengths[:, None]) & (idx > 0)  # (b, n)
    bb = beta.clamp(EPS, 1 - EPS)
    r = (bb * real).sum() / real.sum().clamp_min(1)
    l1m = torch.log1p(-bb) * real  # (b, n), 0 outside
    csum = F.pad(l1m.cumsum(1), (1, 0))  # (b, n+1): csum[i] = sum_{k<i}
    patch = beta.new_zeros(())
    for w in (seg_len, seg_len + 1, seg_len + 2):
        if n - w < 1:
            continue
        runs = (csum[:, 1 + w :] - csum[:, 1 : n + 1 - w]).exp()  # (b, n-w): prod over [s, s+w)
        ok = (idx[:, 1 : n + 1 - w] + w) <= lengths[:, None]  # window fully real
        patch = patch + (runs * ok).sum() / ok.sum().clamp_min(1)
    short = beta.new_zeros(())
    real0 = idx < lengths[:, None]  # the short-segment loss also counts the segment opened at position 0
    for mlen in (min_segment, min_segment - 1, min_segment - 2):
        mp = max(mlen - 1, 1)
        if n - mp < 2:
            continue
        # P(another BOS within the next mp positions after a BOS at s)
        prod = (csum[:, mp + 1 : n] - csum[:, 1 : n - mp]).exp()  # (b, n-1-mp): prod over (s, s+mp], s = 0..n-2-mp
        bs = (bb * real0)[:, : n - mp - 1]
        short = short + (bs * (1 - prod)).sum() / bs.sum().clamp_min(1e-6)
    rmax = torch.maximum(r, torch.as_tensor(rate_target, device=r.device))
    compression = (rmax + 1 - rate_target) ** 2 - 1
    return {"patch": patch, "short": short, "compression": compression}, r


# ---------------------------------------------------------------------------------------------


LOCAL_BLOCK = 32  # queries per block in `local_attention`


def local_attention(q, k, v, real, pos, n_heads: int, block: int = LOCAL_BLOCK):
    """Each query attends to the w = pos.shape[0] keys centered on it, with window-relative
    sinusoidal positions: logit(i, j) = (q_i + pos[w//2]) . (k_j + pos[j - i + w//2]) / sqrt(e),
    clamped to +-60; keys outside the document get -1e9.

    Computed blockwise: `block` queries at a time against the block's keys widened by w//2 on
    both sides (two batched matmuls); the relative-position term q . pos is a (.., w) matmul
    skewed into the band. Equals the direct per-query window (tested), without materialising
    a (b, n, d, w) key tensor. q, k, v: (b, n, d); real: (b, n) bool; pos: (w, e) -> (b, n, d)."""
    b, n, d = q.shape
    w, e, half = pos.shape[0], d // n_heads, pos.shape[0] // 2
    nb = -(-n // block)
    pad = nb * block - n
    q = q.view(b, n, n_heads, e) + pos[half]  # (b, n, h, e): the query sits at the window center
    q = F.pad(q, (0, 0, 0, 0, 0, pad)).view(b, nb, block, n_heads, e).permute(0, 1, 3, 2, 4)  # (b, nb, h, B, e)
    span = block + 2 * half  # keys seen by one block

    def blocks(t):  # (b, n, d) -> (b, nb, h, span, e): keys [i0 - half, i0 + B + half) per block
        t = F.pad(t, (0, 0, half, half + pad)).unfold(1, span, block)  # (b, nb, d, span)
        return t.view(b, nb, n_heads, e, span).transpose(-1, -2)

    kb, vb = blocks(k), blocks(v)
    kreal = F.pad(real, (half, half + pad)).unfold(1, span, block)  # (b, nb, span)
    rel = q @ pos.t().to(q.dtype)  # (b, nb, h, B, w): q . pos[r], r = j - i + half
    # skew (.., B, w) into the band of (.., B, span): entry (i, i + r) = rel[i, r]
    skew = F.pad(rel, (block, 0)).flatten(-2)[..., block : block + block * span]
    band = skew.view(*rel.shape[:-1], span)  # (b, nb, h, B, span)
    i = torch.arange(block, device=q.device)[:, None]
    jj = torch.arange(span, device=q.device)[None]
    inband = (jj >= i) & (jj < i + w)  # (B, span)
    att = ((q @ kb.transpose(-1, -2)) + band) / math.sqrt(e)  # (b, nb, h, B, span)
    keep = inband & kreal[:, :, None, None, :]
    att = att.clamp(-60, 60).masked_fill(~keep, -1e9).softmax(-1)
    y = att @ vb  # (b, nb, h, B, e)
    return y.permute(0, 1, 3, 2, 4).reshape(b, nb * block, d)[:, :n]


class BOSHead(nn.Module):
    """Per-position BOS probability: one pre-LN local-attention layer (centered window of w keys,
    window-relative sinusoidal positions, gated output), four parallel convolutions (kernels
    3/5/7/9, 8 channels each), then Linear(d + 32 -> 1). Initial rate 2/S (METHOD §5.1)."""

    def __init__(self, d: int, n_heads: int, window: int, seg_len: int, ff_ratio: int = 4):
        super().__init__()
        self.h = n_heads
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkvg = nn.Linear(d, 4 * d)
        self.o = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff_ratio * d), nn.GELU(), nn.Linear(ff_ratio * d, d))
        self.convs = nn.ModuleList([nn.Conv1d(d, 8, k, padding=k // 2) for k in (3, 5, 7, 9)])
        self.out = nn.Linear(d + 32, 1)
        self.init_logit = math.log((2.0 / seg_len) / (1 - 2.0 / seg_len))
        self.register_buffer("pos", sinusoid_table(window, d // n_heads), persistent=False)  # (w, e)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: (b, n, d), lengths: (b,) -> beta (b, n): 1 at j=0 and at/after the end."""
        b, n, d = x.shape
        real = torch.arange(n, device=x.device)[None] < lengths[:, None]  # (b, n)
        q, k, v, g = self.qkvg(self.ln1(x)).chunk(4, dim=-1)
        y = local_attention(q, k, v, real, self.pos, self.h) * torch.sigmoid(g)  # (b, n, d)
        h = x + self.o(y)
        h = self.ln3(h + self.ff(self.ln2(h)))  # (b, n, d)
        h = h * real[..., None]
        hc = h.transpose(1, 2)  # (b, d, n)
        feats = F.gelu(torch.cat([c(hc) for c in self.convs], dim=1)).transpose(1, 2)  # (b, n, 32)
        u = self.out(torch.cat([h, feats], dim=-1)).squeeze(-1).float()  # (b, n), fp32 from here on
        beta = torch.sigmoid(self.init_logit + u / math.sqrt(d)) * (1 - EPS) + EPS
        beta = torch.where(real, beta, torch.ones_like(beta))
        beta = torch.cat([torch.ones_like(beta[:, :1]), beta[:, 1:]], dim=1)
        return beta
