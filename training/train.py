"""Training loop: `python -m training.train --config training/configs/small.json [--key=value ...]`.

Reads top to bottom: config -> data -> model -> optimizer -> loop -> eval -> checkpoint -> export.
AdamW with linear warmup and cosine decay, gradient clipping, EMA weights (used for evaluation
and export), a tqdm bar with loss and characters/second, a JSONL log of every loss term per level,
learning rate, throughput, held-out metrics and samples. Checkpoints are atomic (temp file +
rename) and hold model, EMA, optimizer, step, RNG states and the data position, so `--resume`
continues the same run exactly. A non-finite loss is never trained on: the step is skipped and
counted; `max_bad_steps` consecutive ones stop the run with a message (after a checkpoint).
Multi-process: launch with `torchrun --nproc_per_node N -m training.train ...` (gloo on CPU,
nccl on GPU); every rank reads its own shard of the training texts. The ranks meet once per step:
right after the gradient all-reduce, one more all-reduce carries whether every rank's loss was
finite (a non-finite loss on any rank skips the step on all of them), all ranks' characters, and
rank 0's clock (for the wall-clock schedule and `max_minutes`, so every rank stops at the same step).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm import tqdm

from training.data import PackedBatches, heldout_sentences, local_split
from training.loop import RunRecord, adamw, bf16_slowdown, describe_hardware, resolve_device
from training.staging import (
    carry_stage_logs,
    check_soften_factor,
    freeze_lower_levels,
    init_from_release,
    parse_row_range,
    respread_embedding_rows,
    restrict_training,
    soften_bos_output,
)
from zonkey import Zonkey, ZonkeyConfig

EXPORT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
BF16_MAX_SLOWDOWN = 2.0  # bf16 autocast only where a bf16 matrix product is at most this much slower than float32


@dataclass(frozen=True)
class TrainConfig:
    model: str = "small"  # preset name or path to a model config.json
    model_overrides: dict = field(default_factory=dict)  # merged into that model config, nested dicts key by
    # key (e.g. {"loss_weights": {"clean_recon": 0.2}}); on the command line as JSON
    out_dir: str = "runs/small"  # checkpoints, log and release directory
    source: str = "local"  # "local" (offline Wikipedia leads) or "hub"
    batch_size: int = 8  # documents (chunks) per step per process
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 200
    max_steps: int = 3000  # schedule length (the cosine ends here)
    max_minutes: float = 0.0  # stop (with a checkpoint) after this wall-clock; 0 = no limit
    time_schedule: bool = False  # cosine progress = max(steps / max_steps, minutes / max_minutes): a run on a
    # wall-clock budget (the GPU recipe) ends its schedule when the budget ends, whatever its speed
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema: float = 0.999
    upper_levels_from: int = 0  # staged training: steps before this train level 0 only (METHOD §18.3)
    upper_levels_until: int = 0  # and steps from this one on train level 0 only again (0 = never)
    init_from: str = ""  # release directory of an earlier stage: its weights initialise this run
    init_levels: int = 0  # how many of the lowest levels (and the embedding) init_from supplies; 0 = all
    frozen_levels: int = 0  # the lowest levels only encode (no gradient, inference segmentation rule)
    train_only: str = ""  # comma-separated parameter-name prefixes (e.g. "levels.0.decoder"): only these train,
    # every other parameter is frozen; "" = no restriction. Needs init_from (the frozen part must be trained)
    respread_rows: str = ""  # "lo-hi": after init_from, byte embedding rows lo..hi are re-spread around their mean
    # direction (`respread_embedding_rows`), undoing a collapse of rare bytes' tied embeddings; "" = untouched
    soften_bos: float = 1.0  # after init_from, the BOS head of level `soften_bos_level` has its output layer
    # multiplied by this factor (`soften_bos_output`): < 1 brings saturated logits back to where the losses move
    # them; 1 = untouched
    soften_bos_level: int = 0
    grow: bool = False  # with init_from: a level may have more latents (n_latents), a longer window (seg_len)
    # or deeper stacks (compressor/draft/denoiser_layers) than init_from's; new rows start from the old ones
    # (`grow_level_tensors`), new blocks as identities (`add_identity_blocks`). A copied level above a grown one
    # would change width and is refused
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250
    ckpt_every: int = 100
    max_bad_steps: int = 20  # consecutive non-finite losses before stopping
    threads: int = 2  # torch CPU threads
    balance_batches: int = 0  # K > 0: regroup every K batches to equal byte counts (PackedBatches balance; for
    # DDP, where each step waits for the slowest rank); 0 = plain random batches
    device: str = "auto"  # "auto", "cpu" or "cuda"
    bf16: bool = False  # bf16 autocast on CUDA or CPU: projections and feed-forwards in bf16; attention,
    # existence, probabilities and every loss stay fp32 (zonkey._utils.fp32)
    export: bool = True  # write <out_dir>/release at the end
    export_dtype: str = "float32"  # "float32" or "bfloat16" (halves the release; loads back into float32)

    def __post_init__(self):
        for name in ("batch_size", "max_steps", "log_every", "eval_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 1")
        if not 0 <= self.ema < 1:
            raise ValueError(f"TrainConfig.ema={self.ema} must be in [0, 1)")
        if self.export_dtype not in EXPORT_DTYPES:
            raise ValueError(f"TrainConfig.export_dtype={self.export_dtype!r} must be one of {sorted(EXPORT_DTYPES)}")
        if self.frozen_levels < 0 or self.init_levels < 0:
            raise ValueError("TrainConfig.frozen_levels and init_levels must be >= 0")
        if self.frozen_levels and not self.init_from:
            raise ValueError(
                f"TrainConfig.frozen_levels={self.frozen_levels} freezes levels that were never trained; "
                "set init_from to the release directory of the stage that trained them"
            )
        if self.train_only and not self.init_from:
            raise ValueError(
                f"TrainConfig.train_only={self.train_only!r} freezes everything else, which was never trained; "
                "set init_from to the release directory of the stage that trained it"
            )
        if self.respread_rows:
            parse_row_range(self.respread_rows)
            if not self.init_from:
                raise ValueError("TrainConfig.respread_rows re-spreads trained embedding rows; set init_from")
        if check_soften_factor(self.soften_bos) != 1.0 and not self.init_from:
            raise ValueError("TrainConfig.soften_bos rescales a trained splitter; set init_from")
        if self.grow and not self.init_from:
            raise ValueError("TrainConfig.grow widens the levels of a trained checkpoint; set init_from")
        if self.soften_bos_level < 0:
            raise ValueError(f"TrainConfig.soften_bos_level={self.soften_bos_level} must be >= 0")
        if self.frozen_levels and self.init_levels and self.init_levels < self.frozen_levels:
            raise ValueError(
                f"TrainConfig.init_levels={self.init_levels} < frozen_levels={self.frozen_levels}: "
                "every frozen level must come from init_from"
            )

    @classmethod
    def from_json(cls, path, **overrides) -> "TrainConfig":
        d = read_config_chain(Path(path))
        d.update(overrides)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**d)


def read_config_chain(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The keys of a training config JSON on top of those of the config named by its optional
    "extends" (a path relative to the file), so a later stage lists only what it changes.
    `model_overrides` of both files merge with `merged` (a child that changes one loss weight keeps
    its parent's level overrides); every other key of the child replaces the parent's."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(p.name for p in (*_seen, path))
        raise ValueError(f"training config {path.name} extends itself in a cycle: {chain}")
    if not path.is_file():
        named = f' (named by {_seen[-1].name} in "extends")' if _seen else ""
        raise ValueError(f"training config {path} does not exist{named}")
    d = json.loads(path.read_text())
    parent = d.pop("extends", None)
    if parent is None:
        return d
    base = read_config_chain(path.parent / parent, (*_seen, path))
    out = {**base, **d}
    if isinstance(base.get("model_overrides"), dict) and isinstance(d.get("model_overrides"), dict):
        out["model_overrides"] = merged(base["model_overrides"], d["model_overrides"])
    return out


def parse_overrides(items: list[str], config_cls=None) -> dict:
    """--key=value pairs typed against the fields of `config_cls` (default TrainConfig)."""
    types = {f.name: f.type for f in fields(config_cls or TrainConfig)}
    out = {}
    for it in items:
        if not it.startswith("--") or "=" not in it:
            raise ValueError(f"override {it!r} must look like --key=value")
        k, v = it[2:].split("=", 1)
        if k not in types:
            raise ValueError(f"unknown training option {k!r}; known: {sorted(types)}")
        t = types[k]
        if t in ("bool", bool):
            if v.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--{k} expects true/false, got {v!r}")
            out[k] = v.lower() in ("true", "1")
        elif t in ("int", int):
            out[k] = int(v)
        elif t in ("float", float):
            out[k] = float(v)
        elif t in ("dict", dict):
            out[k] = json.loads(v)
        else:
            out[k] = v
    return out


def get_lr(step: int, cfg: TrainConfig, minutes: float = 0.0) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at max_steps (or, with
    cfg.time_schedule, at max_minutes of this process's wall-clock if that comes first)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    if cfg.time_schedule and cfg.max_minutes > 0:
        frac = max(frac, min(1.0, minutes / cfg.max_minutes))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def model_config(cfg: TrainConfig) -> ZonkeyConfig:
    base = ZonkeyConfig.from_json(cfg.model) if cfg.model.endswith(".json") else ZonkeyConfig.preset(cfg.model)
    if not cfg.model_overrides:
        return base
    return ZonkeyConfig.from_dict(merged(base.to_dict(), cfg.model_overrides))


def merged(base: dict, over: dict) -> dict:
    """`base` with `over` on top; where both hold a dict, they merge key by key, and where both
    hold a list of dicts of the same length (the levels), element by element."""
    out = dict(base)
    for k, v in over.items():
        b = out.get(k)
        if isinstance(v, dict) and isinstance(b, dict):
            out[k] = merged(b, v)
        elif _dicts(v) and _dicts(b) and len(v) == len(b):
            out[k] = [merged(x, y) for x, y in zip(b, v)]
        else:
            out[k] = v
    return out


def _dicts(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


# ---- distributed -------------------------------------------------------------------------------


def setup_distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


# ---- evaluation during training ----------------------------------------------------------------


@torch.no_grad()
def quick_eval(ema: Zonkey, heldout_batch, sentences: list[str], seed: int) -> dict:
    """Held-out loss terms on a fixed batch, reconstruction accuracy on a few sentences, samples."""
    from training.metrics import boundary_prf, cer, word_starts

    ema.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = ema(*heldout_batch)
    rec = {"heldout/loss": float(out.loss)}
    rec.update({f"heldout/{k}": v for k, v in out.flat_terms().items()})
    if ema.device.type != "cpu":  # the text-level API (segment, reconstruct, generate) runs on the CPU
        ema = copy.deepcopy(ema).float().cpu().eval()
    accs0, accs, f1s, segs = [], [], [], []
    for s in sentences:
        accs0.append(1 - cer(ema.reconstruct(s, level=0), s))
        accs.append(1 - cer(ema.reconstruct(s), s))
        segs.append(ema.segment(s))
        f1s.append(boundary_prf(segs[-1].levels[0].starts, word_starts(s), tolerance=1)["f1"])
    rec["heldout/recon_acc_l0"] = sum(accs0) / len(accs0)
    rec["heldout/recon_acc"] = sum(accs) / len(accs)
    rec["heldout/boundary_f1_l0"] = sum(f1s) / len(f1s)
    rec["sample/reconstruct"] = ema.reconstruct(sentences[0])
    rec["sample/segments"] = "|".join(segs[0].segments(0))
    rec["sample/generate"] = ema.generate(steps=20, seed=seed).text
    return rec


# ---- main ---------------------------------------------------------------------------------------


def use_bf16(cfg: TrainConfig, device: torch.device, run, rank: int) -> bool:
    """Whether to train under bf16 autocast: as `cfg.bf16` asks, except on a CPU without fast bf16
    (`bf16_slowdown` above BF16_MAX_SLOWDOWN), where it would slow every step tens of times; then the
    run trains in float32, says so on stderr and records it in the log (event `bf16_off`)."""
    if not cfg.bf16:
        return False
    slowdown = bf16_slowdown(device)
    if slowdown <= BF16_MAX_SLOWDOWN:
        return True
    run.log({"event": "bf16_off", "bf16_slowdown": slowdown})
    if rank == 0:
        print(
            f"bf16 autocast is off: on this CPU a bf16 matrix product is {slowdown:.0f}x slower than float32 "
            "(no native bf16 instructions), so this run trains in float32; pass --bf16=false to skip the check",
            file=sys.stderr,
        )
    return False


def main(cfg: TrainConfig, resume: bool = False) -> dict:
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    rank, world = setup_distributed(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", rank % torch.cuda.device_count())
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)

    # data
    mcfg = model_config(cfg)
    max_bytes = mcfg.levels[0].doc_len
    train_texts = [x for _, x in local_split("train")] if cfg.source == "local" else None
    if train_texts is None:
        from training.data import load_text_dataset

        ds = load_text_dataset("hub", "train", rank=rank, world_size=world)
        train_texts = [ex["text"] for _, ex in zip(range(20000), ds)]
    elif world > 1:
        train_texts = train_texts[rank::world]
    data = PackedBatches(train_texts, cfg.batch_size, max_bytes, seed=cfg.seed, balance=cfg.balance_batches)
    held = [x for _, x in local_split("heldout")]
    held_data = PackedBatches(held, 8, max_bytes, seed=1234)
    heldout_batch = tuple(t.to(device) for t in next(held_data))  # fixed for the whole run, beside the model
    sentences = heldout_sentences(held, 4, seed=0)

    # model, EMA, optimizer
    model = Zonkey(mcfg).to(device)
    if cfg.init_from and not resume:
        init_from_release(model, cfg.init_from, cfg.init_levels, grow=cfg.grow)
        if cfg.respread_rows:
            respread_embedding_rows(model.embed.weight, *parse_row_range(cfg.respread_rows), seed=cfg.seed)
        if cfg.soften_bos != 1.0:
            if cfg.soften_bos_level >= len(model.levels):
                raise ValueError(
                    f"TrainConfig.soften_bos_level={cfg.soften_bos_level}: the model has {len(model.levels)} levels"
                )
            soften_bos_output(model.levels[cfg.soften_bos_level].splitter, cfg.soften_bos)
    freeze_lower_levels(model, cfg.frozen_levels)  # on resume the weights come from state.pt
    restrict_training(model, cfg.train_only)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = adamw(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    objects = {"model": model, "ema": ema, "optimizer": opt, "data": data}
    run = RunRecord(out, mcfg.to_dict(), cfg, objects, cfg.max_bad_steps, writer=rank == 0)
    run.open(resume)
    ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # the only buffers are constant sinusoid tables: nothing to broadcast before each forward
        ddp = DistributedDataParallel(
            model, find_unused_parameters=True, forward_sync_buffers=False, gradient_as_bucket_view=True
        )

    if not resume:
        run.log(
            {
                "event": "start",
                "train_config": asdict(cfg),
                "params": sum(p.numel() for p in model.parameters()),
                "train_chunks": data.num_chunks,
                "fraction_chars_trained_on": data.fraction_used,
                "train_chars": data.chars_total,
                "world_size": world,
                "hardware": describe_hardware(device),
            }
        )
    else:
        run.log({"event": "resume", "step": run.step, "train_config": asdict(cfg)})
    stop_reason = "max_steps"
    bar = tqdm(total=cfg.max_steps, initial=run.step, disable=rank != 0, dynamic_ncols=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16(cfg, device, run, rank) else None
    model.train()

    ddp_state = {"minutes": 0.0, "chars": 0}  # under DDP: rank 0's clock and all ranks' characters, last step

    def minutes() -> float:
        """Wall-clock minutes of this run. Under DDP every rank uses rank 0's clock as of the previous
        step's all-reduce, so all take the same lr and the same decision to stop (a rank leaving the
        loop alone would hang the others)."""
        return run.minutes() if world == 1 else ddp_state["minutes"]

    def sync_after_backward(loss: torch.Tensor, n_chars: int) -> bool:
        """DDP: one all-reduce right after the gradient one (the ranks meet once per step): whether
        every rank's loss was finite (any non-finite one skips the step everywhere), the characters of
        all ranks, and rank 0's clock (both kept in `ddp_state`)."""
        import torch.distributed as dist

        own = run.minutes() if rank == 0 else 0.0
        nonfinite = float(not torch.isfinite(loss.detach()))
        sums = torch.tensor([nonfinite, n_chars, own], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        ddp_state["chars"], ddp_state["minutes"] = int(sums[1]), float(sums[2])
        return bool(sums[0] == 0)

    while run.step < cfg.max_steps:
        t0 = time.time()
        run_minutes = minutes()
        if cfg.max_minutes and run_minutes > cfg.max_minutes:
            stop_reason = "max_minutes"
            break
        ids, lengths = next(data)
        ids, lengths = ids.to(device), lengths.to(device)
        lr = get_lr(run.step, cfg, minutes=run_minutes)
        for g in opt.param_groups:
            g["lr"] = lr
        level0_only = run.step < cfg.upper_levels_from or 0 < cfg.upper_levels_until <= run.step
        n_lv = 1 if level0_only else None
        if autocast is not None:
            with autocast:
                fwd = ddp(ids, lengths, n_lv, cfg.frozen_levels)
        else:
            fwd = ddp(ids, lengths, n_lv, cfg.frozen_levels)
        loss = fwd.loss
        n_chars = int(lengths.sum())
        sync = (lambda: sync_after_backward(loss, n_chars)) if world > 1 else None
        event, gnorm = run.guard(loss, trainable, opt, cfg.grad_clip, after_backward=sync)
        if world > 1:
            n_chars = ddp_state["chars"]
        if event:
            run.log(
                {"event": event, "step": run.step, **({"terms": fwd.flat_terms()} if event == "nonfinite_loss" else {})}
            )
            if run.guard.exhausted:
                stop_reason = run.guard.reason
                break
            continue
        with torch.no_grad():
            decay = min(cfg.ema, (1 + run.step) / (10 + run.step))
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
        run.step += 1
        run.chars_seen += n_chars
        dt = time.time() - t0
        bar.update(1)
        loss_value = float(loss.detach())
        bar.set_postfix(loss=f"{loss_value:.3f}", cps=f"{n_chars / dt:,.0f}", segs=f"{fwd.stats['l0/segments']:.0f}")
        if run.step % cfg.log_every == 0 or run.step == 1:
            run.log(
                {
                    **run.counters(),
                    "lr": lr,
                    "loss": loss_value,
                    "grad_norm": float(gnorm),
                    "chars_per_sec": n_chars / dt,
                    "epoch": data.epoch,
                    **fwd.flat_terms(),
                    **fwd.stats,
                }
            )
        if run.step % cfg.ckpt_every == 0:
            run.checkpoint()
        if rank == 0 and run.step % cfg.eval_every == 0:
            run.log({"step": run.step, "split": "heldout", **quick_eval(ema, heldout_batch, sentences, cfg.seed)})
            model.train()
    bar.close()
    run.checkpoint()
    summary = {"event": "end", **run.counters(), "stop_reason": stop_reason}
    if rank == 0:
        summary.update({"split": "heldout", **quick_eval(ema, heldout_batch, sentences, cfg.seed)})
        run.log(summary)
        if cfg.export and run.step > 0:
            rel = out / "release"
            ema.save_pretrained(rel, dtype=EXPORT_DTYPES[cfg.export_dtype])
            shutil.copy(run.log_path, rel / "train_log.jsonl")
            if cfg.init_from:
                carry_stage_logs(Path(cfg.init_from), rel)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    if stop_reason.endswith("non-finite losses") or stop_reason.endswith("non-finite gradients"):
        print(f"training stopped: {stop_reason} at step {run.step}; see {run.log_path}", file=sys.stderr)
    return summary


def parse_args(argv=None) -> tuple[TrainConfig, bool]:
    ap = argparse.ArgumentParser(description="Train Zonkey.", epilog="Any TrainConfig field can be set as --key=value.")
    ap.add_argument("--config", required=True, help="training config JSON (training/configs/*.json)")
    ap.add_argument("--resume", action="store_true", help="continue the run in out_dir from its state.pt")
    args, rest = ap.parse_known_args(argv)
    return TrainConfig.from_json(args.config, **parse_overrides(rest)), args.resume


if __name__ == "__main__":
    c, r = parse_args()
    s = main(c, resume=r)
    print(json.dumps({k: v for k, v in s.items() if not k.startswith("sample")}, indent=1))
