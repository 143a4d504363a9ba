"""ZonkeyLevel: one hierarchy level (splitter + compressor + decoder + stitcher) and its
training pass (METHOD §9-11, fast mode of §18.2). It does not hand latents to the next level;
`Zonkey` does that.

Training pass, per level:
  beta = splitter(X); sampled BOS + forced coverage -> windows (targets, existence q, shares w)
  z0 = compress(x, q); clean decode at t0 ~ 0.08 Beta(1,3)       -> clean_recon, clean_bos, stitcher
  z1 = compress(x_hat0, p_hat0) (no grad);  t ~ U(0,1); decode(noise(z1, t), t)
       level 0: token CE against the chars;  level >= 1: InfoNCE against the segment-relaxed
       target between the previous estimate (decode at t + 0.02, no grad) and the truth;
       with `dirty_from_estimate` > 0, that share of the level >= 1 windows decodes
       noise(compress(previous estimate), t) instead, the sampler's input (not in the release)
  + MLM (if configured), collapse, patch, short, compression.
kappa = (max(r, r*) + 0.1) / (r* + 0.1) scales clean/dirty recon, dirty BOS and stitcher terms.

Axes: b docs, n positions, m windows, s window length, c latents, d dim, p window pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zonkey._utils import fp32, rho, to_sphere
from zonkey.compressor import Compressor
from zonkey.config import LevelConfig, ZonkeyConfig
from zonkey.decoder import Decoder
from zonkey.diffusion import add_noise, relaxed_targets, sample_clean_t
from zonkey.losses import char_ce, existence_bce, info_nce, mean_cross_doc_cosine, stitch_position_loss
from zonkey.splitter import BOSHead, Windows, force_coverage, make_windows, sample_boundaries, splitter_regularizers
from zonkey.stitcher import Stitcher


@dataclass
class LevelPass:
    """terms: loss terms as they enter the weighted sum; z: (m, c, d) clean latents; win: the windows."""

    terms: dict[str, torch.Tensor]
    z: torch.Tensor
    win: Windows
    stats: dict[str, float]


class ZonkeyLevel(nn.Module):
    def __init__(self, cfg: LevelConfig, index: int, zcfg: ZonkeyConfig):
        super().__init__()
        self.cfg, self.index = cfg, index
        self.clean_t_max, self.dirty_step, self.mlm_ratio = zcfg.clean_t_max, zcfg.dirty_step, zcfg.mlm_ratio
        self.relax_min, self.dirty_from_estimate = zcfg.relax_min, zcfg.dirty_from_estimate
        d, c, s, h = cfg.d_model, cfg.n_latents, cfg.seg_len, cfg.n_heads
        self.splitter = BOSHead(d, h, cfg.splitter_window, s, cfg.ff_ratio)
        self.compressor = Compressor(d, c, h, cfg.compressor_layers, cfg.ff_ratio)
        self.decoder = Decoder(d, c, s, h, cfg.draft_layers, cfg.denoiser_layers, cfg.ff_ratio)
        self.stitcher = Stitcher(d, h, s, cfg.ff_ratio)
        self.mask_vector = nn.Parameter(torch.randn(d)) if cfg.mlm else None

    # ---- pieces shared with inference --------------------------------------------------------
    def split(self, x, lengths, *, threshold=None, generator=None, ids=None) -> Windows:
        beta = self.splitter(x, lengths)
        bos = sample_boundaries(beta, lengths, threshold=threshold, generator=generator)
        bos = force_coverage(bos, lengths, self.cfg.seg_len)
        return make_windows(x, beta, bos, lengths, self.cfg.seg_len, ids=ids), beta

    def recon(self, x, win: Windows, w, emb, pool, pos_cos=None):
        if self.index == 0:
            return char_ce(x, win.ids, emb, w)
        cfg = self.cfg
        return info_nce(
            x,
            win.x,
            pool,
            w,
            cfg.contrastive_negatives,
            pos_cos=pos_cos,
            same_cos=cfg.contrastive_same_cos,
            scale=cfg.contrastive_logit_scale,
        )

    def encode(self, x, lengths, threshold: float = 0.5):
        """Deterministic split + compress (the inference rule).
        x: (b, n, d), lengths: (b,) -> (windows, beta (b, n), z (m, c, d))."""
        win, beta = self.split(x, lengths, threshold=threshold)
        return win, beta, self.compressor(win.x, win.logp, win.valid)

    @torch.no_grad()
    @fp32
    def encode_frozen(self, x, lengths, threshold: float = 0.5) -> LevelPass:
        """A frozen level during staged training: `encode` without gradient, no loss terms, in
        float32 also under bf16 autocast (the levels above train on exactly what inference gives).
        x: (b, n, d), lengths: (b,) -> LevelPass with z (m, c, d) and empty terms."""
        win, _, z = self.encode(x, lengths, threshold=threshold)
        m = win.doc.numel()
        stats = {"segments": float(m), "chars_per_segment": float(lengths.sum()) / max(m, 1)}
        return LevelPass({}, z, win, stats)

    # ---- training ---------------------------------------------------------------------------
    def forward(self, x, lengths, *, ids=None, emb=None) -> LevelPass:
        """x: (b, n, d) level inputs, lengths: (b,), ids: (b, n) chars at level 0, emb: (256, d0)."""
        cfg = self.cfg
        win, beta = self.split(x, lengths, ids=ids)
        m, dev = win.doc.numel(), x.device
        regs, r = splitter_regularizers(beta, lengths, cfg.seg_len, cfg.min_segment, cfg.rate_target)
        rt = cfg.rate_target
        kappa = (torch.clamp(r, min=rt) + 0.1) / (rt + 0.1)
        w = win.share * win.valid
        pool = win.x[win.valid] if self.index > 0 else None  # (P, d) negatives pool
        p_label = win.logp.exp()

        z0 = self.compressor(win.x, win.logp, win.valid)  # (m, c, d)
        t0 = sample_clean_t(m, self.clean_t_max, device=dev)
        dec0 = self.decoder(add_noise(z0, t0), t0)
        terms = {
            "clean_recon": kappa * self.recon(dec0.x, win, w, emb, pool),
            "clean_bos": existence_bce(dec0.logp, p_label),
        }

        # stitcher on consecutive windows of a document: decoded (clean pass) and "null" (inputs),
        # both as one batch of 2p pairs through the stitcher
        pair = (win.doc[:-1] == win.doc[1:]).nonzero(as_tuple=True)[0]  # (p,)
        if pair.numel() > 0:
            p = pair.numel()
            delta = win.start[pair + 1] - win.start[pair]
            u = torch.cat([dec0.x, to_sphere(win.x, rho(cfg.d_model))])  # (2m, s, d): decoded, then inputs
            lp = torch.cat([dec0.logp, win.logp])  # (2m, s)
            left = torch.cat([pair, pair + m])  # (2p,): the left window of each pair, decoded then null
            u_left, u_right = u[left], u[left + 1]  # (2p, s, d)
            _, mean = self.stitcher.offset_posterior(u_left, lp[left], u_right)
            refined = self.stitcher.refine(u_left, u_right, lp[left + 1], delta.repeat(2))  # (2p, s, d)
            sub = Windows(
                *(
                    None if f is None else f[pair]
                    for f in (win.doc, win.start, win.x, win.beta, win.logp, win.valid, win.share, win.rank)
                ),
                counts=win.counts,
                ids=None if win.ids is None else win.ids[pair],
            )
            wp = w[pair]
            for name, half, k in (("stitch", slice(0, p), kappa), ("null", slice(p, None), 1.0)):
                terms[f"{name}_pos"] = k * stitch_position_loss(mean[half], delta, wp)
                terms[f"{name}_seq"] = k * self.recon(refined[half], sub, wp, emb, pool)
        else:
            zero = x.new_zeros(())
            terms.update(stitch_pos=zero, stitch_seq=zero, null_pos=zero, null_seq=zero)

        # dirty pass from the re-compressed reconstruction
        with torch.no_grad():
            z1 = self.compressor(dec0.x.detach(), dec0.logp.detach(), torch.ones_like(win.valid))
        t = torch.rand(m, device=dev)
        if self.index > 0 and self.dirty_from_estimate > 0:
            dec2, prev = self.dirty_from_previous_estimate(z1, t)
        else:  # the release's order of draws: the dirty decode, then the previous estimate
            dec2, prev = self.decoder(add_noise(z1, t), t), None
        if self.index == 0:
            terms["dirty_recon"] = kappa * self.recon(dec2.x, win, w, emb, pool)
            terms["dirty_bos"] = kappa * existence_bce(dec2.logp, p_label)
        else:
            prev = self.previous_estimate(z1, t) if prev is None else prev
            tgt, tstar = relaxed_targets(dec2.x, prev.x, win.x, w, self.relax_min)
            pos_cos = F.cosine_similarity(dec2.x, tgt, dim=-1)
            terms["dirty_recon"] = kappa * self.recon(dec2.x, win, w, emb, pool, pos_cos=pos_cos)
            label = tstar[:, None] * p_label + (1 - tstar[:, None]) * prev.logp.exp()
            terms["dirty_bos"] = kappa * existence_bce(dec2.logp, label)

        if self.mask_vector is not None:
            terms["mlm"] = self.mlm_loss(win, w, pool)
        terms["collapse"] = (mean_cross_doc_cosine(z0, win.doc) + mean_cross_doc_cosine(z1, win.doc)).abs()
        terms["patch"], terms["short"] = regs["patch"], regs["short"]
        terms["compression"] = cfg.compression_penalty * regs["compression"]
        stats = {
            "bos_rate": float(r.detach()),
            "segments": float(m),
            "kappa": float(kappa.detach()),
            "chars_per_segment": float(lengths.sum()) / max(m, 1),
        }
        return LevelPass(terms, z0, win, stats)

    @torch.no_grad()
    def previous_estimate(self, z1, t):
        """The dirty pass's previous estimate: decode at t + dirty_step, without gradient."""
        t1 = (t + self.dirty_step).clamp_max(1.0)
        return self.decoder(add_noise(z1, t1), t1)

    def dirty_from_previous_estimate(self, z1, t):
        """The dirty pass as the sampler runs it, for a `dirty_from_estimate` share of the windows:
        the previous estimate (decode at t + dirty_step, no grad) is re-compressed and noised to t,
        so the decoder learns to step from its own prediction (a blend where the noise was high)
        rather than from the re-compressed clean reconstruction z1. z1: (m, c, d), t: (m,) ->
        (decoded, previous estimate)."""
        prev = self.previous_estimate(z1, t)
        with torch.no_grad():
            z_prev = self.compressor(prev.x, prev.logp, torch.ones_like(prev.logp, dtype=torch.bool))
            pick = torch.rand(t.shape, device=t.device) < self.dirty_from_estimate  # (m,)
            z_in = torch.where(pick[:, None, None], z_prev.to(z1.dtype), z1)
        return self.decoder(add_noise(z_in, t), t), prev

    def mlm_loss(self, win: Windows, w, pool):
        """Masked-vector loss on this level's input windows (METHOD §10.4): 20% of real positions,
        80% mask vector / 10% random sphere vector / 10% unchanged, through the compressor's
        transformer; InfoNCE against the original vector. With `mlm_denoiser` (the original code's
        HEAD) the mean of that and the same InfoNCE on the decoder's output for the corrupted window
        compressed and noised to t ~ U(0, 1): the prediction infilling makes."""
        cfg = self.cfg
        d = cfg.d_model
        cand = win.valid & (w > 0)
        pick = (torch.rand(cand.shape, device=w.device) < self.mlm_ratio) & cand
        if not pick.any():
            return w.new_zeros(())
        x = to_sphere(win.x, rho(d))
        u = torch.rand(cand.shape, device=w.device)
        rnd = to_sphere(torch.randn_like(x), rho(d))
        x = torch.where((pick & (u >= 0.8) & (u < 0.9))[..., None], rnd, x)
        masked = pick & (u < 0.8)
        h = self.mlm_outputs(x, masked, win.logp, win.valid)  # (m, s, d)

        def loss(pred):
            return info_nce(
                pred, win.x, pool, pick.float(), cfg.mlm_negatives, same_cos=cfg.mlm_same_cos, scale=cfg.mlm_logit_scale
            )

        compressor_variant = loss(h)
        if not cfg.mlm_denoiser:
            return compressor_variant
        # denoiser variant: the corrupted window through the whole compressor, noised, decoded
        mask = to_sphere(self.mask_vector, rho(d))
        z = self.compressor(torch.where(masked[..., None], mask, x), win.logp, win.valid)  # (m, c, d)
        t = torch.rand(z.shape[0], device=z.device)
        return 0.5 * (compressor_variant + loss(self.decoder(add_noise(z, t), t).x))

    def mlm_outputs(self, x, masked, logp, valid):
        """The MLM head: the compressor's transformer over inputs x (m, s, d) on the rho(d) sphere
        whose `masked` (m, s) positions are replaced by the learned mask vector -> (m, s, d)."""
        mask = to_sphere(self.mask_vector, rho(self.cfg.d_model))
        x = torch.where(masked[..., None], mask, x)
        return self.compressor.encode_tokens(x, logp, valid, rows=slice(self.cfg.n_latents, None))
