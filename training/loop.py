"""Pieces of a training loop shared by `training.train` (Zonkey) and `training.baselines.train_ar`
(the AR baseline): device choice, an optimizer step that never trains on a non-finite value, and the
run record (counters, atomic checkpoint with exact resume, JSONL log).

A step whose loss is non-finite is skipped before backward (in one process) or right after it (under
DDP, where every rank must run backward for the gradient all-reduce and the ranks then agree through
`after_backward`); a step whose clipped gradient norm is non-finite is skipped before the optimizer
update. Both are counted; `max_bad_steps` consecutive
skips exhaust the guard, and the loop stops with `stop_reason`.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from zonkey.checkpoint import CheckpointError

STATE_NAME = "state.pt"


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_slowdown(device: torch.device, n: int = 192, repeats: int = 5) -> float:
    """How many times slower a bf16 matrix product runs than a float32 one on `device` (best of
    `repeats` timings of an n x n product each); 1.0 on CUDA without measuring. A CPU with native
    bf16 instructions (AVX-512 BF16, AMX) runs it about as fast or faster; one without (AVX2 only)
    emulates it: on such a 2-core machine this check measured 16 times slower (a 1024 x 1024
    product: 90 times), so bf16 autocast would slow training instead of speeding it up."""
    if device.type != "cpu":
        return 1.0
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)

    def best(x: torch.Tensor) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(a.bfloat16()) / max(best(a), 1e-9)


def describe_hardware(device: torch.device) -> str:
    """Where a run trains, in words for the model card: the GPU's name, or the CPU and its thread
    count; with the torch version."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (CUDA)"
    else:
        where = f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s)"
    return f"{where}, torch {torch.__version__}"


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW with the fused (single-kernel) update where the parameters' device supports it (CPU
    and CUDA in torch 2.13). Same update rule and state-dict layout as the default implementation;
    measured about 3% more training throughput on 2 CPU cores (`training.bench`)."""
    params = list(params)
    dev = params[0].device.type if params else "cpu"
    return torch.optim.AdamW(params, fused=dev in ("cpu", "cuda"), **kwargs)


@dataclass
class GuardedStep:
    max_bad_steps: int
    run: int = 0  # consecutive skipped steps
    total: int = 0  # all skipped steps
    reason: str = ""

    def __call__(self, loss, params, opt, grad_clip: float, after_backward=None):
        """zero_grad; backward, clip and step unless a value is non-finite.

        after_backward: for DDP, a callable run right after backward that returns whether every
        rank's loss was finite (one all-reduce after the gradient one, so the ranks meet once per
        step); the gradients of a skipped step are discarded, never applied.
        Returns (event, grad_norm): event is None for a taken step, else "nonfinite_loss" or
        "nonfinite_grad" (grad_norm is then None or the non-finite norm)."""
        opt.zero_grad(set_to_none=True)
        if after_backward is None:
            ok = bool(torch.isfinite(loss.detach()))
            if ok:
                loss.backward()
        else:
            loss.backward()
            ok = bool(after_backward())
        if not ok:
            opt.zero_grad(set_to_none=True)
            return self._skip("nonfinite_loss", "losses"), None
        gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if not torch.isfinite(gnorm):
            opt.zero_grad(set_to_none=True)
            return self._skip("nonfinite_grad", "gradients"), gnorm
        self.run = 0
        opt.step()
        return None, gnorm

    def _skip(self, event: str, what: str) -> str:
        self.run, self.total = self.run + 1, self.total + 1
        self.reason = f"{self.run} consecutive non-finite {what}"
        return event

    @property
    def exhausted(self) -> bool:
        return self.run >= self.max_bad_steps


# ---- checkpoint and log ---------------------------------------------------------------------------


def save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path}: no training state to resume from.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad pickle, ... all mean "unusable"
        raise CheckpointError(f"{path}: truncated or corrupted training state ({type(exc).__name__}: {exc}).") from exc


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class RunRecord:
    """Where a run stands, and its files in `out`: the counters (steps taken, skipped steps in
    `guard`, characters seen, wall-clock of earlier processes), `state.pt` and `train_log.jsonl`.

    A checkpoint holds the model config (a resume must use the same one), the training config, the
    state dict of every object in `objects` under its key (model, EMA, optimizer, data position),
    the RNG states and the counters; `open(resume=True)` restores all of them, so the run continues
    exactly. Only the writing process (`writer`, rank 0 under DDP) writes files."""

    def __init__(self, out: Path, model_config: dict, train_config, objects: dict, max_bad_steps: int, writer=True):
        self.out, self.model_config, self.train_config = out, model_config, train_config
        self.objects, self.writer = objects, writer
        self.log_path = out / "train_log.jsonl"
        self.guard = GuardedStep(max_bad_steps)
        self.step, self.chars_seen, self.elapsed_before = 0, 0, 0.0
        self.t_start = time.time()

    def open(self, resume: bool) -> None:
        """Restore everything from state.pt (resume), or start a new log; starts this process's clock."""
        if resume:
            st = load_state(self.out / STATE_NAME)
            if st["config"] != self.model_config:
                raise CheckpointError(
                    f"{self.out / STATE_NAME}: model config differs from --config; resume with the same one."
                )
            for key, obj in self.objects.items():
                obj.load_state_dict(st[key])
            set_rng_state(st["rng"])
            self.step, self.guard.total = st["step"], st["bad_steps"]
            self.chars_seen, self.elapsed_before = st["chars_seen"], st["elapsed"]
        elif self.writer and self.log_path.exists():
            self.log_path.unlink()
        self.t_start = time.time()

    def minutes(self) -> float:
        """Wall-clock minutes of this process since `open`."""
        return (time.time() - self.t_start) / 60

    def counters(self) -> dict:
        """step, bad_steps, chars_seen and elapsed seconds over all processes of the run."""
        elapsed = self.elapsed_before + time.time() - self.t_start
        return {"step": self.step, "bad_steps": self.guard.total, "chars_seen": self.chars_seen, "elapsed": elapsed}

    def checkpoint(self) -> None:
        if not self.writer:
            return
        state = {"config": self.model_config, "train_config": asdict(self.train_config)}
        state.update({key: obj.state_dict() for key, obj in self.objects.items()})
        save_state(self.out / STATE_NAME, {**state, "rng": rng_state(), **self.counters()})

    def log(self, rec: dict) -> None:
        if self.writer:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
