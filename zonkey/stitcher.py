"""Stitcher (METHOD §11): offset inference between consecutive overlapping windows, refinement
of the left window by cross-attention to the right one, and vectorized placement of windows
into one sequence. It does not decode or compute reconstruction losses.

Axes: p window pairs, s window length, d dim, q content-match probes (4).

Decisions (METHOD P10, P20):
- The posterior is over offsets n = 1..S (n = S: no overlap) with the decay prior
  pi_n = p_{n-1} - p_n (n < S), pi_S = p_{S-1}; training uses the posterior mean (differentiable).
- Inference places windows at the mode of the decay prior alone. Measured: once BOS probabilities
  become hard (they do within a few hundred steps), a window's decoded positions past its own end
  get no loss weight, so the content match there compares untrained vectors and pulled the
  posterior to wrong offsets; the existence drop located the true offset.
- The right window's keys are placed in the left window's frame (positions offset + j), so the
  cross-attention compares the same document positions; the refiner is pre-LN like every block.
- Placement writes exactly sum(lengths) positions; the caller passes the last window's real
  length (its existence cut-off), so nothing past the stitched length survives (P20).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zonkey._utils import fp32, rho, to_sphere
from zonkey.attention import Block

N_PROBES = 4


def place(windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenate windows[i, :lengths[i]] for all i with one gather.

    windows: (n, s, d), lengths: (n,) long in [0, s] -> (sum(lengths), d)."""
    total = int(lengths.sum())
    cum = lengths.cumsum(0)  # (n,)
    pos = torch.arange(total, device=windows.device)
    win = torch.searchsorted(cum, pos, right=True)  # (N,)
    off = pos - (cum - lengths)[win]
    return windows[win, off]


class Stitcher(nn.Module):
    def __init__(self, d: int, n_heads: int, seg_len: int, ff_ratio: int = 4):
        super().__init__()
        self.s, self.r = seg_len, rho(d)
        self.proj = nn.Linear(d, max(d // 4, 1), bias=False)
        self.theta = nn.Parameter(torch.tensor(1.0))
        self.refiner = Block(d, n_heads, ff_ratio, cross=True)
        self.alpha = nn.Parameter(torch.tensor(0.1))

    @fp32
    def offset_posterior(self, u1, logp1, u2):
        """u1, u2: (p, s, d) consecutive windows, logp1: (p, s) log existence of u1
        -> (posterior (p, s) over offsets 1..s, expected offset (p,))."""
        p, s, _ = u1.shape
        e1 = logp1.exp()
        prior = torch.cat([(e1[:, :-1] - e1[:, 1:]).clamp_min(0), e1[:, -1:]], dim=1)  # (p, s): n = 1..s
        a = self.proj(u1)  # (p, s, d4)
        b = self.proj(u2[:, :N_PROBES])  # (p, q, d4)
        dots = torch.einsum("pie,pje->pij", a, b) / a.shape[-1] ** 0.5  # (p, s, q)
        dots = F.pad(dots, (0, 0, 0, N_PROBES))  # (p, s + q, q)
        n = torch.arange(1, s + 1, device=u1.device)  # offsets
        i = n[:, None] + torch.arange(N_PROBES, device=u1.device)[None]  # (s, q) rows of u1
        ok = (i < s).to(dots.dtype)  # (s, q)
        j = torch.arange(N_PROBES, device=u1.device).expand(s, -1)
        match = dots[:, i, j]  # (p, s, q)
        match = (match * ok).sum(-1) / ok.sum(-1).clamp_min(1)  # (p, s); 0 at n = s
        gamma = F.elu(self.theta - 1) + 1
        post = torch.softmax(torch.log(prior.clamp_min(1e-12)) + gamma * match, dim=-1)
        return post, (post * n.to(post.dtype)).sum(-1)

    def refine(self, u1, u2, logp2, offset):
        """Refine u1 with cross-attention to u2 placed at `offset` (p,) long in u1's frame."""
        p, s, _ = u1.shape
        q_pos = torch.arange(s, device=u1.device).expand(p, s)
        k_pos = (offset[:, None].long() + torch.arange(s, device=u1.device)).clamp_max(511)
        bias = logp2[:, None, None, :].to(u1.dtype)  # (p, 1, 1, s)
        y = self.refiner(u1, bias=bias, ctx=u2, q_pos=q_pos, k_pos=k_pos) - u1
        return to_sphere(u1 + self.alpha * y, self.r)

    def stitch(self, u, logp, last_len: int | None = None, threshold: float = 0.5):
        """Inference: windows u (n, s, d) with existence logp (n, s) of ONE sequence -> (N, d).

        Offsets between consecutive windows are inferred (mode of the decay prior, >= 1); the last
        window keeps its positions with existence > threshold (or `last_len`)."""
        n, s, _ = u.shape
        if last_len is None:
            last_len = int((logp[-1].exp() > threshold).sum().clamp_min(1))
        if n == 1:
            return u[0, :last_len]
        e = logp[:-1].exp()  # (n-1, s)
        prior = torch.cat([(e[:, :-1] - e[:, 1:]).clamp_min(0), e[:, -1:]], dim=1)
        k = prior.argmax(-1) + 1  # (n-1,) where the left window's existence drops most
        refined = self.refine(u[:-1], u[1:], logp[1:], k)
        wins = torch.cat([refined, u[-1:]], dim=0)
        lengths = torch.cat([k, k.new_tensor([last_len])])
        return place(wins, lengths)
