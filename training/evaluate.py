"""Evaluation of a Zonkey checkpoint with every metric of DESIGN §7, fixed seeds throughout:

  python -m training.evaluate --model assets/models/zonkey-small [--text-file F] [--out metrics.json]

- reconstruction: 1 - CER of `reconstruct` at level 0 and through all levels (paragraphs); level 0
  also over the pure-ASCII paragraphs and over the others apart;
- boundaries: P/R/F1 of level-0 starts against word starts and of level-1 starts against
  sentence starts, strict and with +-1 tolerance (one-to-one matching, position 0 excluded;
  `training.metrics.boundary_prf`); characters per segment per level;
- infill: one whole word (>= 3 letters, chosen with a fixed seed) masked per held-out sentence,
  `length="auto"`: exact match, valid-word rate (fill is a word of the training vocabulary),
  CER of the fill; the same for a three-word gap; and for a gap inside a word (a word of >= 5
  letters keeping 1-2 letters at each end, `level="auto"`, so level 0): the completed word's exact
  match and validity, CER of the fill;
- generation: valid-word rate, distinct-2, and bits per character of the generated text under the
  character-level AR baseline (with the baseline's own bits per character on held-out text), when
  `assets/models/baseline-ar-small` exists.
Every goal figure has a 95 % interval beside it (`<key>_ci95`, [low, high]): Wilson's for a rate of one
0/1 per gap (4 exact fills in 100 gaps: 0.04, 0.016-0.098), else a seeded bootstrap over the items the
figure is summed over (`training.metrics.bootstrap_ratio_interval`): paragraphs for reconstruction and
boundary F1, gaps for three-word validity, generated samples for their valid-word rate.
Writes metrics.json and prints a table. Held-out text by default; any text file with --text-file.
Infill and generation use the method's sampler (temperature 1) unless --temperature says otherwise;
generation re-infills the library's default fraction of its least confident words in a second pass
(`zonkey.refine`; --refine 0 for the method's sampler alone), recorded as "refine".
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import torch
from tqdm import tqdm

from training.data import heldout_sentences, local_split, split_sentences, training_vocabulary
from training.metrics import (
    bootstrap_ratio_interval,
    boundary_prf,
    cer,
    distinct_n,
    fill_validity,
    is_single_valid_word,
    is_valid_word,
    mean_interval,
    rate_intervals,
    sentence_starts,
    valid_word_rate,
    word_starts,
    words,
)
from zonkey import Zonkey
from zonkey.validation import DEFAULT_REFINE

BASELINE_DIR = Path("assets/models/baseline-ar-small")
_WORD = re.compile(r"[A-Za-z]{3,}")
_LONG_WORD = re.compile(r"[A-Za-z]{5,}")


def paragraphs(texts: list[str], n: int, max_chars: int = 480) -> list[str]:
    """The first <= max_chars characters of each text, cut at a sentence end when possible."""
    out = []
    for t in texts:
        if len(t) <= max_chars:
            out.append(t)
        else:
            cut = t.rfind(". ", 0, max_chars)
            out.append(t[: cut + 1] if cut > max_chars // 3 else t[:max_chars])
        if len(out) == n:
            break
    return out


def mask_words(sentence: str, rng: random.Random, k: int = 1):
    """Span of k consecutive words (the first of >= 3 letters) chosen by rng, or None."""
    words = list(_WORD.finditer(sentence))
    all_words = list(re.finditer(r"\S+", sentence))
    if not words:
        return None
    w = rng.choice(words)
    if k == 1:
        return w.start(), w.end()
    idx = [i for i, m in enumerate(all_words) if m.start() <= w.start() < m.end()][0]
    if idx + k > len(all_words) or idx == 0:
        return None
    return all_words[idx].start(), all_words[idx + k - 1].end()


def eval_reconstruction(model, paras):
    """Mean 1 - CER per paragraph; level 0 also split into pure-ASCII paragraphs and the others
    (names, IPA, Greek: multi-byte UTF-8, whose bytes are rare in training)."""
    acc0 = [1 - cer(model.reconstruct(p, level=0), p) for p in tqdm(paras, desc="reconstruct l0", leave=False)]
    acc = [1 - cer(model.reconstruct(p), p) for p in tqdm(paras, desc="reconstruct all", leave=False)]
    out = {"recon_acc_l0": sum(acc0) / len(acc0), "recon_acc_all": sum(acc) / len(acc)}
    for key, vals in (("recon_acc_l0", acc0), ("recon_acc_all", acc)):
        out[f"{key}_ci95"] = list(mean_interval(vals))
    for tag, keep in (("ascii", True), ("non_ascii", False)):
        part = [a for a, p in zip(acc0, paras) if p.isascii() == keep]
        out[f"n_paragraphs_{tag}"] = len(part)
        if part:
            out[f"recon_acc_l0_{tag}"] = sum(part) / len(part)
    return out


def eval_boundaries(model, paras):
    per_para = {}  # (level, tolerance) -> per paragraph (tp, n_pred, n_ref)
    cps = {0: [], 1: []}
    for p in tqdm(paras, desc="segment", leave=False):
        seg = model.segment(p)
        refs = {0: word_starts(p), 1: sentence_starts(p)}
        for lv in range(min(2, len(seg.levels))):
            starts = seg.levels[lv].starts
            cps[lv].append((len(p), len(starts)))
            for tol in (0, 1):
                r = boundary_prf(starts, refs[lv], tolerance=tol)
                per_para.setdefault((lv, tol), []).append((r["tp"], r["n_pred"], r["n_ref"]))
    out = {}
    for lv, ref in ((0, "word"), (1, "sentence")):
        if (lv, 0) not in per_para:
            continue
        for tol, tag in ((0, "strict"), (1, "tol1")):
            counts = per_para[(lv, tol)]
            tp, npred, nref = (sum(col) for col in zip(*counts))  # summed over paragraphs
            pr, rc = tp / max(npred, 1), tp / max(nref, 1)
            out[f"l{lv}_{ref}_{tag}_precision"] = pr
            out[f"l{lv}_{ref}_{tag}_recall"] = rc
            out[f"l{lv}_{ref}_{tag}_f1"] = 2 * pr * rc / max(pr + rc, 1e-12)
            if npred + nref:  # micro F1 = 2 tp / (n_pred + n_ref), resampled by paragraph
                ci = bootstrap_ratio_interval([2 * t for t, _, _ in counts], [n + m for _, n, m in counts])
                out[f"l{lv}_{ref}_{tag}_f1_ci95"] = list(ci)
        chars = sum(c for c, _ in cps[lv])
        out[f"l{lv}_chars_per_segment"] = chars / max(1, sum(n for _, n in cps[lv]))
    return out


def _infill_rates(
    model, sentences, seed: int, steps: int, level, temperature, tag: str, choose, judge, binary_valid=True
) -> dict:
    """One infill per sentence that `choose(sentence, rng)` finds a gap in, as (gap span, info) or None;
    `judge(sentence, result, gap, info)` -> (exact, valid, cer). Returns the means under `tag`, with 95 %
    intervals: Wilson's for the exact rate and, when `binary_valid` (one 0/1 per gap), the valid rate;
    otherwise (a three-word fill's fraction of valid words) a bootstrap over the gaps."""
    rng = random.Random(seed)
    rows, times = [], []
    for i, s in enumerate(tqdm(sentences, desc=tag, leave=False)):
        case = choose(s, rng)
        if case is None:
            continue
        gap, info = case
        t0 = time.time()
        res = model.infill(s, [gap], level, "auto", steps, seed + i, temperature=temperature)
        times.append(time.time() - t0)
        rows.append(judge(s, res, gap, info))
    n = len(rows)
    cols = list(zip(*rows)) if rows else [(), (), ()]  # exact, valid, cer per gap
    exact, valid, cers = (sum(col) / max(n, 1) for col in cols)
    out = {
        f"{tag}_exact": exact,
        f"{tag}_valid_word_rate": valid,
        f"{tag}_cer": cers,
        f"{tag}_n": n,
        f"{tag}_latency_s": sum(times) / max(n, 1),
    }
    if n:
        ci = rate_intervals(cols[0], cols[1], binary_valid)
        out.update({f"{tag}_{k}": v for k, v in ci.items()})
    return out


def eval_infill(
    model, sentences, vocab, k_words: int, steps: int, seed: int, level="auto", tag_suffix="", temperature=1.0
):
    def choose(s, rng):
        span = mask_words(s, rng, k_words)
        return None if span is None else (span, None)

    def judge(s, res, gap, _):
        fs, fe = res.filled[0]
        fill, ref = res.text[fs:fe].strip(), s[gap[0] : gap[1]]
        return fill == ref, fill_validity(fill, vocab, k_words), cer(fill, ref)

    tag = ("infill_1w" if k_words == 1 else f"infill_{k_words}w") + tag_suffix
    return _infill_rates(model, sentences, seed, steps, level, temperature, tag, choose, judge, k_words == 1)


def mask_inside_word(sentence: str, rng: random.Random):
    """Span inside a word of >= 5 letters chosen by rng, keeping 1-2 letters at each end -> (word span,
    gap span), or None."""
    words = list(_LONG_WORD.finditer(sentence))
    if not words:
        return None
    w = rng.choice(words)
    return (w.start(), w.end()), (w.start() + rng.randint(1, 2), w.end() - rng.randint(1, 2))


def eval_infill_inword(model, sentences, vocab, steps: int, seed: int, temperature=1.0):
    """A gap inside a word (what `level="auto"` sends to level 0): the word completed by the fill,
    scored as a single word (exact, valid); CER of the fill against the masked letters."""

    def choose(s, rng):
        spans = mask_inside_word(s, rng)
        return None if spans is None else (spans[1], spans[0])

    def judge(s, res, gap, word_span):
        (a, b), (ws, we) = gap, word_span
        fs, fe = res.filled[0]
        word = res.text[ws : fe + (we - b)]  # prefix, fill, suffix: the text outside the gap is unchanged
        return word == s[ws:we], is_single_valid_word(word, vocab), cer(res.text[fs:fe], s[a:b])

    return _infill_rates(model, sentences, seed, steps, "auto", temperature, "infill_inword", choose, judge)


def eval_generation(
    model, vocab, n: int, steps: int, seed: int, heldout_text: list[str], temperature=1.0, refine=DEFAULT_REFINE
):
    texts = [
        model.generate(steps=steps, seed=seed + i, temperature=temperature, refine=refine).text
        for i in tqdm(range(n), desc="generate", leave=False)
    ]
    joined = " ".join(texts)
    found = [words(t) for t in texts]  # the joined text's words, sample by sample
    valid = [sum(is_valid_word(w, vocab) for w in f) for f in found]
    n_words = sum(len(f) for f in found)
    out = {
        "gen_valid_word_rate": sum(valid) / n_words if n_words else 0.0,  # valid_word_rate of the joined text
        "gen_distinct_2": distinct_n(joined, 2),
        "gen_mean_chars": sum(len(t) for t in texts) / n,
        "gen_samples": texts[:5],
    }
    if n_words:  # resampled by generation: the words of one sample are not independent
        out["gen_valid_word_rate_ci95"] = list(bootstrap_ratio_interval(valid, [len(f) for f in found]))
    # level 0 alone: 8 word-level segments sampled from noise and decoded (no sentence-level model above them)
    l0_texts = [model.generate(8, steps, seed + i, level=0, temperature=temperature).text for i in range(n)]
    out.update({"gen_l0_valid_word_rate": valid_word_rate(" ".join(l0_texts), vocab), "gen_l0_samples": l0_texts[:5]})
    if (BASELINE_DIR / "config.json").exists():
        try:
            from training.baselines.ar import CharLM

            lm = CharLM.from_pretrained(BASELINE_DIR)
            out["gen_bpc_under_ar"] = lm.bits_per_char(texts)
            out["ar_bpc_heldout"] = lm.bits_per_char(heldout_text)
        except ImportError:
            pass
    return out


def evaluate(
    model_dir: str,
    text_file: str | None = None,
    n_paragraphs: int = 60,
    n_sentences: int = 100,
    n_generate: int = 20,
    steps: int = 20,
    seed: int = 0,
    temperature: float = 1.0,
    refine: float = DEFAULT_REFINE,
) -> dict:
    """Every metric; `temperature` (default 1, the method's sampler) applies to infill and generation
    and is recorded in the result only when it is not 1; `refine` applies to generation (recorded)."""
    torch.manual_seed(seed)
    model = Zonkey.from_pretrained(model_dir)
    if text_file:
        raw = Path(text_file).read_text(encoding="utf-8")
        texts = [t for t in raw.split("\n\n") if t.strip()] or [raw]
        sentences = [s for t in texts for s in split_sentences(t) if 40 <= len(s) <= 300][:n_sentences]
        source = text_file
    else:
        texts = [x for _, x in local_split("heldout")]
        sentences = heldout_sentences(texts, n_sentences, seed=seed)
        source = "local heldout split (5% of titles by sha1 bucket)"
    vocab = training_vocabulary(x for _, x in local_split("train"))
    paras = paragraphs(texts, n_paragraphs)
    t0 = time.time()
    metrics = {
        "model": str(model_dir),
        "data": source,
        "n_paragraphs": len(paras),
        "n_sentences": len(sentences),
        "steps": steps,
        "seed": seed,
        **({"temperature": temperature} if temperature != 1.0 else {}),
        "refine": refine,
    }
    metrics.update(eval_reconstruction(model, paras))
    metrics.update(eval_boundaries(model, paras))
    temp = {"temperature": temperature}
    metrics.update(eval_infill(model, sentences, vocab, 1, steps, seed, **temp))
    metrics.update(eval_infill(model, sentences, vocab, 1, steps, seed, level=0, tag_suffix="_l0", **temp))
    metrics.update(eval_infill(model, sentences[: n_sentences // 2], vocab, 3, steps, seed, **temp))
    metrics.update(eval_infill_inword(model, sentences, vocab, steps, seed, **temp))
    metrics.update(eval_generation(model, vocab, n_generate, steps, seed, paras[:20], **temp, refine=refine))
    metrics["eval_seconds"] = time.time() - t0
    return metrics


def print_table(m: dict) -> None:
    rows = [(k, v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    w = max(len(k) for k, _ in rows)
    print(f"{'metric':<{w}}  value")
    print("-" * (w + 10))
    for k, v in rows:
        ci = m.get(f"{k}_ci95")
        ci = f"  (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        print(f"{k:<{w}}  {v:.4f}{ci}" if isinstance(v, float) else f"{k:<{w}}  {v}")
    for s in m.get("gen_samples", []):
        print("sample:", repr(s))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Evaluate a Zonkey checkpoint (DESIGN §7).")
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--text-file", default=None, help="evaluate on this UTF-8 text file instead of the held-out split")
    ap.add_argument("--out", default=None, help="metrics.json path (default: <model>/metrics.json)")
    ap.add_argument("--paragraphs", type=int, default=60)
    ap.add_argument("--sentences", type=int, default=100)
    ap.add_argument("--generate", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of infill and generation")
    ap.add_argument("--refine", type=float, default=DEFAULT_REFINE, help="fraction of generated words re-infilled")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    args = (a.text_file, a.paragraphs, a.sentences, a.generate, a.steps, a.seed, a.temperature, a.refine)
    m = evaluate(a.model, *args)
    out = Path(a.out) if a.out else Path(a.model) / "metrics.json"
    out.write_text(json.dumps(m, indent=1) + "\n")
    print_table(m)
    print(f"wrote {out}")
    return m


if __name__ == "__main__":
    main()
