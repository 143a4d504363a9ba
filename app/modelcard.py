"""Reading a checkpoint directory's model card, metrics and training log (no gradio).

Every reader degrades gracefully: a missing or unreadable file gives None / an empty list and a
note saying why, never an exception, so the Model tab always renders.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from zonkey.checkpoint import LOG_NAME, stage_logs

_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)
HIGHER_IS_BETTER = ("acc", "f1", "exact", "valid", "precision", "recall", "distinct")
LOWER_IS_BETTER = ("cer", "bpc", "bits", "loss", "error")


@dataclass
class ModelCard:
    """What the Model tab shows about one checkpoint directory."""

    readme: str | None = None  # the README body, front matter removed
    metrics: dict | None = None  # metrics.json as written by training/evaluate.py
    log: list[dict] = field(default_factory=list)  # train_log.jsonl records
    notes: list[str] = field(default_factory=list)  # what was missing or unreadable


def strip_front_matter(text: str) -> str:
    return _FRONT_MATTER.sub("", text, count=1)


def read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (OSError, ValueError) as e:
        return None, f"{path.name} is unreadable ({type(e).__name__})"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, None


def read_jsonl(path: Path, max_records: int = 200_000) -> tuple[list[dict], str | None]:
    """Records of a JSON-lines file; malformed lines (e.g. a half-written last line) are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], f"no {path.name}"
    except OSError as e:
        return [], f"{path.name} is unreadable ({type(e).__name__})"
    out, bad = [], 0
    for line in lines[:max_records]:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out, (f"{bad} malformed line(s) in {path.name} skipped" if bad else None)


def load_card(model_dir: Path | None) -> ModelCard:
    card = ModelCard()
    if model_dir is None:
        card.notes.append("no checkpoint directory")
        return card
    model_dir = Path(model_dir)
    try:
        card.readme = strip_front_matter((model_dir / "README.md").read_text(encoding="utf-8"))
    except FileNotFoundError:
        card.notes.append("no README.md (model card)")
    except OSError as e:
        card.notes.append(f"README.md is unreadable ({type(e).__name__})")
    card.metrics, note = read_json(model_dir / "metrics.json")
    if note:
        card.notes.append(note)
    card.log, note = read_stage_logs(model_dir)
    if note:
        card.notes.append(note)
    return card


def read_stage_logs(model_dir: Path) -> tuple[list[dict], str | None]:
    """The training log of a checkpoint as one curve: the logs of earlier training stages
    (train_log_stage1.jsonl, ...) first, then train_log.jsonl, each stage's steps shifted to start
    where the previous stage ended; with several stages every record carries its `stage` (1, 2, ...)."""
    paths = [p for p in stage_logs(model_dir) if p.name != LOG_NAME] + [model_dir / LOG_NAME]
    several = len(paths) > 1
    records, offset, notes = [], 0, []
    for i, path in enumerate(paths, 1):
        recs, note = read_jsonl(path)
        notes += [note] if note else []
        last = 0
        for r in recs:
            if is_number(r.get("step")):
                last = max(last, r["step"])
                r = {**r, "step": r["step"] + offset}
            records.append({**r, "stage": i} if several else r)
        offset += last
    return records, "; ".join(notes) or None


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a/b": 1}; lists of numbers are kept as they are."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def metrics_rows(columns: dict[str, dict | None]) -> list[list]:
    """Side-by-side table: one row per numeric metric, one column per model (missing -> '')."""
    flat = {name: flatten(m) if m else {} for name, m in columns.items()}
    keys: list[str] = []
    for f in flat.values():
        keys += [k for k, v in f.items() if is_number(v) and k not in keys]
    rows = []
    for k in keys:
        row = [k]
        for f in flat.values():
            v = f.get(k)
            row.append(round(float(v), 4) if is_number(v) else "")
        rows.append(row)
    return rows


def compare_metrics(a: dict, b: dict) -> int:
    """+1 if `a` is better than `b` on most shared metrics, -1 if worse, 0 if tied or not comparable.

    Direction comes from the metric name (accuracy, f1, exact... higher; cer, bpc, loss... lower)."""
    fa, fb = flatten(a), flatten(b)
    score = 0
    for k in set(fa) & set(fb):
        va, vb = fa[k], fb[k]
        if not (is_number(va) and is_number(vb)) or va == vb:
            continue
        name = k.lower()
        if any(w in name for w in LOWER_IS_BETTER):
            score += 1 if va < vb else -1
        elif any(w in name for w in HIGHER_IS_BETTER):
            score += 1 if va > vb else -1
    return (score > 0) - (score < 0)


def numeric_keys(records: list[dict]) -> list[str]:
    """Numeric fields of log records, excluding bookkeeping ones, in first-seen order."""
    skip = {"step", "epoch", "time", "elapsed", "wall", "timestamp", "world_size", "params"}
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in keys and k not in skip and is_number(v):
                keys.append(k)
    return keys
