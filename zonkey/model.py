"""Zonkey: the stack of levels, the training forward, and the public inference methods
(which delegate to `zonkey.inference`, `zonkey.samplers` and `zonkey.infill`).

Hand-up between levels: the clean latents z (m, c, d) of level l are flattened to one vector of
width c*d per segment and scattered, in document order, into (b, L_{l+1}, c*d). Gradients flow
through (level l+1's losses also shape level l's latents). A document with more segments than
the next level's buffer L_{l+1} keeps its first L_{l+1} segments at level l+1; the others are
still trained at level l, and their number is reported as `l{l}/dropped_up` (P7: no silent drops).

Axes: b docs, n chars, m windows, c latents, d dim.
"""

from __future__ import annotations

import torch
from torch import nn

from zonkey.config import ZonkeyConfig
from zonkey.level import ZonkeyLevel
from zonkey.outputs import ForwardOutput
from zonkey.validation import DEFAULT_REFINE


class Zonkey(nn.Module):
    def __init__(self, config: ZonkeyConfig | None = None):
        super().__init__()
        self.config = config or ZonkeyConfig.preset("small")
        self.embed = nn.Embedding(self.config.vocab_size, self.config.levels[0].d_model)
        nn.init.normal_(self.embed.weight, std=1.0)
        self.levels = nn.ModuleList([ZonkeyLevel(lc, i, self.config) for i, lc in enumerate(self.config.levels)])

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # ---- training ---------------------------------------------------------------------------
    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, num_levels: int | None = None, frozen_levels: int = 0
    ) -> ForwardOutput:
        """ids: (b, n) UTF-8 bytes (0-padded), lengths: (b,) -> ForwardOutput (training only).

        num_levels: train only the lowest levels (staged training, METHOD §18.3); default all.
        frozen_levels: the lowest levels only encode, without gradient and with the inference
        segmentation rule (threshold 0.5), exactly as `reconstruct`/`generate` will feed the levels
        above; they contribute no loss terms (their `terms` dicts are empty)."""
        weights = self.config.loss_weights.as_dict()
        n_levels = num_levels or self.num_levels
        if not 0 <= frozen_levels < n_levels:
            raise ValueError(f"frozen_levels={frozen_levels} must be in 0..{n_levels - 1} (at least one level trains)")
        x = self.embed(ids)  # (b, n, d0)
        all_terms, stats, total = [], {}, x.new_zeros(())
        for i, level in enumerate(self.levels[:n_levels]):
            if i < frozen_levels:
                out = level.encode_frozen(x, lengths)
            else:
                out = level(x, lengths, ids=ids if i == 0 else None, emb=self.embed.weight if i == 0 else None)
            all_terms.append(out.terms)
            total = total + sum(weights[k] * v for k, v in out.terms.items())
            stats.update({f"l{i}/{k}": v for k, v in out.stats.items()})
            if i + 1 < n_levels:
                x, lengths, dropped = hand_up(
                    out.z, out.win.doc, out.win.rank, out.win.counts, self.config.levels[i + 1].doc_len
                )
                stats[f"l{i}/dropped_up"] = float(dropped)
                if int(lengths.max()) < 1:
                    break
        return ForwardOutput(total, all_terms, stats)

    # ---- inference (thin wrappers; see zonkey.inference) --------------------------------------
    def segment(self, text, threshold: float = 0.5):
        from zonkey.inference import segment

        return segment(self, text, threshold=threshold)

    def reconstruct(self, text, level: int | None = None) -> str:
        from zonkey.inference import reconstruct

        return reconstruct(self, text, level=level)

    def infill(
        self, text, spans, level="auto", length="auto", steps: int = 20, seed: int = 0, callback=None, temperature=1.0
    ):
        from zonkey.infill import infill

        return infill(self, text, spans, level, length, steps, seed, callback=callback, temperature=temperature)

    def generate(
        self,
        num_segments=None,
        steps: int = 20,
        seed: int = 0,
        callback=None,
        level=None,
        temperature=1.0,
        refine=DEFAULT_REFINE,
    ):
        from zonkey.samplers import generate

        return generate(self, num_segments, steps, seed, callback, level, temperature, refine)

    # ---- checkpoints ------------------------------------------------------------------------
    def save_pretrained(self, path, dtype: torch.dtype | None = None) -> None:
        from zonkey.checkpoint import save_pretrained

        save_pretrained(self, path, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path=None, device="cpu") -> "Zonkey":
        from zonkey.checkpoint import from_pretrained

        return from_pretrained(cls, path, device=device)


def hand_up(z, doc, rank, counts, cap: int):
    """Scatter flattened latents into per-document sequences for the next level.

    z: (m, c, d), doc/rank: (m,), counts: (b,) -> x (b, n, c*d), lengths (b,), dropped (int).
    The buffer is only as long as the longest document needs (n = min(cap, max count)): nothing
    at the next level depends on padding past the lengths, and the level-1 splitter then runs on
    about half the positions of the full `cap`."""
    b = counts.numel()
    keep = rank < cap
    lengths = counts.clamp(max=cap)
    x = z.new_zeros(b, max(int(lengths.max()), 1), z.shape[1] * z.shape[2])
    x = x.index_put((doc[keep], rank[keep]), z.flatten(1)[keep])
    return x, lengths, int((counts - lengths).sum())
