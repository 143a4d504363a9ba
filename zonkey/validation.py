"""Input validation for every public call. Each failure is a `ZonkeyInputError` (a ValueError)
whose message says what was wrong and what is allowed. Nothing here mutates its inputs."""

from __future__ import annotations

import re

MAX_TEXT_CHARS = 4000  # longest text accepted by segment / reconstruct / infill
MAX_STEPS = 200  # most denoising steps per call
MAX_SPANS = 8  # most spans per infill call
MAX_SEGMENTS = 8  # most top-level segments per generate call
MAX_FILL_CHARS = 200  # most characters requested for one fill with an int `length`
MAX_TEMPERATURE = 2.0  # largest sampling temperature (noise scale of the sampler's re-noising)
MAX_REFINE = 0.9  # largest fraction of generated word slots re-infilled (`generate(refine=...)`)
DEFAULT_REFINE = 0.3  # the fraction re-infilled by default (`zonkey.refine`)
GAP_MARKERS = ("___", "[...]")
_GAP_RE = re.compile(r"_{3,}|\[\.\.\.\]")


class ZonkeyInputError(ValueError):
    """Invalid input to a public Zonkey call; the message says how to fix it."""


def check_text(text, *, name: str = "text") -> str:
    if not isinstance(text, str):
        raise ZonkeyInputError(f"{name} must be a str, got {type(text).__name__}.")
    if not text.strip():
        raise ZonkeyInputError(f"{name} is empty or only whitespace; give at least one visible character.")
    if len(text) > MAX_TEXT_CHARS:
        raise ZonkeyInputError(
            f"{name} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}. Shorten it or split it."
        )
    return text


def check_temperature(temperature) -> float:
    """A sampling temperature: a real number in (0, MAX_TEMPERATURE] (1 = the method's sampler).
    0 is refused: the first step (t = 1) would then decode the zero vector, the same for every seed."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ZonkeyInputError(f"temperature must be a number, got {temperature!r}.")
    t = float(temperature)
    if not 0.0 < t <= MAX_TEMPERATURE:  # also refuses nan
        raise ZonkeyInputError(
            f"temperature={temperature} is out of range; use a number above 0 and at most {MAX_TEMPERATURE:g} "
            "(1 = the default sampler; lower = more conservative, less varied text)."
        )
    return t


def check_refine(refine) -> float:
    """The fraction of generated word slots to re-infill: a real number in [0, MAX_REFINE] (0 = the
    method's sampler, no second pass)."""
    if isinstance(refine, bool) or not isinstance(refine, (int, float)):
        raise ZonkeyInputError(f"refine must be a number, got {refine!r}.")
    r = float(refine)
    if not 0.0 <= r <= MAX_REFINE:  # also refuses nan
        raise ZonkeyInputError(
            f"refine={refine} is out of range; use a fraction from 0 (no second pass) to {MAX_REFINE:g} "
            "of the generated words to re-infill."
        )
    return r


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ZonkeyInputError(f"steps must be an int, got {steps!r}.")
    if not 1 <= steps <= MAX_STEPS:
        raise ZonkeyInputError(f"steps={steps} is out of range; use 1..{MAX_STEPS}.")
    return steps


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ZonkeyInputError(f"seed must be an int, got {seed!r}.")
    if not 0 <= seed < 2**63:
        raise ZonkeyInputError(f"seed={seed} is out of range; use 0..2**63-1.")
    return seed


def check_level(level, num_levels: int):
    if level == "auto" or level is None:
        return "auto"
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < num_levels:
        raise ZonkeyInputError(f"level={level!r} is invalid; use 'auto' or an int in 0..{num_levels - 1}.")
    return level


def check_length(length):
    if length in ("auto", "keep"):
        return length
    if isinstance(length, bool) or not isinstance(length, int):
        raise ZonkeyInputError(f"length={length!r} is invalid; use 'auto', 'keep' or an int of characters.")
    if not 1 <= length <= MAX_FILL_CHARS:
        raise ZonkeyInputError(f"length={length} is out of range; use 1..{MAX_FILL_CHARS} characters.")
    return length


def check_spans(spans, text: str) -> list[tuple[int, int]]:
    """Spans are half-open Python string indices; returns them sorted, as a new list."""
    text_len = len(text)
    if not isinstance(spans, (list, tuple)) or len(spans) == 0:
        raise ZonkeyInputError("spans must be a non-empty list of (start, end) pairs.")
    if len(spans) > MAX_SPANS:
        raise ZonkeyInputError(f"{len(spans)} spans given; at most {MAX_SPANS} per call.")
    out = []
    for sp in spans:
        if not isinstance(sp, (list, tuple)) or len(sp) != 2:
            raise ZonkeyInputError(f"span {sp!r} must be a (start, end) pair.")
        s, e = sp
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (s, e)):
            raise ZonkeyInputError(f"span {sp!r} must hold two ints.")
        if s > e:
            raise ZonkeyInputError(f"span ({s}, {e}) is reversed; start must be <= end.")
        if s == e:
            raise ZonkeyInputError(f"span ({s}, {e}) is empty; mask at least one character.")
        if s < 0 or e > text_len:
            raise ZonkeyInputError(f"span ({s}, {e}) is out of range for a text of {text_len} characters.")
        out.append((s, e))
    out.sort()
    for (s0, e0), (s1, e1) in zip(out, out[1:]):
        if s1 < e0:
            raise ZonkeyInputError(f"spans ({s0}, {e0}) and ({s1}, {e1}) overlap; merge them or separate them.")
    check_context(text, out)
    return out


def check_context(text: str, spans: list[tuple[int, int]]) -> None:
    """The unmasked context must hold at least one visible character."""
    keep, prev = [], 0
    for s, e in spans:
        keep.append(text[prev:s])
        prev = e
    keep.append(text[prev:])
    if not "".join(keep).strip():
        raise ZonkeyInputError("the spans cover the whole text; leave some context unmasked.")


def find_gap_markers(text: str) -> tuple[str, list[tuple[int, int]]]:
    """Spans of gap markers (`___` or longer runs of underscores, `[...]`) in `text`.

    Returns (text, spans): the text unchanged and the markers' spans, which infill replaces."""
    return text, [(m.start(), m.end()) for m in _GAP_RE.finditer(text)]
