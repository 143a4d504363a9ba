"""Parsing and checking of the values the UI and the API receive (no gradio).

Every failure raises `zonkey.validation.ZonkeyInputError` (a ValueError) whose message says what
was wrong and what is allowed; the callbacks turn it into `gr.Error`. The model validates again;
checking here first gives the same clear message before any work is queued.
"""

from __future__ import annotations

import math
import unicodedata

from app.settings import DEFAULT_REFINE, DEFAULT_TEMPERATURE, LIMITS
from zonkey.validation import (
    ZonkeyInputError,
    check_length,
    check_level,
    check_refine,
    check_seed,
    check_spans,
    check_steps,
    check_temperature,
    check_text,
    find_gap_markers,
)

_ALLOWED_CONTROLS = {"\n", "\t", "\r"}


# --- numbers ------------------------------------------------------------------------------------


def parse_int(value, name: str, lo: int, hi: int) -> int:
    """An int in [lo, hi] from an int, an integral float (gradio numbers) or a numeric string."""
    if isinstance(value, bool) or value is None:
        raise ZonkeyInputError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}.")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if any(c in value for c in ".eE") else int(value.strip())
        except ValueError:
            raise ZonkeyInputError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}.") from None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ZonkeyInputError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}.")
        if abs(value) > 2**53:  # a float this large has lost its exact value on the way here
            raise ZonkeyInputError(f"{name}={value:g} is out of range; use {lo}..{hi}.")
        value = int(value)
    if not isinstance(value, int):
        raise ZonkeyInputError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}.")
    if not lo <= value <= hi:
        raise ZonkeyInputError(f"{name}={value} is out of range; use {lo}..{hi}.")
    return value


def parse_steps(value) -> int:
    return check_steps(parse_int(value, "steps", 1, LIMITS["max_steps"]))


def _parse_number(value, default: float, check, name: str, allowed: str) -> float:
    """A number or numeric string passed through `check`; None or "" is `default`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return check(default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ZonkeyInputError(f"{name} must be a number in {allowed}, got {value!r}.") from None
    return check(value)


def parse_temperature(value) -> float:
    """A number (or numeric string) in (0, max_temperature]; None or "" is the default (1)."""
    allowed = f"(0, {LIMITS['max_temperature']:g}]"
    return _parse_number(value, DEFAULT_TEMPERATURE, check_temperature, "temperature", allowed)


def parse_refine(value) -> float:
    """A number (or numeric string) in [0, max_refine]; None or "" is the library's default."""
    return _parse_number(value, DEFAULT_REFINE, check_refine, "refine", f"[0, {LIMITS['max_refine']:g}]")


def parse_seed(value) -> int:
    return check_seed(parse_int(value, "seed", 0, LIMITS["max_seed"]))


def parse_threshold(value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ZonkeyInputError(f"threshold must be a number in (0, 1), got {value!r}.") from None
    if not 0.0 < x < 1.0:
        raise ZonkeyInputError(f"threshold={x} is out of range; use a number strictly between 0 and 1.")
    return x


def parse_level(value, num_levels: int = 2):
    """'auto' (or None / '') or a level index given as int, integral float or digit string."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return check_level(value, num_levels)


def parse_length(mode, chars=None):
    """The fill length: 'auto', 'keep', or a number of characters.

    `mode` is 'auto' | 'keep' | 'chars' (then `chars` holds the number) or, through the API, the
    number itself (int or digit string)."""
    if isinstance(mode, str):
        m = mode.strip().lower()
        if m in ("auto", "keep", ""):
            return m or "auto"
        if m in ("chars", "n", "number"):
            return check_length(parse_int(chars, "length", 1, LIMITS["max_fill_chars"]))
        if m.isdigit():
            return check_length(parse_int(m, "length", 1, LIMITS["max_fill_chars"]))
        raise ZonkeyInputError(f"length={mode!r} is invalid; use 'auto', 'keep' or a number of characters.")
    return check_length(parse_int(mode, "length", 1, LIMITS["max_fill_chars"]))


def parse_num_segments(value):
    """None / 0 / 'auto' -> None (the model decides), else an int in 1..max_segments."""
    if value is None or value == 0 or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    return parse_int(value, "num_segments", 1, LIMITS["max_segments"])


# --- text ---------------------------------------------------------------------------------------


def check_input_text(text) -> str:
    """The zonkey text checks, plus characters that cannot be shown or encoded."""
    text = check_text(text)
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise ZonkeyInputError(
                f"text has a lone surrogate U+{ord(ch):04X} at position {i}, which is not valid Unicode; remove it."
            )
        if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS:
            raise ZonkeyInputError(
                f"text has the control character U+{ord(ch):04X} at position {i}; remove it "
                "(newlines and tabs are fine)."
            )
    return text


# --- spans --------------------------------------------------------------------------------------


def utf16_to_index(text: str, offset: int) -> int:
    """Python string index of a JavaScript (UTF-16 code unit) offset into `text`.

    Browsers count characters outside the BMP (most emoji) as two units; Python counts one. An
    offset that falls inside such a pair is rounded up to the end of the character."""
    if offset <= 0:
        return 0
    units = 0
    for i, ch in enumerate(text):
        if units >= offset:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(text)


def selection_to_span(text: str, index) -> tuple[int, int]:
    """A browser selection `[start, end]` (UTF-16 offsets) as a Python half-open span."""
    if not isinstance(index, (list, tuple)) or len(index) != 2:
        raise ZonkeyInputError("Select some text in the box first, then press Mask.")
    s, e = (utf16_to_index(text, int(v)) for v in index)
    s, e = min(s, e), max(s, e)
    if s == e:
        raise ZonkeyInputError("The selection is empty: select the characters to mask, then press Mask.")
    return s, e


def parse_spans(spans) -> list[tuple[int, int]]:
    """API spans: a list of [start, end] pairs (Python string indices, half-open)."""
    if spans is None:
        return []
    if not isinstance(spans, (list, tuple)):
        raise ZonkeyInputError("spans must be a list of [start, end] pairs of character offsets.")
    out = []
    for sp in spans:
        if not isinstance(sp, (list, tuple)) or len(sp) != 2:
            raise ZonkeyInputError(f"span {sp!r} must be a [start, end] pair of character offsets.")
        s, e = (parse_int(v, "span offset", -(2**31), 2**31) for v in sp)
        out.append((s, e))
    return out


def collect_spans(text: str, masked) -> list[tuple[int, int]]:
    """The spans to fill: the masked spans plus every gap marker (`___`, `[...]`) in the text,
    sorted and checked (in range, non-empty, not overlapping, some context left)."""
    masked = [tuple(sp) for sp in (masked or [])]
    _, markers = find_gap_markers(text)
    spans = sorted(set(masked) | set(markers))
    if not spans:
        raise ZonkeyInputError(
            "Nothing to fill: select text and press Mask, or type a gap marker such as ___ or [...]."
        )
    return check_spans(spans, text)


def prune_spans(text: str, spans: list[dict]) -> list[dict]:
    """Masked spans that still hold the characters they were made on (the text may have been edited)."""
    return [sp for sp in spans if sp["end"] <= len(text) and text[sp["start"] : sp["end"]] == sp["chars"]]
