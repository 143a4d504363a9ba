"""Model FLOPs of one training step, and the model FLOPs utilisation (MFU) of a run.

`python -m training.flops --config training/configs/base.json [--key=value ...] [--log runs/base/train_log.jsonl]
[--peak-tflops 989]` counts the floating-point operations of one real training step (forward + backward, as
`torch.utils.flop_counter.FlopCounterMode` counts matrix products and attention; element-wise work is not
counted) on a batch of the config's size, divides by the batch's characters, and, given a training log,
multiplies by the run's median characters/second: MFU = model FLOP/s / peak FLOP/s. The default peak is the
H200's dense bf16 rate (989 TFLOP/s). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from training.data import PackedBatches, local_split
from training.loop import resolve_device
from training.staging import freeze_lower_levels
from training.train import TrainConfig, model_config, parse_overrides
from zonkey import Zonkey

H200_BF16_DENSE_TFLOPS = 989.0


def step_flops(cfg: TrainConfig, device: torch.device | None = None) -> dict:
    """FLOPs of one training step of `cfg` (levels and freezing as its stage trains them) on real data."""
    device = device or resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    mcfg = model_config(cfg)
    model = Zonkey(mcfg).to(device).train()
    freeze_lower_levels(model, cfg.frozen_levels)
    texts = [x for _, x in local_split("train")][: 50 * cfg.batch_size]
    ids, lengths = next(PackedBatches(texts, cfg.batch_size, mcfg.levels[0].doc_len, seed=cfg.seed))
    n_levels = 1 if cfg.upper_levels_from > 0 else None
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            out = model(ids.to(device), lengths.to(device), n_levels, cfg.frozen_levels)
        out.loss.backward()
    flops = counter.get_total_flops()
    chars = int(lengths.sum())
    return {"flops_per_step": flops, "chars_per_step": chars, "flops_per_char": flops / chars}


def mfu(flops_per_char: float, log_path: str | Path, peak_tflops: float = H200_BF16_DENSE_TFLOPS) -> dict:
    """Median characters/second of a training log (from its 3rd record on) and the MFU it implies."""
    recs = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    rates = [r["chars_per_sec"] for r in recs if "chars_per_sec" in r][2:]
    if not rates:
        raise ValueError(f"{log_path}: no chars_per_sec records after the first two; train longer")
    cps = statistics.median(rates)
    flops_per_sec = cps * flops_per_char
    return {"chars_per_sec": cps, "model_tflops": flops_per_sec / 1e12, "mfu": flops_per_sec / (peak_tflops * 1e12)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--log", default=None, help="train_log.jsonl of a run of this config: adds chars/s and MFU")
    ap.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    args, rest = ap.parse_known_args(argv)
    cfg = TrainConfig.from_json(args.config, **parse_overrides(rest))
    res = {"config": args.config, "device": str(resolve_device(cfg.device)), **step_flops(cfg)}
    if args.log:
        res.update(peak_tflops=args.peak_tflops, **mfu(res["flops_per_char"], args.log, args.peak_tflops))
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
