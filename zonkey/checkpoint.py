"""save_pretrained / from_pretrained: a directory with `config.json` and `model.safetensors`
(no pickles). Loading validates the config (format, keys, values), the tensor names and shapes
(strict), and turns every failure into a `CheckpointError` naming the file and the problem.
Weights larger than one file limit are sharded as `model-00001-of-0000N.safetensors` with an
index `model.safetensors.index.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from zonkey.config import ZonkeyConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
MAX_SHARD_BYTES = 15 * 1024 * 1024  # keep every file under 16 MB
DEFAULT_DIRS = ("assets/models/zonkey-base", "assets/models/zonkey-small")
LOG_NAME = "train_log.jsonl"  # the log of the training stage that wrote the weights


def stage_logs(d) -> list[Path]:
    """Training logs of a release directory, oldest stage first: train_log_stage1.jsonl, ...
    (earlier stages, carried by staged training), then train_log.jsonl when it exists."""
    d = Path(d)
    earlier = sorted(d.glob("train_log_stage*.jsonl"), key=lambda p: int(p.stem.rsplit("stage", 1)[1] or 0))
    return earlier + ([d / LOG_NAME] if (d / LOG_NAME).exists() else [])


class CheckpointError(ValueError):
    """A checkpoint directory is missing, truncated, corrupted or does not match its config."""


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_pretrained(model, path, dtype: torch.dtype | None = None) -> None:
    """config.json + model.safetensors (shards under 16 MB with an index when larger). `dtype`
    (e.g. torch.bfloat16) stores floating tensors in that type, halving a large release; loading
    casts them back to the model's parameter types."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    _atomic_write(path / CONFIG_NAME, lambda p: p.write_text(model.config.to_json() + "\n"))
    shards, cur, size = [], {}, 0
    for k in sorted(state):
        nbytes = state[k].numel() * state[k].element_size()
        if cur and size + nbytes > MAX_SHARD_BYTES:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = state[k]
        size += nbytes
    shards.append(cur)
    meta = {"format": "pt", "zonkey": "v1"}
    for old in list(path.glob("model*.safetensors")) + [path / INDEX_NAME]:
        if old.exists():
            old.unlink()
    if len(shards) == 1:
        _atomic_write(path / WEIGHTS_NAME, lambda p: save_file(shards[0], str(p), metadata=meta))
        return
    index = {}
    for i, sh in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _atomic_write(path / name, lambda p, sh=sh: save_file(sh, str(p), metadata=meta))
        index.update({k: name for k in sh})
    _atomic_write(path / INDEX_NAME, lambda p: p.write_text(json.dumps({"weight_map": index}, indent=1)))


def _resolve(path) -> Path:
    if path is None:
        root = Path(__file__).resolve().parent.parent
        for d in DEFAULT_DIRS:
            if (root / d / CONFIG_NAME).exists():
                return root / d
        raise CheckpointError(
            f"no default checkpoint found (looked for {', '.join(DEFAULT_DIRS)}); pass a directory that holds "
            f"{CONFIG_NAME} and {WEIGHTS_NAME}."
        )
    p = Path(path)
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p} is a file; pass the checkpoint directory that holds {CONFIG_NAME}.")
    if p.is_absolute() or str(path).startswith(".") or str(path).count("/") != 1:
        raise CheckpointError(f"{p}: checkpoint directory does not exist.")
    try:  # a Hub id, when huggingface_hub can reach it (HF_HUB_OFFLINE=1 makes this fail fast)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path)))
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one actionable message
        raise CheckpointError(f"{path}: not a local directory and not downloadable from the Hub ({exc}).") from exc


def load_tensors(d: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = [d / WEIGHTS_NAME]
    if (d / INDEX_NAME).exists():
        try:
            wm = json.loads((d / INDEX_NAME).read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"{d / INDEX_NAME}: unreadable shard index ({exc}).") from exc
        files = [d / f for f in sorted(set(wm.values()))]
    state = {}
    for f in files:
        if not f.exists():
            raise CheckpointError(f"{f}: missing weights file.")
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{f}: truncated or corrupted safetensors file ({exc}).") from exc
    return state


def read_config(d: Path, from_dict, what: str = "config"):
    """Parse `d/config.json` with `from_dict`; any failure is a CheckpointError naming the file."""
    cfg_path = d / CONFIG_NAME
    if not cfg_path.exists():
        raise CheckpointError(f"{cfg_path}: missing config file.")
    try:
        return from_dict(json.loads(cfg_path.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{cfg_path}: invalid {what} ({exc}).") from exc


def load_weights(model, d: Path):
    """Load the safetensors of directory `d` into `model`: strict names and shapes, finite values;
    every mismatch is a CheckpointError naming the directory and the tensor. Returns the model."""
    state = load_tensors(d)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{d}: weights do not match {CONFIG_NAME}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}."
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(
                f"{d}: tensor {k} has shape {tuple(v.shape)}, config expects {tuple(expected[k].shape)}."
            )
        if not torch.isfinite(v.float()).all():
            raise CheckpointError(f"{d}: tensor {k} holds non-finite values.")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return model


def from_pretrained(cls, path=None, device="cpu"):
    d = _resolve(path)
    model = cls(read_config(d, ZonkeyConfig.from_dict))
    return load_weights(model, d).to(device).eval()
