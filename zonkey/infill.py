"""Infilling of arbitrary spans by decode-clamp-encode (METHOD §13).

For each span, left to right (earlier fills become context for later ones):
- level 0 (a gap inside a word): the canvas is one level-0 window of bytes,
  [word prefix | k unknown bytes | word suffix and the following space]; the known bytes are
  clamped (as their sphere-projected embeddings) after every decode.
- level 1 (a gap of whole words): the left and right contexts are segmented and compressed at
  level 0 separately (no window crosses the gap); the canvas is one level-1 window of word
  vectors, [last left words | k unknown slots (the learned MLM mask vector) | first right words];
  known word vectors are clamped after every decode; the k new word vectors are then decoded at
  level 0 and stitched.
Existence of every canvas slot up to the last known one is forced to 1 (the prefix property,
§13 step B); when nothing follows the gap, the trailing slots may die and the fill is cut where
the predicted existence falls below the threshold. Several slot counts k are denoised together
as one batch; each is scored by how well its unclamped prediction agrees with the known content
plus the log existence of the slots that must exist, and the best is kept (for an explicit
length, the one whose realized length is closest).
Exception: at level 1 with length="auto" and context on both sides, existence cannot decide the
length (prefix property) and that score chose worse slot counts than the gap's own size. There
the span keeps its number of words: one slot per whitespace-separated word of the masked span (a
gap marker such as `___` is one word), and SAMPLES fills of that count are denoised as one batch
and ranked (§13 step B's "decode each, and pick by a score"): first a fill with as many words as
the span, then the level-0 decoder's confidence in its bytes (the mean log probability of the
most probable byte). A word vector level 1 places between real words decodes with low confidence
as a misspelled word, so the ranking keeps the samples that landed on a word (`zonkey-small`,
standard evaluation: single-word gaps 0.58 -> 0.89 valid words, three-word gaps 0.69 -> 0.88; the
original word is still rarely found, 0.01 -> 0.03). The context outside the spans is copied
from the input string, so it is byte-identical by construction. At level 1 whitespace at the
fill's edges is harmonized with the context (no doubled or missing space). The trajectory of a
span shows the kept candidate at every step; its steps reach the callback once the span's batch
is denoised (a fraction of a second on a CPU).

Axes: k candidates, s window slots, d dim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zonkey import codec
from zonkey._utils import rho, to_sphere
from zonkey.decoder import Decoded
from zonkey.diffusion import pure_noise
from zonkey.inference import decode_down, decode_to_bytes, encode_ids, read_text
from zonkey.losses import char_logits
from zonkey.outputs import InfillResult, TrajectoryStep
from zonkey.samplers import DDMMSampler
from zonkey.validation import (
    ZonkeyInputError,
    check_length,
    check_level,
    check_seed,
    check_spans,
    check_steps,
    check_temperature,
    check_text,
)

MAX_CANDIDATES = 6
SAMPLES = 8  # samples per whole-word gap with context on both sides (level 1, length='auto')
RIGHT_WORDS = 3  # at most this many word vectors after a level-1 gap in its window, the rest left context
# (on zonkey-small, 1 to 12 give the same exact single-word rate within noise; its card)


def choose_level(text: str, s: int, e: int, num_levels: int) -> int:
    """'auto': level 0 for a gap strictly inside a word, else level 1 (when the model has it)."""
    inside = 0 < s and e < len(text) and not text[s - 1].isspace() and not text[e].isspace()
    inside = inside and not any(ch.isspace() for ch in text[s:e])
    return 0 if inside or num_levels < 2 else 1


def _candidates(k_est: int, length, k_max: int) -> list[int]:
    if length == "auto":
        ks = sorted({1, 2, 3, k_est - 1, k_est, k_est + 1})
    else:
        ks = sorted({k_est - 1, k_est, k_est + 1})
    ks = [k for k in ks if 1 <= k <= k_max]
    return ks[:MAX_CANDIDATES] or [max(1, min(k_est, k_max))]


def _harmonize(left: str, fill: str, right: str) -> str:
    if left and left[-1].isspace():
        fill = fill.lstrip()
    elif left and fill and not fill[0].isspace():
        fill = " " + fill
    if right and right[0].isspace():
        fill = fill.rstrip()
    elif right and fill and not fill[-1].isspace() and right[0] not in ".,;:!?)'\"":
        fill = fill + " "
    return fill if fill.strip() else fill + "?"


class Canvas:
    """Candidate canvases of one level: known vectors, known mask, forced-existence length."""

    def __init__(self, x, known, exist_len, end=None):
        self.x, self.known, self.exist_len = x, known, exist_len
        self.end = end  # (k,) where the segment must end (a known next segment follows), or None

    def clamp(self, dec: Decoded) -> Decoded:
        x = torch.where(self.known[..., None], self.x, dec.x)
        pos = torch.arange(x.shape[1], device=x.device)[None]
        logp = torch.where(pos < self.exist_len[:, None], torch.zeros_like(dec.logp), dec.logp)
        if self.end is not None:
            logp = torch.where(pos >= self.end[:, None], torch.full_like(logp, -20.0), logp)
        return Decoded(x, dec.beta, logp)


@dataclass
class _Fills:
    """The candidates of one gap: fills (k,), scores (k,), the final decode, every step's decode
    (t, Decoded) and `read(dec, c)`, the fill text of candidate c in a decode."""

    fills: list[str]
    scores: torch.Tensor
    dec: Decoded
    frames: list
    read: Callable


def run_canvas(model, level: int, canvas: Canvas, steps: int, g, score_fn, temperature: float = 1.0, t_start=1.0):
    """Denoise the canvases (decode, clamp the known slots, re-compress) -> (final decode,
    score_fn of its unclamped prediction or None, every step's (t, clamped decode)). The steps of
    the `steps`-step schedule above `t_start` are skipped: below 1 the loop starts from the
    compressed canvas noised to t_start (SDEdit-style), so the canvas's own unknown slots count;
    at 1 (the method) it starts from pure noise and they do not."""
    lv = model.levels[level]
    lc = model.config.levels[level]
    valid = torch.arange(lc.seg_len, device=canvas.x.device)[None] < canvas.exist_len[:, None]
    logp0 = torch.where(valid, 0.0, -20.0)
    z = lv.compressor(canvas.x, logp0, valid)
    sampler = DDMMSampler(lv, temperature)
    sampler.set_timesteps(steps)
    raw = {}

    def clamp(dec: Decoded) -> Decoded:  # keep the unclamped prediction for scoring
        raw["dec"] = dec
        return canvas.clamp(dec)

    frames = []
    for t in [t for t in sampler.timesteps if t <= t_start + 1e-9]:
        out = sampler.step(z, t, generator=g, clamp=clamp)
        z = out.z
        frames.append((t, Decoded(out.x, raw["dec"].beta, out.logp)))
    dec = sampler.final(z, clamp=clamp)
    return dec, None if score_fn is None else score_fn(raw["dec"]), frames


def _context_bounds(model, left: str, right: str) -> tuple[list[int], list[int]]:
    """Byte prefix and suffix of the level-0 segment around a gap inside a word.

    The model's own deterministic segmentation of `left + right` (the gap closed up) tells where
    the segment holding the gap begins (its last start at or before the gap) and where the next
    one begins after it, so the canvas is aligned the way training windows are."""
    S = model.config.levels[0].seg_len
    lb, rb = codec.encode(left), codec.encode(right)
    joined = lb + rb
    if not joined:
        return [], []
    starts = encode_ids(model, joined, top=0)[0].win.start.tolist()
    before = [b for b in starts if b < len(lb)] or [0]
    after = [b for b in starts if b > len(lb)]
    pre = lb[max(before[-1], len(lb) - S // 2) :] if lb else []
    end = min(after[0] if after else len(joined), len(lb) + S // 2)
    suf = rb[: end - len(lb)]
    return pre, suf


def _fill_level0(model, left: str, right: str, length, target_chars: int, steps: int, g, temperature):
    lc = model.config.levels[0]
    S, r = lc.seg_len, rho(lc.d_model)
    pre, suf = _context_bounds(model, left, right)
    k_max = max(1, S - len(pre) - len(suf))
    k_est = max(1, min(target_chars, k_max))
    ks = _candidates(k_est, length, k_max)
    n = len(ks)
    emb = to_sphere(model.embed.weight, r)
    dev = model.device  # canvases live beside the model; the seeded draws stay on the CPU (`draw`)
    x = torch.zeros(n, S, lc.d_model, device=dev)
    known = torch.zeros(n, S, dtype=torch.bool, device=dev)
    ids = torch.zeros(n, S, dtype=torch.long, device=dev)
    exist_len = torch.zeros(n, dtype=torch.long, device=dev)
    for c, k in enumerate(ks):
        seq = pre + [None] * k + suf
        for p, b in enumerate(seq[:S]):
            if b is not None:
                x[c, p], known[c, p], ids[c, p] = emb[b], True, b
        exist_len[c] = min(len(seq), S) if right else len(pre)
    canvas_end = exist_len.clone() if right else None
    noise = pure_noise(n * S, 1, lc.d_model, generator=g, device=dev).view(n, S, lc.d_model)
    x = torch.where(known[..., None], x, noise)
    canvas = Canvas(x, known, exist_len, end=canvas_end)

    def fill_of(dec, c):
        k = ks[c]
        if not right:  # open end: existence decides how many bytes survive
            alive = int((dec.logp[c].exp() > model.config.infill_threshold).sum())
            k = max(1, min(S - len(pre), alive - len(pre)))
        return read_text(model, dec.x[c, len(pre) : len(pre) + k])

    def score(raw):
        lp = F.log_softmax(char_logits(raw.x, model.embed.weight), -1).gather(-1, ids[..., None]).squeeze(-1)
        known_ll = (lp * known).sum(1) / known.sum(1).clamp_min(1)
        forced = torch.arange(S, device=dev)[None] < exist_len[:, None]
        ex = (raw.logp * forced).sum(1) / forced.sum(1).clamp_min(1)
        return known_ll + ex

    dec, scores, frames = run_canvas(model, 0, canvas, steps, g, score, temperature)
    return _Fills([fill_of(dec, c) for c in range(n)], scores, dec, frames, fill_of)


def _word_vectors(model, text: str) -> torch.Tensor:
    if not text.strip():
        return torch.zeros(0, model.config.levels[1].d_model, device=model.device)
    return encode_ids(model, codec.encode(text), top=0)[0].z.flatten(1)  # (n, d1)


def byte_confidence(logits: torch.Tensor) -> torch.Tensor:
    """(..., 256) byte scores -> (...,) the log probability of the most probable byte."""
    return F.log_softmax(logits.float(), -1).max(-1).values


def decode_scored(model, level: int, v: torch.Tensor) -> tuple[str, float]:
    """(k, d) vectors of `level` -> (their text, the level-0 decoder's confidence in it): the mean
    `byte_confidence` over the decoded positions."""
    logits = char_logits(decode_to_bytes(model, level, v), model.embed.weight).float()  # (n, 256)
    return codec.decode_scores(logits.cpu().numpy()), float(byte_confidence(logits).mean())


def _fill_level1(
    model,
    left: str,
    right: str,
    length,
    target_chars: int,
    steps: int,
    g,
    temperature,
    words=1,
    samples=SAMPLES,
    t_start=1.0,
):
    """The level-1 fills of one gap (see the module docstring). `t_start` below 1 (not in the method;
    `training.headroom` measures it): the unknown slots start from the MLM head's reading of the canvas
    (the compressor's output at those slots, masked) and the sampler starts at t_start."""
    lc = model.config.levels[1]
    S = lc.seg_len
    wl, wr = _word_vectors(model, left.rstrip()), _word_vectors(model, right)
    n_ctx_chars = len(left) + len(right)
    cpw = n_ctx_chars / max(1, wl.shape[0] + wr.shape[0])
    k_max = max(1, S - 2)
    k_est = min(max(1, round(target_chars / max(cpw, 1.0))), k_max)
    # a gap with right context and length="auto": one slot per word of the span, SAMPLES samples
    # ranked by the decoder's confidence (see the module docstring); an open end still searches
    fixed = length == "auto" and bool(right.strip())
    ks = [min(words, k_max)] * samples if fixed else _candidates(k_est, length, k_max)
    n = len(ks)
    mask_vec = to_sphere(model.levels[1].mask_vector.detach(), rho(lc.d_model))
    dev = model.device
    x = torch.zeros(n, S, lc.d_model, device=dev)
    known = torch.zeros(n, S, dtype=torch.bool, device=dev)
    exist_len = torch.zeros(n, dtype=torch.long, device=dev)
    gap = torch.zeros(n, S, dtype=torch.bool, device=dev)
    starts = []
    for c, k in enumerate(ks):
        b = min(wr.shape[0], RIGHT_WORDS, S - k - 1)
        a = min(wl.shape[0], S - k - b)
        seq = [wl[wl.shape[0] - a + i] for i in range(a)] + [None] * k + [wr[i] for i in range(b)]
        for p, v in enumerate(seq):
            if v is None:
                x[c, p], gap[c, p] = mask_vec, True
            else:
                x[c, p], known[c, p] = v, True
        exist_len[c] = len(seq) if b > 0 else a
        starts.append(a)
    if t_start < 1.0:  # the MLM head's reading of each unknown slot, from the whole canvas
        inside = known | gap
        h = model.levels[1].mlm_outputs(x, gap, torch.where(inside, 0.0, -20.0), inside)
        x = torch.where(gap[..., None], to_sphere(h, rho(lc.d_model)), x)
    canvas = Canvas(x, known, exist_len)
    thr = model.config.infill_threshold

    def slots(dec, c):
        a, k = starts[c], ks[c]
        if exist_len[c] == starts[c]:  # open end: existence decides how many slots survive
            alive = int((dec.logp[c].exp() > thr).sum())
            k = max(1, min(k, alive - a))
        return dec.x[c, a : a + k]

    def score(raw):
        cos = F.cosine_similarity(raw.x, x, dim=-1)
        known_cos = (cos * known).sum(1) / known.sum(1).clamp_min(1)
        forced = torch.arange(S, device=dev)[None] < exist_len[:, None]
        ex = (raw.logp * forced).sum(1) / forced.sum(1).clamp_min(1)
        return known_cos + ex

    dec, scores, frames = run_canvas(model, 1, canvas, steps, g, score, temperature, t_start)
    fills, confidence = zip(*(decode_scored(model, 1, slots(dec, c)) for c in range(n)))
    if fixed:  # as many words as the span had first, then the decoder's confidence
        scores = torch.tensor([cf - abs(len(f.split()) - words) for f, cf in zip(fills, confidence)])
    return _Fills(list(fills), scores, dec, frames, lambda d, c: decode_down(model, 1, slots(d, c)))


@torch.inference_mode()
def infill(
    model, text, spans, level="auto", length="auto", steps: int = 20, seed: int = 0, callback=None, temperature=1.0
):
    """Fill every span (see the module docstring); `temperature` scales the sampler's re-noising
    (`zonkey.samplers`; 1 = the method's sampler)."""
    text = check_text(text)
    spans = check_spans(spans, text)
    level = check_level(level, model.num_levels)
    if level != "auto" and level > 1:
        raise ZonkeyInputError(f"level={level}: infilling runs at level 0 or 1; use 'auto', 0 or 1.")
    length, steps, seed = check_length(length), check_steps(steps), check_seed(seed)
    temperature = check_temperature(temperature)
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    cur, shift, filled, levels, trajectory = text, 0, [], [], []

    def emit(step: TrajectoryStep) -> None:
        trajectory.append(step)
        if callback is not None:
            callback(step)

    for s0, e0 in spans:
        s, e = s0 + shift, e0 + shift
        lvl = choose_level(cur, s, e, model.num_levels) if level == "auto" else level
        left, right = cur[:s], cur[e:]
        target = (e - s) if length in ("auto", "keep") else length
        if lvl == 0:
            res = _fill_level0(model, left, right, length, target, steps, g, temperature)
        else:
            words = max(1, len(cur[s:e].split()))
            res = _fill_level1(model, left, right, length, target, steps, g, temperature, words)
        fills = res.fills
        if length == "auto":
            best = int(res.scores.argmax())
        else:
            best = min(range(len(fills)), key=lambda c: (abs(len(fills[c]) - target), -float(res.scores[c])))
        # the trajectory is the kept candidate's: every step's decode of it, then the final text
        for t, d in res.frames:
            fill = res.read(d, best)
            fill = _harmonize(left, fill, right) if lvl > 0 else fill
            regions, exist = [*filled, (s, s + len(fill))], d.logp[best].exp().tolist()
            emit(TrajectoryStep(len(trajectory), t, lvl, left + fill + right, regions, exist))
        fill = _harmonize(left, fills[best], right) if lvl > 0 else fills[best]
        cur = left + fill + right
        filled.append((s, s + len(fill)))
        levels.append(lvl)
        shift += len(fill) - (e - s)
        emit(TrajectoryStep(len(trajectory), 0.0, lvl, cur, list(filled), res.dec.logp[best].exp().tolist()))
    return InfillResult(cur, filled, trajectory, levels, seed, steps, temperature)
