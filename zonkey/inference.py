"""Deterministic inference: encode a text bottom-up (segment + compress, level by level) and
decode latents top-down (decode at t = 0, stitch with inferred offsets, read characters as the
most probable well-formed UTF-8 bytes).
Training code lives in `level.py`; sampling loops in `samplers.py` and `infill.py`.

Decision rule for segmentation at inference: position 0, every position whose BOS probability
exceeds `threshold` (default 0.5), plus forced starts every S positions after the last start
(the same coverage rule as training), so no segment is longer than S units.

Axes: n positions, m windows, c latents, d dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zonkey import codec
from zonkey._utils import rho, to_sphere
from zonkey.losses import char_logits
from zonkey.outputs import LevelSegmentation, Segmentation
from zonkey.splitter import Windows
from zonkey.validation import ZonkeyInputError, check_text


@dataclass
class LevelCode:
    """One level of an encoded text: beta (n,), windows, clean latents z (m, c, d)."""

    beta: torch.Tensor
    win: Windows
    z: torch.Tensor


def encode_ids(model, ids: list[int], threshold: float = 0.5, top: int | None = None) -> list[LevelCode]:
    """Segment and compress a byte sequence through levels 0..top (default all)."""
    top = model.num_levels - 1 if top is None else top
    x = model.embed(torch.tensor(ids, dtype=torch.long, device=model.device))[None]  # (1, n, d0)
    out = []
    for i in range(top + 1):
        level = model.levels[i]
        lengths = torch.tensor([x.shape[1]], device=x.device)
        win, beta, z = level.encode(x, lengths, threshold=threshold)  # z: (m, c, d)
        out.append(LevelCode(beta[0], win, z))
        x = z.flatten(1)[None]  # (1, m, c*d): next level's inputs
    return out


def decode_windows(model, level: int, z: torch.Tensor, t: float = 0.0, last_len: int | None = None):
    """Decode latents (m, c, d) of one sequence at `level` and stitch -> (N, d_level) vectors."""
    lv = model.levels[level]
    dec = lv.decoder(z, torch.full((z.shape[0],), t, device=z.device))
    return lv.stitcher.stitch(dec.x, dec.logp, last_len=last_len, threshold=model.config.infill_threshold)


def vectors_to_latents(model, level: int, v: torch.Tensor) -> torch.Tensor:
    """(N, c*d) vectors of level `level` + 1 -> (N, c, d) latents of `level` on their sphere."""
    lc = model.config.levels[level]
    return to_sphere(v, rho(lc.n_latents * lc.d_model)).view(-1, lc.n_latents, lc.d_model)


def decode_to_bytes(model, level: int, seq: torch.Tensor) -> torch.Tensor:
    """(N, d_level) vectors of `level` -> (n, d0) level-0 vectors, decoding (t = 0) and stitching
    each level below."""
    for lv in range(level - 1, -1, -1):
        seq = decode_windows(model, lv, vectors_to_latents(model, lv, seq))
    return seq


def decode_down(model, level: int, seq: torch.Tensor) -> str:
    """(N, d_level) vectors of `level` -> text (`decode_to_bytes`, then `read_text`)."""
    return read_text(model, decode_to_bytes(model, level, seq))


def read_text(model, x: torch.Tensor) -> str:
    """(N, d0) level-0 vectors -> text: tied-embedding scores read as well-formed UTF-8."""
    return codec.decode_scores(char_logits(x, model.embed.weight).float().cpu().numpy())


@torch.inference_mode()
def segment(model, text, threshold: float = 0.5) -> Segmentation:
    text = check_text(text)
    if not 0.0 < float(threshold) < 1.0:
        raise ZonkeyInputError(f"threshold={threshold} must be in (0, 1).")
    model.eval()
    cmap = codec.char_map(text)
    codes = encode_ids(model, codec.encode(text), threshold=threshold)
    n = len(text)
    levels = []
    first_bytes = cmap.byte_of_char[:-1]
    # level 0: the highest BOS prob among each char's bytes, as starts are mapped to the char holding
    # the byte; so a start whose char is at or below the threshold was forced (position 0, coverage)
    beta0 = codes[0].beta.float().cpu().numpy()  # (n_bytes,)
    bos0 = np.maximum.reduceat(beta0[: cmap.byte_of_char[-1]], first_bytes).astype(np.float64)
    starts_bytes = codes[0].win.start.cpu().numpy()
    starts0 = sorted(set(cmap.char_of_byte[starts_bytes].tolist()))
    levels.append(LevelSegmentation(0, bos0, starts0, float(threshold)))
    seg_chars = cmap.char_of_byte[starts_bytes]  # (m0,) char offset of each level-0 segment
    for i in range(1, len(codes)):
        beta = codes[i].beta.float().cpu().numpy()  # (m_{i-1},) one per lower segment
        bos = np.zeros(n, dtype=np.float64)
        np.maximum.at(bos, seg_chars, beta)
        seg_chars = seg_chars[codes[i].win.start.cpu().numpy()]  # (m_i,) char offset of each segment
        levels.append(LevelSegmentation(i, bos, sorted(set(seg_chars.tolist())), float(threshold)))
    return Segmentation(text, levels)


@torch.inference_mode()
def reconstruct(model, text, level: int | None = None) -> str:
    """Encode up to `level` (default: the top level), then decode back down to text."""
    text = check_text(text)
    top = model.num_levels - 1 if level is None else level
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top < model.num_levels:
        raise ZonkeyInputError(f"level={level!r} is invalid; use None or an int in 0..{model.num_levels - 1}.")
    model.eval()
    codes = encode_ids(model, codec.encode(text), top=top)
    return decode_down(model, top, decode_windows(model, top, codes[top].z))
