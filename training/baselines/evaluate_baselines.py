"""Evaluation of the baselines of DESIGN §7 with the definitions of `training/evaluate.py`, fixed seeds throughout:

  python -m training.baselines.evaluate_baselines --ar assets/models/baseline-ar-small \\
      --zonkey-metrics assets/models/zonkey-small/metrics.json --out assets/models/baseline-ar-small/metrics.json

On the held-out split (the same paragraphs and sentences as `training/evaluate.py` with the same seed):
- segmentation against word starts, P/R/F1 strict and +-1 (`boundary_prf` counts summed over paragraphs, as in
  `eval_boundaries`), plus characters per segment, for: BLT entropy patching with a global threshold and with the
  monotonic rule (next-byte entropy of the AR model; each threshold bisected on these same held-out paragraphs so
  that characters per segment match Zonkey's `l0_chars_per_segment` from --zonkey-metrics, or 5.5 without it; the
  calibration sees no boundary labels), fixed-length patches at that rate (their size bisected the same way,
  since every paragraph ends with a partial patch), and whitespace splitting (the reference itself, hence the
  ceiling);
- AR bits per byte on held-out text (`ar_bpc_heldout`: the first 20 paragraphs, as `training/evaluate.py` reports
  it; `ar_bpc_heldout_all`: all paragraphs; `ar_bits_per_unicode_char_heldout`: per character);
- infill of the same masked single words (sentences) and three-word gaps (the first half of them) as
  `training/evaluate.py` (its `mask_words`, the same rng sequence): (a) `ar_left_`: sampling from the left context
  until the gap is complete (one word: up to the first ASCII byte that is not a letter or digit; k words: up to the
  whitespace that follows the k-th whitespace-separated token), (b) `ar_rescore_`: K candidates sampled that way
  (K=8; the first of them is the `ar_left_` fill), each scored by the AR log-likelihood of the whole text with the
  right context appended, the best kept. Keys mirror `training/evaluate.py` (`infill_1w_exact`, ...) with the
  prefix, including the 95 % intervals (`*_ci95`); valid-word and CER follow its rules exactly. Latency is
  left to `training/bench.py`;
- unconditional generation: `--generate` samples of `--gen-chars` characters (seeds seed..seed+n-1); valid-word
  rate and distinct-2 of the joined text, as `eval_generation`.

Sample counts (60 paragraphs, 100 + 50 infill sentences, 20 x 150 generated characters) keep a run within a few
minutes on 2 CPU cores. Writes metrics.json and prints tables with Zonkey's figures beside when they are given.
It does not evaluate Zonkey itself (`training/evaluate.py` does).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.baselines.ar import CharLM
from training.baselines.patchers import (
    calibrate_fixed_size,
    calibrate_threshold,
    chars_per_segment_total,
    entropy_patch_starts,
    fixed_patch_starts,
    monotonic_patch_starts,
    whitespace_starts,
)
from training.data import heldout_sentences, local_split, training_vocabulary
from training.evaluate import mask_words, paragraphs
from training.metrics import boundary_prf, cer, distinct_n, fill_validity, rate_intervals, valid_word_rate, word_starts

DEFAULT_TARGET = 5.5  # chars per segment when no Zonkey metrics are given
SEGMENTERS = ("entropy_global", "entropy_monotonic", "fixed", "whitespace")
_WHITESPACE = b" \t\n\r"


# --- segmentation -------------------------------------------------------------------------------------------------


def boundary_metrics(name: str, starts: list[list[int]], texts: list[str]) -> dict[str, float]:
    """P/R/F1 against word starts (counts summed over texts, as `training.evaluate.eval_boundaries`) and chars/seg."""
    out: dict[str, float] = {}
    for tol, tag in ((0, "strict"), (1, "tol1")):
        tp = npred = nref = 0
        for s, t in zip(starts, texts):
            r = boundary_prf(s, word_starts(t), tolerance=tol)
            tp, npred, nref = tp + r["tp"], npred + r["n_pred"], nref + r["n_ref"]
        pr, rc = tp / max(npred, 1), tp / max(nref, 1)
        out[f"{name}_word_{tag}_precision"] = pr
        out[f"{name}_word_{tag}_recall"] = rc
        out[f"{name}_word_{tag}_f1"] = 2 * pr * rc / max(pr + rc, 1e-12)
    out[f"{name}_chars_per_segment"] = chars_per_segment_total(starts, texts)
    return out


def eval_segmentation(entropies: list[np.ndarray], paras: list[str], target: float) -> dict[str, Any]:
    """All four segmenters at `target` characters per segment (whitespace has its own rate)."""
    out: dict[str, Any] = {"target_chars_per_segment": target}
    for name, fn in (("entropy_global", entropy_patch_starts), ("entropy_monotonic", monotonic_patch_starts)):
        th = calibrate_threshold(fn, entropies, paras, target)
        out[f"{name}_threshold"] = th
        out.update(boundary_metrics(name, [fn(h, th, text=p) for h, p in zip(entropies, paras)], paras))
    size = calibrate_fixed_size(paras, target)
    out["fixed_patch_size"] = size
    out.update(boundary_metrics("fixed", [fixed_patch_starts(len(p), size) for p in paras], paras))
    out.update(boundary_metrics("whitespace", [whitespace_starts(p) for p in paras], paras))
    return out


# --- infill -------------------------------------------------------------------------------------------------------


def stop_rule(k_words: int) -> tuple[Callable[[bytes], bool], Callable[[bytes], str]]:
    """(stop(row) -> bool, fill(row) -> str) of left-context sampling for a gap of k_words words."""

    def ended(row: bytes) -> bool:
        last = row[-1]
        if k_words == 1:
            return last < 0x80 and not chr(last).isalnum()
        return last in _WHITESPACE and len(row[:-1].split()) >= k_words

    def fill(row: bytes) -> str:
        body = row[:-1] if row and ended(row) else row
        return body.decode("utf-8", errors="replace").strip()

    return ended, fill


def eval_ar_infill(
    lm: CharLM, sentences: list[str], vocab: set[str], k_words: int, candidates: int, seed: int
) -> dict[str, Any]:
    """Left-context sampling (`ar_left_`) and K-candidate rescoring with the right context (`ar_rescore_`)."""
    stop, fill_of = stop_rule(k_words)
    max_new = 24 if k_words == 1 else 20 * k_words
    rng = random.Random(seed)
    scores: dict[str, dict[str, list[float]]] = {m: {"exact": [], "valid": [], "cer": []} for m in ("left", "rescore")}
    for i, s in enumerate(tqdm(sentences, desc=f"ar infill {k_words}w", leave=False)):
        span = mask_words(s, rng, k_words)  # the same spans as training/evaluate.py
        if span is None:
            continue
        a, b = span
        left, right, ref = s[:a], s[b:], s[a:b]
        gen = torch.Generator().manual_seed(seed + i)
        rows = lm.sample_bytes(left.encode("utf-8"), candidates, max_new, gen, stop=stop)
        fills = [fill_of(r) for r in rows]
        room = lm.config.context - 1 - max(len(f.encode("utf-8")) for f in fills)
        right_fit = right.encode("utf-8")[:room].decode("utf-8", errors="ignore")
        ll = lm.continuation_log2prob(left, [f + right_fit for f in fills])  # (K,)
        for method, fill in (("left", fills[0]), ("rescore", fills[int(np.argmax(ll))])):
            sc = scores[method]
            sc["exact"].append(float(fill == ref))
            sc["valid"].append(fill_validity(fill, vocab, k_words))
            sc["cer"].append(cer(fill, ref))
    tag = "infill_1w" if k_words == 1 else f"infill_{k_words}w"
    out: dict[str, Any] = {}
    for method, sc in scores.items():
        n = len(sc["exact"])
        out[f"ar_{method}_{tag}_exact"] = sum(sc["exact"]) / max(n, 1)
        out[f"ar_{method}_{tag}_valid_word_rate"] = sum(sc["valid"]) / max(n, 1)
        out[f"ar_{method}_{tag}_cer"] = sum(sc["cer"]) / max(n, 1)
        out[f"ar_{method}_{tag}_n"] = n
        if n:  # 95 % intervals, as training/evaluate.py gives them
            ci = rate_intervals(sc["exact"], sc["valid"], binary_valid=k_words == 1)
            out.update({f"ar_{method}_{tag}_{k}": v for k, v in ci.items()})
    out[f"ar_rescore_{tag}_candidates"] = candidates
    return out


# --- generation ---------------------------------------------------------------------------------------------------


def eval_ar_generation(lm: CharLM, vocab: set[str], n: int, n_chars: int, seed: int) -> dict[str, Any]:
    texts = [lm.sample(n_chars, seed=seed + i) for i in tqdm(range(n), desc="ar generate", leave=False)]
    joined = " ".join(texts)
    return {
        "ar_gen_valid_word_rate": valid_word_rate(joined, vocab),
        "ar_gen_distinct_2": distinct_n(joined, 2),
        "ar_gen_mean_chars": sum(len(t) for t in texts) / max(n, 1),
        "ar_gen_samples": texts[:5],
    }


# --- driver -------------------------------------------------------------------------------------------------------


def load_zonkey_metrics(path: str | None) -> dict[str, Any]:
    if path and Path(path).exists():
        return json.loads(Path(path).read_text())
    return {}


def evaluate_baselines(
    ar_dir: str,
    zonkey_metrics: str | None = None,
    n_paragraphs: int = 60,
    n_sentences: int = 100,
    n_generate: int = 20,
    gen_chars: int = 150,
    candidates: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    lm = CharLM.from_pretrained(ar_dir)
    zk = load_zonkey_metrics(zonkey_metrics)
    target = float(zk.get("l0_chars_per_segment", DEFAULT_TARGET))
    texts = [x for _, x in local_split("heldout")]
    paras = paragraphs(texts, n_paragraphs)
    sentences = heldout_sentences(texts, n_sentences, seed=seed)
    vocab = training_vocabulary(x for _, x in local_split("train"))
    t0 = time.time()
    metrics: dict[str, Any] = {
        "ar_model": str(ar_dir),
        "ar_params": lm.num_parameters(),
        "data": "local heldout split (5% of titles by sha1 bucket)",
        "zonkey_metrics": str(zonkey_metrics) if zk else None,
        "target_source": f"l0_chars_per_segment of {zonkey_metrics}" if "l0_chars_per_segment" in zk else "default",
        "n_paragraphs": len(paras),
        "n_sentences": len(sentences),
        "seed": seed,
    }
    scored = lm.score_bytes(paras)  # per paragraph: (log2 p (n_bytes,), entropy (n_bytes,))
    n_bytes = [len(lp) for lp, _ in scored]
    bits = [-float(lp.sum()) for lp, _ in scored]
    metrics["ar_bpc_heldout"] = sum(bits[:20]) / max(1, sum(n_bytes[:20]))
    metrics["ar_bpc_heldout_all"] = sum(bits) / max(1, sum(n_bytes))
    metrics["ar_bits_per_unicode_char_heldout"] = sum(bits) / max(1, sum(len(p) for p in paras))
    metrics.update(eval_segmentation([h for _, h in scored], paras, target))
    metrics.update(eval_ar_infill(lm, sentences, vocab, 1, candidates, seed))
    metrics.update(eval_ar_infill(lm, sentences[: n_sentences // 2], vocab, 3, candidates, seed))
    metrics.update(eval_ar_generation(lm, vocab, n_generate, gen_chars, seed))
    metrics["eval_seconds"] = time.time() - t0
    return metrics


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[r[0]] + [_fmt(v) for v in r[1:]] for r in rows]
    widths = [max(len(str(row[c])) for row in cells) for c in range(len(header))]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def print_tables(m: dict[str, Any], zk: dict[str, Any]) -> None:
    seg_cols = ["chars_per_segment"] + [f"word_{t}_{k}" for t in ("strict", "tol1") for k in ("precision", "recall")]
    seg_cols += ["word_strict_f1", "word_tol1_f1"]
    header = ["segmentation", "chars/seg", "P", "R", "P+-1", "R+-1", "F1", "F1+-1"]
    rows = []
    if "l0_chars_per_segment" in zk:
        rows.append(["zonkey level 0", *(zk.get(f"l0_{c}") for c in seg_cols)])
    rows += [[name.replace("_", " "), *(m.get(f"{name}_{c}") for c in seg_cols)] for name in SEGMENTERS]
    print(_table(header, rows))
    print()
    header = ["infill", "1w exact", "1w valid", "1w CER", "3w exact", "3w valid", "3w CER"]
    keys = [f"infill_{g}_{k}" for g in ("1w", "3w") for k in ("exact", "valid_word_rate", "cer")]
    rows = []
    if "infill_1w_exact" in zk:
        rows.append(["zonkey", *(zk.get(k) for k in keys)])
    rows += [[f"ar {meth}", *(m.get(f"ar_{meth}_{k}") for k in keys)] for meth in ("left", "rescore")]
    print(_table(header, rows))
    print()
    header = ["generation", "valid words", "distinct-2", "bits/byte under AR"]
    rows = []
    if "gen_valid_word_rate" in zk:
        rows.append(["zonkey", zk.get("gen_valid_word_rate"), zk.get("gen_distinct_2"), zk.get("gen_bpc_under_ar")])
    rows.append(["ar", m["ar_gen_valid_word_rate"], m["ar_gen_distinct_2"], None])
    rows.append(["held-out text", None, None, m["ar_bpc_heldout"]])
    print(_table(header, rows))
    for s in m.get("ar_gen_samples", []):
        print("ar sample:", repr(s))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="Evaluate the AR and segmentation baselines (DESIGN §7).")
    ap.add_argument("--ar", required=True, help="AR baseline checkpoint directory")
    ap.add_argument("--zonkey-metrics", default=None, help="Zonkey metrics.json (target chars per segment, table)")
    ap.add_argument("--out", default=None, help="metrics.json path (default: <ar>/metrics.json)")
    ap.add_argument("--paragraphs", type=int, default=60)
    ap.add_argument("--sentences", type=int, default=100)
    ap.add_argument("--generate", type=int, default=20)
    ap.add_argument("--gen-chars", type=int, default=150)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    m = evaluate_baselines(
        a.ar, a.zonkey_metrics, a.paragraphs, a.sentences, a.generate, a.gen_chars, a.candidates, a.seed
    )
    out = Path(a.out) if a.out else Path(a.ar) / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(m, indent=1) + "\n")
    print_tables(m, load_zonkey_metrics(a.zonkey_metrics))
    print(f"wrote {out}")
    return m


if __name__ == "__main__":
    main()
