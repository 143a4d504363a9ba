"""Probabilistic Attention (METHOD §4) and the transformer blocks built on it.

Axes: b batch (segments), t tokens, h heads, e head dim, d model dim.

Existence. A window's position j exists with probability p_j = prod_{k=1..j} (1 - beta_k); we
carry log p (fp32). For a query q and a later key k > q the logit gets the additive bias
log p_k - log p_q = log P(k exists | q exists); earlier keys get 0 (attention stays
bidirectional). Keys that cannot exist at all (padding past a document's end) get -inf through
an explicit boolean key mask, and rows of padded queries are zeroed: padding never attends and
is never attended (fixes METHOD P3/P4, where padding kept existence 1 and -inf was dead code).

This module does not know about segments, splitting or diffusion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zonkey._utils import EPS, fp32


def log_existence(beta: torch.Tensor) -> torch.Tensor:
    """(..., s) BOS probs -> (..., s) log existence: 0 at j=0, sum_{k=1..j} log(1 - beta_k). fp32."""
    lb = torch.log1p(-beta.float().clamp(EPS, 1 - EPS))  # (..., s)
    lb = torch.cat([torch.zeros_like(lb[..., :1]), lb[..., 1:]], dim=-1)
    return lb.cumsum(-1)


def existence_bias(logp: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(b, t) log existence [+ (b, t) bool key mask] -> (b, 1, t, t) additive attention bias.

    bias[q, k] = logp[k] - logp[q] for k > q, 0 for k <= q; -inf for masked keys."""
    diff = logp[:, None, :] - logp[:, :, None]  # (b, q, k)
    bias = torch.triu(diff, diagonal=1)
    if key_mask is not None:
        bias = bias.masked_fill(~key_mask[:, None, :], float("-inf"))
        # rows of masked queries would be all -inf for nothing; keep them finite (zeroed later)
        bias = bias.masked_fill(~key_mask[:, :, None], 0.0)
    return bias[:, None]  # (b, 1, t, t)


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """(n, dim) sinusoidal position table."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    inv = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    tab = torch.zeros(n, dim)
    tab[:, 0::2] = torch.sin(pos * inv)
    tab[:, 1::2] = torch.cos(pos * inv)
    return tab


# ---------------------------------------------------------------------------------------------


@fp32
def _attend(q, k, v, bias):
    """Scaled-dot-product attention with the additive existence bias, always in float32: under
    bf16 autocast the projections run in bf16, the attention itself does not (METHOD §4; CPU bf16
    attention backward also measured 5x slower than float32)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class Attention(nn.Module):
    """Multi-head self- or cross-attention with output gating and sinusoidal positions added to
    Q and K per head. `bias` is an additive (b, 1, tq, tk) float mask (Probabilistic Attention)."""

    def __init__(self, d: int, n_heads: int, max_pos: int = 512, cross: bool = False):
        super().__init__()
        self.h, self.e = n_heads, d // n_heads
        self.cross = cross
        if cross:
            self.q = nn.Linear(d, 2 * d)  # q, gate
            self.kv = nn.Linear(d, 2 * d)
        else:
            self.qkvg = nn.Linear(d, 4 * d)
        self.o = nn.Linear(d, d)
        self.register_buffer("pos", sinusoid_table(max_pos, self.e), persistent=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.h, self.e)).transpose(1, 2)  # (b, h, t, e)

    def forward(self, x, bias=None, ctx=None, q_pos=None, k_pos=None, rows: slice | None = None):
        """x: (b, tq, d); ctx: (b, tk, d) for cross-attention; q_pos/k_pos: (b, t) long or None.

        rows (self-attention only): compute the outputs of these query positions only, (b, tq', d);
        keys and values still come from every position, so the rows equal the full output's rows."""
        if rows is not None and (self.cross or q_pos is not None):
            raise ValueError("rows= is for self-attention with default positions only")
        if self.cross:
            q, g = self.q(x).chunk(2, dim=-1)
            k, v = self.kv(ctx).chunk(2, dim=-1)
        elif rows is None:
            q, k, v, g = self.qkvg(x).chunk(4, dim=-1)
        else:
            d, w, b = x.shape[-1], self.qkvg.weight, self.qkvg.bias  # (4d, d), (4d,): q | k | v | g
            k, v = F.linear(x, w[d : 3 * d], b[d : 3 * d]).chunk(2, dim=-1)
            wqg, bqg = torch.cat([w[:d], w[3 * d :]]), torch.cat([b[:d], b[3 * d :]])
            q, g = F.linear(x[:, rows], wqg, bqg).chunk(2, dim=-1)
            bias = None if bias is None else bias[:, :, rows]
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # (b, h, t, e)
        tq, tk = q.shape[2], k.shape[2]
        if rows is not None:
            pq = self.pos[: x.shape[1]][rows]  # (tq', e): the kept queries' own positions
        elif q_pos is None:
            pq = self.pos[:tq]  # (tq, e)
        else:
            pq = self.pos[q_pos][:, None]  # (b, 1, tq, e)
        pk = self.pos[:tk] if k_pos is None else self.pos[k_pos][:, None]
        out = _attend(q + pq, k + pk, v, bias)  # (b, h, tq, e)
        out = out * torch.sigmoid(self._heads(g))
        return self.o(out.transpose(1, 2).flatten(2))  # (b, tq, d)


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN x); x + FFN(LN x)."""

    def __init__(self, d: int, n_heads: int, ff_ratio: int = 4, cross: bool = False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ln_ctx = nn.LayerNorm(d) if cross else None
        self.attn = Attention(d, n_heads, cross=cross)
        self.ff = nn.Sequential(nn.Linear(d, ff_ratio * d), nn.GELU(), nn.Linear(ff_ratio * d, d))

    def forward(self, x, bias=None, ctx=None, q_pos=None, k_pos=None, rows: slice | None = None):
        """rows: return only these positions (see `Attention.forward`): (b, t', d)."""
        ctx = self.ln_ctx(ctx) if self.ln_ctx is not None else None
        res = x if rows is None else x[:, rows]
        x = res + self.attn(self.ln1(x), bias=bias, ctx=ctx, q_pos=q_pos, k_pos=k_pos, rows=rows)
        return x + self.ff(self.ln2(x))


class Encoder(nn.Module):
    """A stack of pre-LN blocks with Probabilistic Attention and a final LayerNorm.

    forward(x (b, t, d), logp (b, t) | None, key_mask (b, t) bool | None) -> (b, t, d).
    With logp=None and key_mask=None this is plain bidirectional attention."""

    def __init__(self, d: int, n_heads: int, n_layers: int, ff_ratio: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d, n_heads, ff_ratio) for _ in range(n_layers)])
        self.ln = nn.LayerNorm(d)

    def forward(self, x, logp=None, key_mask=None, return_residual: bool = False, rows: slice | None = None):
        """return_residual: also return the residual stream before the final LayerNorm.
        rows: the caller needs only these positions; the last block computes just their queries
        (the compressor keeps its C latents, the decoder its S slots): (b, t', d), equal to the
        same rows of the full output."""
        bias = None
        if logp is not None:
            bias = existence_bias(logp, key_mask)
        elif key_mask is not None:
            bias = existence_bias(torch.zeros_like(key_mask, dtype=torch.float32), key_mask)
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            x = blk(x, bias=bias, rows=rows if i == last else None)
        out = self.ln(x)
        if key_mask is not None:
            out = out * (key_mask if rows is None else key_mask[:, rows])[..., None]
        return (out, x) if return_residual else out
