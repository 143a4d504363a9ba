"""Decoder (METHOD §7, fast mode of §18.2): a (noisy) latent and its noise level -> S vectors on
the rho(d) sphere plus their BOS probabilities and existence. It does not compress or stitch.

Structure: prompt [tau; z_1 + tau; ...; z_C + tau] followed by S learned position queries
(+ tau). A draft pass (plain attention) gives draft vectors u and the draft BOS probs; a refine
pass (the denoiser: Probabilistic Attention with the draft existence) gives x_hat, projected to
the sphere; the same BOS head then gives the final BOS probs and existence from x_hat.
The release's autoregressive rollout (P11) is replaced by the parallel draft; documented in
METHOD §18.2.

Axes: m windows, c latents, s window length, d model dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from zonkey._utils import fp32, rho, to_sphere
from zonkey.attention import Encoder, log_existence

BOS_LOGIT_OFFSET = -2.0  # fixed offset of the decoder BOS head (sigmoid(-2) = 0.12), as released


@dataclass
class Decoded:
    """x: (m, s, d) on the rho(d) sphere; beta: (m, s) BOS probs; logp: (m, s) log existence."""

    x: torch.Tensor
    beta: torch.Tensor
    logp: torch.Tensor


class DecoderBOSHead(nn.Module):
    """beta_j = sigmoid(clip((w . u_j + b) / sqrt(d) - 2, +-13.8))."""

    def __init__(self, d: int):
        super().__init__()
        self.lin = nn.Linear(d, 1)
        self.scale = 1.0 / math.sqrt(d)

    @fp32
    def forward(self, u):
        logit = (self.lin(u).squeeze(-1) * self.scale + BOS_LOGIT_OFFSET).clamp(-13.8, 13.8)
        return torch.sigmoid(logit)  # (m, s)


class Decoder(nn.Module):
    def __init__(
        self,
        d: int,
        n_latents: int,
        seg_len: int,
        n_heads: int,
        draft_layers: int,
        denoiser_layers: int,
        ff_ratio: int = 4,
    ):
        super().__init__()
        self.c, self.s, self.r = n_latents, seg_len, rho(d)
        self.v_clean = nn.Parameter(torch.randn(d) * 0.5)
        self.v_noisy = nn.Parameter(torch.randn(d) * 0.5)
        self.queries = nn.Parameter(torch.randn(seg_len, d) * 0.5)
        self.draft = Encoder(d, n_heads, draft_layers, ff_ratio)
        self.denoiser = Encoder(d, n_heads, denoiser_layers, ff_ratio)
        self.bos = DecoderBOSHead(d)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> Decoded:
        """z: (m, c, d) latent at noise level t: (m,) in [0, 1] -> Decoded."""
        m = z.shape[0]
        tau = torch.lerp(self.v_clean, self.v_noisy, t[:, None].to(z.dtype))[:, None]  # (m, 1, d)
        seq = torch.cat([tau, z + tau, self.queries.expand(m, -1, -1) + tau], dim=1)  # (m, 1+c+s, d)
        u = self.draft(seq)  # (m, 1+c+s, d)
        draft_logp = log_existence(self.bos(u[:, -self.s :]))  # (m, s)
        lp = torch.cat([draft_logp.new_zeros(m, 1 + self.c), draft_logp], dim=1)
        h = self.denoiser(u, lp, rows=slice(1 + self.c, None))  # (m, s, d)
        x = to_sphere(h.float(), self.r)
        beta = self.bos(x)
        return Decoded(x, beta, log_existence(beta))
