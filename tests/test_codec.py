"""The byte codec: exact round trips, and `best_utf8`, the exact arg-max over well-formed UTF-8."""

import itertools

import numpy as np
import pytest

from zonkey import codec

# a small alphabet with every kind of byte: ASCII, each continuation range, each special lead,
# and bytes that are never valid (C0, FF)
ALPHABET = [0x41, 0x80, 0x9F, 0xA0, 0xC3, 0xE0, 0xE1, 0xED, 0xF0, 0xF1, 0xF4, 0x8F, 0x90, 0xC0, 0xFF]


def _is_utf8(ids) -> bool:
    try:
        bytes(ids).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def _log_softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def test_codec_round_trips_every_string():
    for s in ["", "plain", "Zürich", "🦓🦓", "e\u0301", "שלום", "\x00\x01\x7f", "\ud7ff\U0010ffff"]:
        assert codec.decode(codec.encode(s)) == s
    assert len({tuple(codec.encode(ch)) for ch in ["\x00", "Ā", "Ȁ", "ɐ"]}) == 4  # no aliasing (P15)


def test_best_utf8_is_the_exact_argmax_over_well_formed_sequences():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n = int(rng.integers(1, 5))
        scores = np.full((n, 256), -1e9)
        scores[:, ALPHABET] = rng.normal(size=(n, len(ALPHABET))) * 3
        lp = _log_softmax(scores)
        got = codec.best_utf8(scores)
        assert len(got) == n and _is_utf8(got)
        best = max(
            (c for c in itertools.product(ALPHABET, repeat=n) if _is_utf8(c)),
            key=lambda c: sum(lp[i, b] for i, b in enumerate(c)),
        )
        assert sum(lp[i, b] for i, b in enumerate(got)) == pytest.approx(sum(lp[i, b] for i, b in enumerate(best)))


def test_best_utf8_keeps_a_valid_argmax_and_repairs_an_invalid_one():
    text = "Córdoba, ἄκρον 😀 – 7\xa0km"
    ids = codec.encode(text)
    scores = np.zeros((len(ids), 256))
    scores[np.arange(len(ids)), ids] = 5.0
    assert codec.decode_scores(scores) == text
    # 'ā' is C4 81; make its lead byte lose narrowly to an orphan continuation byte (invalid)
    ids = codec.encode("al-Raḥmān")
    scores = np.zeros((len(ids), 256))
    scores[np.arange(len(ids)), ids] = 5.0
    lead = ids.index(0xC4)
    scores[lead, 0xA8] = 5.1
    assert codec.decode(np.argmax(scores, -1)) != "al-Raḥmān"
    assert codec.decode_scores(scores) == "al-Raḥmān"


def test_decode_scores_is_always_valid_text():
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 300):
        ids = codec.best_utf8(rng.normal(size=(n, 256)) * 4)
        assert len(ids) == n and _is_utf8(ids)
    assert codec.decode_scores(np.zeros((0, 256))) == ""
