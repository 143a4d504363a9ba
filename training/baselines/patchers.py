"""Segmentation baselines as pure functions: BLT-style entropy patching, fixed-length patches, whitespace words.

What this module does: turn per-position scores into segment starts, in character offsets of the original text
(Python string indices, the unit of `training.metrics`). Scores come per UTF-8 byte from the AR baseline
(`CharLM.next_byte_entropy`); pass `text=` and byte positions are mapped to the character they belong to, so a
boundary on a continuation byte of a multi-byte character starts that character. Without `text` the score array is
taken to be per character already. Position 0 is always a start. The patchers follow BLT (Pagnoni et al., 2024,
"Byte Latent Transformer"):
- global threshold: position i starts a patch when the next-byte entropy H_i > threshold;
- monotonic: position i starts a patch when H_i - H_{i-1} > threshold (entropy rises by more than it);
- fixed: a start every `size` characters (`size` may be fractional; `calibrate_fixed_size` matches a rate);
- whitespace: the word starts of `training.metrics.word_starts` (the reference, so its F1 is the ceiling).
`calibrate_threshold` bisects a patcher's threshold until its characters per segment (total characters / total
segments over the given texts, as in `training/evaluate.py`) match a target, e.g. Zonkey's level 0.

What it does not do: run a model, score boundaries (`training.metrics.boundary_prf` does), or read data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from training.metrics import word_starts
from zonkey.codec import char_map

Patcher = Callable[..., list[int]]


def byte_to_char_starts(byte_starts: Sequence[int] | np.ndarray, text: str) -> list[int]:
    """Byte offsets into text.encode("utf-8") -> sorted distinct character offsets (each byte maps to its char)."""
    cmap = char_map(text)
    idx = np.asarray(byte_starts, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(cmap.char_of_byte)):
        raise ValueError(f"byte offsets must lie in [0, {len(cmap.char_of_byte)})")
    return sorted({int(c) for c in cmap.char_of_byte[idx]})


def _to_starts(flags: np.ndarray, text: str | None) -> list[int]:
    """flags (n,) bool per position -> starts with 0 included, in characters of `text` when it is given."""
    if text is not None and len(flags) != len(text.encode("utf-8")):
        raise ValueError(f"{len(flags)} scores for a text of {len(text.encode('utf-8'))} UTF-8 bytes")
    if len(flags) == 0:
        return [0]
    flags = flags.copy()
    flags[0] = True
    pos = np.flatnonzero(flags)
    return byte_to_char_starts(pos, text) if text is not None else [int(p) for p in pos]


def entropy_patch_starts(entropy: Sequence[float] | np.ndarray, threshold: float, text: str | None = None) -> list[int]:
    """Global-threshold patching: starts where entropy[i] > threshold, plus 0.

    entropy: (n,) per byte of `text` (mapped to characters) or, without `text`, per character."""
    h = np.asarray(entropy, dtype=np.float64)
    return _to_starts(h > threshold, text)


def monotonic_patch_starts(
    entropy: Sequence[float] | np.ndarray, threshold: float, text: str | None = None
) -> list[int]:
    """Monotonic patching: starts where entropy[i] - entropy[i - 1] > threshold (i >= 1), plus 0."""
    h = np.asarray(entropy, dtype=np.float64)
    rise = np.concatenate([[0.0], np.diff(h)]) if len(h) else h  # (n,)
    return _to_starts(rise > threshold, text)


def fixed_patch_starts(n_chars: int, size: float) -> list[int]:
    """Starts floor(k * size) for k = 0, 1, ... below n_chars; `size` > 0 may be fractional (mean length = size)."""
    if size <= 0:
        raise ValueError(f"size={size} must be > 0")
    if n_chars <= 0:
        return [0]
    return sorted({math.floor(k * size) for k in range(math.ceil(n_chars / size))} | {0})


def whitespace_starts(text: str) -> list[int]:
    """The reference segmentation: `training.metrics.word_starts(text)` (0 unless the text begins with a space)."""
    return word_starts(text)


def chars_per_segment_total(starts: Sequence[Sequence[int]], texts: Sequence[str]) -> float:
    """Total characters / total segments over several texts (the aggregate of `training/evaluate.py`)."""
    segments = sum(len(s) for s in starts)
    return sum(len(t) for t in texts) / max(1, segments)


def _bisect(rate, lo: float, hi: float, target: float, iterations: int, stop_on_exact: bool = False) -> float:
    """The x in [lo, hi] whose non-decreasing `rate(x)` is closest to `target` (bisection; a target outside
    [rate(lo), rate(hi)] gives the nearer end)."""
    r_lo, r_hi = rate(lo), rate(hi)
    if target <= r_lo:
        return lo
    if target >= r_hi:
        return hi
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        r_mid = rate(mid)
        if r_mid < target:
            lo, r_lo = mid, r_mid
        else:
            hi, r_hi = mid, r_mid
        if stop_on_exact and r_mid == target:
            return mid
    return lo if abs(r_lo - target) <= abs(r_hi - target) else hi


def calibrate_threshold(
    fn: Patcher,
    entropies: Sequence[np.ndarray],
    texts: Sequence[str],
    target_chars_per_segment: float,
    iterations: int = 60,
) -> float:
    """Threshold for `fn(entropy, threshold, text=text)` whose chars per segment over `texts` is closest to the target.

    Both patchers place fewer starts as the threshold grows, so chars per segment is non-decreasing in it and a
    bisection over [min score - 1, max score + 1] brackets the target; of the two ends of the final bracket the one
    whose rate is closer to the target is returned (the rate is a step function, so an exact match is not always
    possible). A target below or above every reachable rate gives the nearest end of the range.
    """
    if len(entropies) != len(texts) or not texts:
        raise ValueError("calibrate_threshold needs one entropy array per text and at least one text")

    def rate(th: float) -> float:
        return chars_per_segment_total([fn(h, th, text=t) for h, t in zip(entropies, texts)], texts)

    scores = np.concatenate([np.asarray(h, dtype=np.float64) for h in entropies])
    span = np.concatenate([scores, np.diff(scores)]) if scores.size > 1 else scores
    lo = float(span.min()) - 1.0 if span.size else -1.0
    hi = float(span.max()) + 1.0 if span.size else 1.0
    return _bisect(rate, lo, hi, target_chars_per_segment, iterations, stop_on_exact=True)


def calibrate_fixed_size(texts: Sequence[str], target_chars_per_segment: float, iterations: int = 60) -> float:
    """Patch size for `fixed_patch_starts` whose chars per segment over `texts` is closest to the target.

    Each text ends with a partial patch, so size = target gives slightly shorter segments on short texts; the
    segment count falls as the size grows, and a bisection over [1, 4 * target] corrects for it."""
    if not texts or target_chars_per_segment <= 0:
        raise ValueError("calibrate_fixed_size needs at least one text and a positive target")

    def rate(size: float) -> float:
        return chars_per_segment_total([fixed_patch_starts(len(t), size) for t in texts], texts)

    lo, hi = 1.0, 4.0 * max(1.0, target_chars_per_segment)
    return _bisect(rate, lo, hi, target_chars_per_segment, iterations)
