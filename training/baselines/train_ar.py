"""Train the AR baseline: `python -m training.baselines.train_ar --config training/configs/ar_small.json [--key=value]
[--resume]`.

Same conventions as `training/train.py`, whose learning-rate schedule it imports and whose run record it shares
(`training.loop.RunRecord`: counters, atomic state file, RNG state, log): the same training split and byte
batches (`PackedBatches`, one chunk of at most `context` bytes per row), AdamW with linear warmup and cosine
decay, gradient clipping, a tqdm bar with loss (bits per byte) and characters/second, a JSONL log (training loss
every `log_every` steps; held-out bits per byte on fixed held-out batches and a sample every `eval_every` steps),
atomic checkpoints every `ckpt_every` steps holding model, optimizer, step, RNG states and the data position, so
`--resume` continues the same run exactly. A non-finite loss or gradient is never trained on: the step is skipped
and counted, and `max_bad_steps` consecutive ones stop the run. `max_minutes` stops the run (with a checkpoint)
after that much wall-clock time in this process. At the end, `<out_dir>/release` receives config.json, the
safetensors weights and train_log.jsonl.

What it does not do: keep EMA weights (a run of a few hundred steps gains nothing from them), train on several
processes or stream from the Hub.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.baselines.ar import CharLM, CharLMConfig
from training.data import PackedBatches, local_split
from training.loop import RunRecord, resolve_device
from training.train import get_lr


@dataclass(frozen=True)
class ARTrainConfig:
    model: str = "default"  # "default" (CharLMConfig()) or path to a CharLM config.json
    out_dir: str = "runs/ar_small"  # checkpoints, log and release directory
    batch_size: int = 8  # chunks of at most `context` bytes per step
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    max_steps: int = 1000  # schedule length (the cosine ends here)
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall-clock; 0 = no limit
    time_schedule: bool = False  # cosine progress = max(steps / max_steps, minutes / max_minutes), as in TrainConfig
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    eval_batches: int = 4  # fixed held-out batches of batch_size x context bytes scored at every evaluation
    ckpt_every: int = 50
    max_bad_steps: int = 20  # consecutive non-finite losses before stopping
    max_train_texts: int = 0  # use only the first N training articles (0 = all); for smoke tests
    threads: int = 2  # torch CPU threads
    device: str = "auto"  # "auto", "cpu" or "cuda"
    export: bool = True  # write <out_dir>/release at the end

    def __post_init__(self):
        for name in ("batch_size", "max_steps", "log_every", "eval_every", "eval_batches", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"ARTrainConfig.{name}={getattr(self, name)} must be >= 1")
        if self.max_train_texts < 0:
            raise ValueError(f"ARTrainConfig.max_train_texts={self.max_train_texts} must be >= 0")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> ARTrainConfig:
        d = json.loads(Path(path).read_text())
        d.update(overrides)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown AR training config keys: {sorted(unknown)}")
        return cls(**d)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """--key=value pairs typed against ARTrainConfig's fields (`training.train.parse_overrides`)."""
    from training.train import parse_overrides as _parse

    return _parse(items, ARTrainConfig)


def model_config(cfg: ARTrainConfig) -> CharLMConfig:
    return CharLMConfig() if cfg.model == "default" else CharLMConfig.from_json(cfg.model)


@torch.no_grad()
def heldout_bits(model: CharLM, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Bits per byte over all real bytes of fixed held-out batches (ids (b, n), lengths (b,))."""
    model.eval()
    total, n = 0.0, 0
    for ids, lengths in batches:
        total += float(model.loss(ids, lengths)) * int(lengths.sum())
        n += int(lengths.sum())
    model.train()
    return total / max(1, n) / math.log(2)


def main(cfg: ARTrainConfig, resume: bool = False) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    # data: the same training split and held-out split as Zonkey
    mcfg = model_config(cfg)
    train_texts = [x for _, x in local_split("train")]
    if cfg.max_train_texts:
        train_texts = train_texts[: cfg.max_train_texts]
    data = PackedBatches(train_texts, cfg.batch_size, mcfg.context, seed=cfg.seed)
    held = PackedBatches([x for _, x in local_split("heldout")], cfg.batch_size, mcfg.context, seed=1234)
    held_batches = [tuple(t.to(device) for t in next(held)) for _ in range(cfg.eval_batches)]

    # model, optimizer: weight decay on matrices (dim >= 2, embeddings included), none on biases and norms
    model = CharLM(mcfg).to(device).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    run = RunRecord(out, mcfg.to_dict(), cfg, {"model": model, "optimizer": opt, "data": data}, cfg.max_bad_steps)
    run.open(resume)

    def evaluate() -> dict[str, Any]:
        return {
            "heldout/bits_per_char": heldout_bits(model, held_batches),
            "sample/generate": model.sample(120, seed=cfg.seed),
        }

    if not resume:
        run.log(
            {
                "event": "start",
                "train_config": asdict(cfg),
                "model_config": mcfg.to_dict(),
                "params": model.num_parameters(),
                "train_chunks": data.num_chunks,
                "fraction_chars_trained_on": data.fraction_used,
                "train_chars": data.chars_total,
            }
        )
    stop_reason = "max_steps"
    bar = tqdm(total=cfg.max_steps, initial=run.step, dynamic_ncols=True)
    while run.step < cfg.max_steps:
        t0 = time.time()
        run_minutes = run.minutes()
        if cfg.max_minutes and run_minutes > cfg.max_minutes:
            stop_reason = "max_minutes"
            break
        ids, lengths = next(data)  # (b, context), (b,)
        ids, lengths = ids.to(device), lengths.to(device)
        lr = get_lr(run.step, cfg, minutes=run_minutes)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = model.loss(ids, lengths)
        event, gnorm = run.guard(loss, model.parameters(), opt, cfg.grad_clip)
        if event:
            run.log({"event": event, "step": run.step})
            if run.guard.exhausted:
                stop_reason = run.guard.reason
                break
            continue
        run.step += 1
        n_chars = int(lengths.sum())
        run.chars_seen += n_chars
        dt = time.time() - t0
        loss_value = float(loss.detach())
        bits = loss_value / math.log(2)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", bpc=f"{bits:.3f}", cps=f"{n_chars / dt:,.0f}")
        if run.step % cfg.log_every == 0 or run.step == 1:
            run.log(
                {
                    **run.counters(),
                    "lr": lr,
                    "loss": loss_value,
                    "bits_per_char": bits,
                    "grad_norm": float(gnorm),
                    "chars_per_sec": n_chars / dt,
                    "epoch": data.epoch,
                }
            )
        if run.step % cfg.ckpt_every == 0:
            run.checkpoint()
        if run.step % cfg.eval_every == 0:
            run.log({"step": run.step, "split": "heldout", **evaluate()})
    bar.close()
    run.checkpoint()
    summary: dict[str, Any] = {"event": "end", **run.counters(), "stop_reason": stop_reason}
    summary.update({"split": "heldout", **evaluate()})
    run.log(summary)
    if cfg.export and run.step > 0:
        rel = out / "release"
        model.save_pretrained(rel)
        shutil.copy(run.log_path, rel / "train_log.jsonl")
    if "non-finite" in stop_reason:
        print(f"training stopped: {stop_reason} at step {run.step}; see {run.log_path}", file=sys.stderr)
    return summary


def parse_args(argv: list[str] | None = None) -> tuple[ARTrainConfig, bool]:
    ap = argparse.ArgumentParser(
        description="Train the character-level AR baseline.",
        epilog="Any ARTrainConfig field can be set as --key=value.",
    )
    ap.add_argument("--config", required=True, help="training config JSON (training/configs/ar_small.json)")
    ap.add_argument("--resume", action="store_true", help="continue the run in out_dir from its state.pt")
    args, rest = ap.parse_known_args(argv)
    return ARTrainConfig.from_json(args.config, **parse_overrides(rest)), args.resume


if __name__ == "__main__":
    c, r = parse_args()
    s = main(c, resume=r)
    print(json.dumps({k: v for k, v in s.items() if not k.startswith("sample")}, indent=1))
