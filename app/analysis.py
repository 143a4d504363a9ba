"""Segment statistics and boundary metrics for the Tokenization tab and `/segment` (no gradio).

Boundary precision / recall / F1 come from `training.metrics`, the single definition that
`training/evaluate.py` and the model card use (DESIGN §7), so the app and the card can never
disagree. That module is pure numpy and the Space ships the whole repository, so the app imports
it directly rather than keeping a copy.

References: level 0 is scored against word starts (a non-space character at the start or after
whitespace), level 1 against sentence starts; both strict and with a ±1-character tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence

from training.metrics import boundary_prf, chars_per_segment, sentence_starts, word_starts

REFERENCES = {0: ("word starts", word_starts), 1: ("sentence starts", sentence_starts)}
TOLERANCES = (0, 1)


def segment_counts(text: str, starts_by_level: Sequence[Sequence[int]]) -> list[dict]:
    """Per level: number of segments and mean characters per segment."""
    n = len(text)
    return [
        {
            "level": lv,
            "segments": len({s for s in starts if 0 <= s < n} | {0}) if n else 0,
            "chars_per_segment": round(chars_per_segment(starts, n), 3),
        }
        for lv, starts in enumerate(starts_by_level)
    ]


def boundary_scores(text: str, starts_by_level: Sequence[Sequence[int]], source: str = "zonkey") -> list[dict]:
    """Boundary P/R/F1 of each level's starts against its reference, strict and ±1."""
    rows = []
    for lv, starts in enumerate(starts_by_level):
        if lv not in REFERENCES:
            continue
        ref_name, ref_fn = REFERENCES[lv]
        ref = ref_fn(text)
        for tol in TOLERANCES:
            m = boundary_prf(starts, ref, tolerance=tol)
            rows.append(
                {
                    "source": source,
                    "level": lv,
                    "reference": ref_name,
                    "tolerance": tol,
                    "precision": round(float(m["precision"]), 4),
                    "recall": round(float(m["recall"]), 4),
                    "f1": round(float(m["f1"]), 4),
                    "matched": int(m["tp"]),
                    "predicted": int(m["n_pred"]),
                    "reference_count": int(m["n_ref"]),
                }
            )
    return rows


def score_table(rows: list[dict]) -> list[list]:
    """`boundary_scores` rows as table rows for the UI."""
    return [
        [
            r["source"],
            f"level {r['level']} vs {r['reference']}",
            "±1" if r["tolerance"] else "strict",
            r["precision"],
            r["recall"],
            r["f1"],
            f"{r['matched']}/{r['predicted']} of {r['reference_count']}",
        ]
        for r in rows
    ]


SCORE_HEADERS = ["source", "boundaries", "match", "precision", "recall", "F1", "matched/predicted of reference"]
