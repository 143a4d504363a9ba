"""Train the AR baseline: `python -m training.baselines.train_ar --config training/configs/ar_small.json [--key=value]
[--resume]`.

Same conventions as `training/train.py`, whose helpers it imports (learning-rate schedule, atomic state files, RNG
state): the same training split and byte batches (`PackedBatches`, one chunk of at most `context` bytes per row),
AdamW with linear warmup and cosine decay, gradient clipping, a tqdm bar with loss (bits per byte) and
characters/second, a JSONL log (training loss every `log_every` steps; held-out bits per byte on fixed held-out
batches and a sample every `eval_every` steps), atomic checkpoints every `ckpt_every` steps holding model,
optimizer, step, RNG states and the data position, so `--resume` continues the same run exactly. A non-finite loss
or gradient is never trained on: the step is skipped and counted, and `max_bad_steps` consecutive ones stop the
run. `max_minutes` stops the run (with a checkpoint) after that much wall-clock time in this process. At the end,
`<out_dir>/release` receives config.json, the safetensors weights and train_log.jsonl.

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
from training.loop import GuardedStep, resolve_device
from training.train import get_lr, load_state, rng_state, save_state, set_rng_state
from zonkey.checkpoint import CheckpointError

STATE_NAME = "state.pt"


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
    step, chars_seen, elapsed_before = 0, 0, 0.0
    guard = GuardedStep(cfg.max_bad_steps)
    log_path = out / "train_log.jsonl"
    if resume:
        st = load_state(out / STATE_NAME)
        if st["config"] != mcfg.to_dict():
            raise CheckpointError(f"{out / STATE_NAME}: model config differs from --config; resume with the same one.")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        data.load_state_dict(st["data"])
        set_rng_state(st["rng"])
        step, guard.total, chars_seen, elapsed_before = st["step"], st["bad_steps"], st["chars_seen"], st["elapsed"]
    elif log_path.exists():
        log_path.unlink()

    def checkpoint() -> None:
        save_state(
            out / STATE_NAME,
            {
                "config": mcfg.to_dict(),
                "train_config": asdict(cfg),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "data": data.state_dict(),
                "rng": rng_state(),
                "step": step,
                "bad_steps": guard.total,
                "chars_seen": chars_seen,
                "elapsed": elapsed_before + (time.time() - t_start),
            },
        )

    def log(rec: dict[str, Any]) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def evaluate() -> dict[str, Any]:
        return {
            "heldout/bits_per_char": heldout_bits(model, held_batches),
            "sample/generate": model.sample(120, seed=cfg.seed),
        }

    if not resume:
        log(
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
    t_start = time.time()
    stop_reason = "max_steps"
    bar = tqdm(total=cfg.max_steps, initial=step, dynamic_ncols=True)
    while step < cfg.max_steps:
        t0 = time.time()
        run_minutes = (t0 - t_start) / 60
        if cfg.max_minutes and run_minutes > cfg.max_minutes:
            stop_reason = "max_minutes"
            break
        ids, lengths = next(data)  # (b, context), (b,)
        ids, lengths = ids.to(device), lengths.to(device)
        lr = get_lr(step, cfg, minutes=run_minutes)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = model.loss(ids, lengths)
        event, gnorm = guard(loss, model.parameters(), opt, cfg.grad_clip)
        if event:
            log({"event": event, "step": step})
            if guard.exhausted:
                stop_reason = guard.reason
                break
            continue
        step += 1
        n_chars = int(lengths.sum())
        chars_seen += n_chars
        dt = time.time() - t0
        loss_value = float(loss.detach())
        bits = loss_value / math.log(2)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", bpc=f"{bits:.3f}", cps=f"{n_chars / dt:,.0f}")
        if step % cfg.log_every == 0 or step == 1:
            log(
                {
                    "step": step,
                    "lr": lr,
                    "loss": loss_value,
                    "bits_per_char": bits,
                    "grad_norm": float(gnorm),
                    "chars_per_sec": n_chars / dt,
                    "chars_seen": chars_seen,
                    "epoch": data.epoch,
                    "bad_steps": guard.total,
                    "elapsed": elapsed_before + time.time() - t_start,
                }
            )
        if step % cfg.ckpt_every == 0:
            checkpoint()
        if step % cfg.eval_every == 0:
            log({"step": step, "split": "heldout", **evaluate()})
    bar.close()
    checkpoint()
    summary: dict[str, Any] = {
        "event": "end",
        "step": step,
        "stop_reason": stop_reason,
        "bad_steps": guard.total,
        "chars_seen": chars_seen,
        "elapsed": elapsed_before + time.time() - t_start,
        "split": "heldout",
        **evaluate(),
    }
    log(summary)
    if cfg.export and step > 0:
        rel = out / "release"
        model.save_pretrained(rel)
        shutil.copy(log_path, rel / "train_log.jsonl")
    if "non-finite" in stop_reason:
        print(f"training stopped: {stop_reason} at step {step}; see {log_path}", file=sys.stderr)
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
