"""Text metrics of DESIGN §7 as pure functions: edit distance, boundary P/R/F1, word statistics.

What this module does: compute character error rate, reference word and sentence starts, one-to-one boundary
matching with a tolerance, characters per segment, valid-word rate and distinct-n, on plain strings and lists of
offsets; and 95 % intervals: Wilson's for a rate of n 0/1 items, a seeded bootstrap for a ratio of sums over
items. All offsets are Python string indices (characters, not bytes).

What it does not do: import or run the model, choose thresholds, or aggregate over a corpus (`training/evaluate.py`
does that and is where the figures of the model card come from).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"[A-Za-z]+")
# a sentence end: [.!?], then any closing quotes or brackets, then whitespace; the next non-space char starts one
_SENTENCE_END = re.compile(r"[.!?][\"'\u2019\u201d\u00bb)\]}]*\s+(?=\S)")


# --- edit distance ------------------------------------------------------------------------------------------------


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each cost 1) between two strings, by character.

    Row dynamic programming with numpy: each row's insertion chain is a running minimum, so the Python loop runs
    over the shorter string only (two 2,000-character strings take a few milliseconds).
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    xb = _codepoints(b)
    cols = np.arange(len(b) + 1, dtype=np.int64)
    row = cols.copy()  # distance of a[:0] to every prefix of b
    for i, ch in enumerate(_codepoints(a), start=1):
        cost = (xb != ch).astype(np.int64)
        new = np.empty_like(row)
        new[0] = i
        new[1:] = np.minimum(row[1:] + 1, row[:-1] + cost)  # deletion, substitution/match
        row = np.minimum.accumulate(new - cols) + cols  # insertion: new[j] = min_k<=j new[k] + (j - k)
    return int(row[-1])


def cer(hyp: str, ref: str) -> float:
    """Character error rate: levenshtein(hyp, ref) / max(1, len(ref)); 0.0 for identical strings, may exceed 1."""
    return levenshtein(hyp, ref) / max(1, len(ref))


# --- reference boundaries -----------------------------------------------------------------------------------------


def word_starts(text: str) -> list[int]:
    """Offsets of word starts: a non-space character at the start of the text or right after whitespace."""
    return [i for i, ch in enumerate(text) if not ch.isspace() and (i == 0 or text[i - 1].isspace())]


def sentence_starts(text: str) -> list[int]:
    """Offsets of sentence starts: the first non-space character of the text (0 unless the text begins with
    whitespace), plus the first non-space character after each sentence end ([.!?], optionally followed by closing
    quotes or brackets, then whitespace). Every sentence start is also a word start. Abbreviations ("e.g. the")
    count as sentence ends: the rule is deliberately simple and the same for every model and baseline.
    """
    first = next((i for i, ch in enumerate(text) if not ch.isspace()), None)
    if first is None:
        return []
    return [first] + [m.end() for m in _SENTENCE_END.finditer(text, first)]


# --- boundary matching --------------------------------------------------------------------------------------------


def match_boundaries(pred: Iterable[int], ref: Iterable[int], tolerance: int = 0) -> list[tuple[int, int]]:
    """One-to-one matching of predicted to reference offsets with |p - r| <= tolerance.

    Candidate pairs are taken greedily by distance (ties by position), and each offset is used at most once, so one
    reference boundary cannot be credited to two nearby predictions. Duplicated offsets count once.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance={tolerance} must be >= 0")
    refs = set(ref)
    candidates = sorted(
        (abs(p - r), p, r) for p in set(pred) for r in range(p - tolerance, p + tolerance + 1) if r in refs
    )
    used_p: set[int] = set()
    used_r: set[int] = set()
    pairs = []
    for _, p, r in candidates:
        if p not in used_p and r not in used_r:
            used_p.add(p)
            used_r.add(r)
            pairs.append((p, r))
    return pairs


def boundary_prf(pred: Iterable[int], ref: Iterable[int], tolerance: int = 0) -> dict[str, float | int]:
    """Precision, recall and F1 of predicted segment starts against reference starts.

    Offset 0 is removed from both sets before scoring: a segment always begins there, so counting it would reward
    every segmentation for free. Duplicates count once. Matching is one-to-one (`match_boundaries`), strict with
    `tolerance=0`, and `tolerance=1` accepts a start one character early or late.
    Edge cases: if both sets are empty every score is 1.0 (nothing to find, nothing wrongly found); if exactly one is
    empty, precision, recall and F1 are 0.0.

    Returns:
        {"precision", "recall", "f1"} as floats in [0, 1] and {"tp", "n_pred", "n_ref"} as int counts.
    """
    p_set = {int(p) for p in pred} - {0}
    r_set = {int(r) for r in ref} - {0}
    tp = len(match_boundaries(p_set, r_set, tolerance))
    n_pred, n_ref = len(p_set), len(r_set)
    if n_pred == 0 and n_ref == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_ref if n_ref else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "n_pred": n_pred, "n_ref": n_ref}


def chars_per_segment(starts: Iterable[int], n_chars: int) -> float:
    """Mean segment length in characters: n_chars / number of segments.

    Segments are counted as the distinct starts inside [0, n_chars), plus one for the leading text when 0 is not
    among them. An empty text gives 0.0.
    """
    if n_chars <= 0:
        return 0.0
    inside = {s for s in starts if 0 <= s < n_chars}
    return n_chars / (len(inside | {0}))


# --- word statistics ----------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lowercased alphabetic words (`[A-Za-z]+`) of `text`, the unit of `valid_word_rate`."""
    return [w.lower() for w in _WORD.findall(text)]


SINGLE_LETTER_WORDS = frozenset({"a", "i"})


def is_valid_word(word: str, vocab: set[str]) -> bool:
    """A lowercased alphabetic word of the training vocabulary; of single letters only "a" and "i"
    count (the vocabulary holds every letter, from initials such as "J. Smith", and a one-letter
    fill must not pass as a valid word)."""
    return word in vocab and (len(word) > 1 or word in SINGLE_LETTER_WORDS)


def valid_word_rate(text: str, vocab: set[str]) -> float:
    """Fraction of the alphabetic words of `text` (lowercased) that are valid words (`is_valid_word`).

    A text without any alphabetic word scores 0.0, not NaN: an empty or letterless fill is not a valid word.
    """
    found = words(text)
    if not found:
        return 0.0
    return sum(is_valid_word(w, vocab) for w in found) / len(found)


def is_single_valid_word(fill: str, vocab: set[str]) -> bool:
    """The whole (stripped) fill is exactly one valid word: the single-word infill criterion."""
    return is_valid_word(fill.strip().lower(), vocab)


def fill_validity(fill: str, vocab: set[str], k_words: int) -> float:
    """Infill score of a fill for a gap of k_words words: 1.0 / 0.0 whether a single-word gap got
    exactly one valid word; the valid-word rate of the fill for longer gaps."""
    return float(is_single_valid_word(fill, vocab)) if k_words == 1 else valid_word_rate(fill, vocab)


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the whitespace-separated words of `text`; 0.0 when there are none."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    tokens = text.split()
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


# --- uncertainty --------------------------------------------------------------------------------------------------


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % for z = 1.96) of a rate of k successes in n independent trials.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at k = 0 or k = n, which
    is where infill rates of a small model sit: 0 of 100 gives (0, 0.037), 4 of 100 (0.016, 0.098),
    50 of 100 (0.404, 0.596).
    """
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"k={k!r} and n={n!r} must be whole counts")
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"k={k}, n={n}: need n >= 1 and 0 <= k <= n")
    p, z2 = k / n, z * z
    den = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def bootstrap_ratio_interval(
    num: Iterable[float], den: Iterable[float], draws: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of sum(num) / sum(den) over items resampled with replacement.

    One item per paragraph, generation or gap, so the interval reflects how the figure would move on
    another draw of items of the same kind: a mean of per-item values is num = value, den = 1; a
    boundary F1 summed over paragraphs is num = 2 tp, den = n_pred + n_ref; a valid-word rate over
    generated texts is num = valid words, den = words. Seeded, so the same items give the same interval.
    A resample whose denominators sum to 0 is skipped.
    """
    x, d = np.asarray(list(num), dtype=float), np.asarray(list(den), dtype=float)
    if x.shape != d.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"num and den must be equally long, non-empty sequences (got {x.shape} and {d.shape})")
    if draws < 1 or not 0 < level < 1:
        raise ValueError(f"draws={draws} must be >= 1 and level={level} in (0, 1)")
    idx = np.random.default_rng(seed).integers(0, len(x), size=(draws, len(x)))
    tot = d[idx].sum(1)
    ok = tot != 0
    if not ok.any():
        raise ValueError("every resample has a zero denominator: the ratio is undefined")
    stats = x[idx].sum(1)[ok] / tot[ok]
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_interval(values: Iterable[float]) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of per-item values (paragraphs, gaps)."""
    values = list(values)
    return bootstrap_ratio_interval(values, [1.0] * len(values))


def rate_intervals(exact: Sequence[float], valid: Sequence[float], binary_valid: bool) -> dict[str, list[float]]:
    """95 % intervals of an infill evaluation's per-gap scores (at least one gap): Wilson's for the exact
    rate and, when `binary_valid` (one 0/1 per gap), for the valid rate; else (a multi-word fill's fraction
    of valid words) a bootstrap of the mean over the gaps. -> {"exact_ci95", "valid_word_rate_ci95"}."""
    n = len(exact)
    valid_ci = wilson_interval(sum(bool(v) for v in valid), n) if binary_valid else mean_interval(valid)
    return {"exact_ci95": list(wilson_interval(sum(bool(e) for e in exact), n)), "valid_word_rate_ci95": list(valid_ci)}
