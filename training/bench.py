"""Speed benchmark: `python -m training.bench [--model DIR] [--out-dir DIR]` prints one table.

Rows (2 CPU threads unless --threads): training throughput of the `small` preset (forward +
backward + fused AdamW step, both levels, real Wikipedia batches of 8 x 512 bytes) in one process, in
float32 and with bf16 autocast (`_bf16`, as `--bf16=true` trains; also at 16 documents per step), and
with two DDP processes of one thread each through the real training script (`_ddp_2x1`, 8 documents
per process, float32 and `_bf16`; the latter with length-balanced batches, `--balance_batches=16`,
as the median and the slowest of 3 launches), `segment` of 2,000
characters, `infill` of a one-word and a five-word gap in a ~300-character paragraph (20 steps),
`generate` of one top-level segment (20 steps) and its characters/second, and peak resident memory.
When the AR baseline checkpoint exists, its training throughput and generation speed at equal
output length are measured beside Zonkey's. `--inference-only` skips every training row (for a
checkpoint trained elsewhere, e.g. on a GPU). Writes bench.json and bench.md.
Timings are medians of repeated runs after a warm-up; they are measurements, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from training.data import PackedBatches, local_split
from training.loop import adamw
from zonkey import Zonkey, ZonkeyConfig

PARAGRAPH = (
    "The plains zebra is the most common and geographically widespread species of zebra. It ranges from the "
    "south of Ethiopia through East Africa to as far south as Botswana and eastern South Africa. The plains zebra "
    "lives in groups, which may merge into large herds, and it migrates seasonally in search of water and grass."
)


def timeit(fn, repeat: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def train_throughput(steps: int = 8, batch_size: int = 8, bf16: bool = False) -> float:
    """Median characters/second of `steps` training steps (after 2 warm-up steps) of a fresh `small`."""
    torch.manual_seed(0)
    model = Zonkey(ZonkeyConfig.preset("small")).train()
    opt = adamw(model.parameters(), lr=1e-3)
    texts = [x for _, x in local_split("train")][: 50 * batch_size]
    data = PackedBatches(texts, batch_size, model.config.levels[0].doc_len, seed=0)
    rates = []
    for i in range(steps + 2):
        ids, lengths = next(data)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(ids, lengths)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            rates.append(int(lengths.sum()) / (time.perf_counter() - t0))
    return statistics.median(rates)


def train_throughput_ddp(steps: int = 16, procs: int = 2, bf16: bool = False, balance: int = 0) -> float:
    """The same measurement with `procs` DDP processes of one thread each (gloo), through the real
    training script (`torchrun ... -m training.train`, both levels from step 0, fresh `small`
    weights, 8 documents per process): median of the logged characters/second (all processes'
    characters per step over the step's wall-clock), steps 3 on."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs)),
            *("--master_port", str(29600 + os.getpid() % 300), "-m", "training.train"),
            *("--config", "training/configs/small.json", f"--out_dir={d}", f"--max_steps={steps + 2}"),
            *("--threads=1", "--upper_levels_from=0", "--upper_levels_until=0", "--log_every=1"),
            *("--eval_every=1000000", "--ckpt_every=1000000", "--export=false", "--max_minutes=0"),
            *(f"--bf16={str(bf16).lower()}", f"--balance_batches={balance}"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode:
            raise RuntimeError(f"DDP benchmark failed:\n{proc.stderr[-2000:]}")
        recs = [json.loads(line) for line in (Path(d) / "train_log.jsonl").read_text().splitlines()]
    return statistics.median(r["chars_per_sec"] for r in recs if "chars_per_sec" in r and r["step"] > 2)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gap(text: str, words: int) -> tuple[int, int]:
    """Span of `words` consecutive words starting at the 12th word."""
    idx = [i for i, ch in enumerate(text) if ch == " "]
    return idx[11] + 1, idx[11 + words]


def run(model_dir: str | None, threads: int, training: bool = True) -> dict:
    torch.set_num_threads(threads)
    model = Zonkey.from_pretrained(model_dir) if model_dir else Zonkey(ZonkeyConfig.preset("small")).eval()
    long_text = " ".join(x for _, x in local_split("heldout"))[:2000]
    rows = {}
    if training:
        rows["train_chars_per_sec_small"] = train_throughput()
        rows["train_chars_per_sec_small_bf16"] = train_throughput(bf16=True)
        rows["train_chars_per_sec_small_bf16_16docs"] = train_throughput(batch_size=16, bf16=True)
        rows["train_chars_per_sec_small_ddp_2x1"] = train_throughput_ddp()
        # this machine's speed drifts by up to +-15 % over minutes: the headline row is the median of 3 launches
        launches = sorted(train_throughput_ddp(bf16=True, balance=16) for _ in range(3))
        rows["train_chars_per_sec_small_ddp_2x1_bf16"] = launches[1]
        rows["train_chars_per_sec_small_ddp_2x1_bf16_slowest_of_3"] = launches[0]
    rows["segment_2000_chars_ms"] = 1000 * timeit(lambda: model.segment(long_text))
    rows["infill_1_word_20_steps_ms"] = 1000 * timeit(lambda: model.infill(PARAGRAPH, [gap(PARAGRAPH, 1)], steps=20))
    rows["infill_5_words_20_steps_ms"] = 1000 * timeit(lambda: model.infill(PARAGRAPH, [gap(PARAGRAPH, 5)], steps=20))
    gen_t = timeit(lambda: model.generate(steps=20, seed=0))
    gen_len = len(model.generate(steps=20, seed=0).text)
    rows["generate_1_segment_20_steps_ms"] = 1000 * gen_t
    rows["generate_chars_per_sec"] = gen_len / gen_t
    rows["generate_output_chars"] = gen_len
    baseline = Path("assets/models/baseline-ar-small")
    if (baseline / "config.json").exists():
        try:
            from training.baselines.ar import CharLM
            from training.baselines.ar import train_throughput as ar_train_throughput

            lm = CharLM.from_pretrained(baseline)
            if training:
                rows["ar_train_chars_per_sec"] = ar_train_throughput(lm.config)
            ar_t = timeit(lambda: lm.sample(gen_len, seed=0), repeat=3)
            rows["ar_generate_chars_per_sec"] = gen_len / ar_t
        except ImportError:
            pass
    rows["peak_rss_mb"] = peak_rss_mb()
    return rows


QUALITY = [
    (
        "level-0 boundary F1 vs word starts (±1)",
        "l0_word_tol1_f1",
        [
            ("entropy (global)", "entropy_global_word_tol1_f1"),
            ("entropy (monotonic)", "entropy_monotonic_word_tol1_f1"),
            ("fixed patches", "fixed_word_tol1_f1"),
            ("whitespace", "whitespace_word_tol1_f1"),
        ],
    ),
    ("characters per level-0 segment", "l0_chars_per_segment", [("all patchers", "target_chars_per_segment")]),
    (
        "single-word infill exact match",
        "infill_1w_exact",
        [("AR left context", "ar_left_infill_1w_exact"), ("AR 8 candidates rescored", "ar_rescore_infill_1w_exact")],
    ),
    (
        "single-word infill valid-word rate",
        "infill_1w_valid_word_rate",
        [
            ("AR left context", "ar_left_infill_1w_valid_word_rate"),
            ("AR 8 candidates rescored", "ar_rescore_infill_1w_valid_word_rate"),
        ],
    ),
    (
        "three-word infill valid-word rate",
        "infill_3w_valid_word_rate",
        [("AR 8 candidates rescored", "ar_rescore_infill_3w_valid_word_rate")],
    ),
    ("generation valid-word rate", "gen_valid_word_rate", [("AR sampling", "ar_gen_valid_word_rate")]),
]


def quality_rows(model_dir: str | None) -> list[list[str]]:
    """Zonkey's held-out figures beside every baseline's, from the metrics.json files of the same run."""
    zk = Path(model_dir or "") / "metrics.json"
    bl = Path("assets/models/baseline-ar-small/metrics.json")
    if not (zk.exists() and bl.exists()):
        return []
    z, b = json.loads(zk.read_text()), json.loads(bl.read_text())
    out = []
    for label, zkey, others in QUALITY:
        base = ", ".join(f"{name} {b[k]:.3f}" for name, k in others if k in b)
        out.append([label, f"{z[zkey]:.3f}" if zkey in z else "—", base or "—"])
    return out


def to_markdown(rows: dict, quality: list[list[str]] | None = None, threads: int = 2) -> str:
    lines = [f"| measurement ({threads} CPU thread{'s' if threads != 1 else ''}) | value |", "|---|---|"]
    for k, v in rows.items():
        lines.append(f"| {k} | {v:,.1f} |" if isinstance(v, float) else f"| {k} | {v} |")
    if quality:
        lines += ["", "| quality (held-out) | Zonkey | baselines |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in quality]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: a random small model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", default=None, help="where to write bench.json and bench.md")
    ap.add_argument(
        "--inference-only",
        action="store_true",
        help="skip the training-throughput rows (of the `small` preset and the AR baseline): the speed of "
        "serving this checkpoint, and peak memory of that alone",
    )
    a = ap.parse_args(argv)
    rows = run(a.model, a.threads, training=not a.inference_only)
    quality = quality_rows(a.model)
    md = to_markdown(rows, quality, a.threads)
    print(md)
    if a.out_dir:
        out = Path(a.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps({"speed": rows, "quality": quality}, indent=1) + "\n")
        (out / "bench.md").write_text(md)
    return rows


if __name__ == "__main__":
    main()
