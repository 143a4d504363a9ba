"""Staged training: start a run from an earlier release and choose what it trains.

The shipped checkpoints are trained in stages (training/README.md): a stage copies some levels
from the previous stage's release (`init_from_release`), may re-spread collapsed embedding rows
(`respread_embedding_rows`), and freezes what it should not change (`freeze_lower_levels`,
`restrict_training`). Its release carries the earlier stages' logs (`carry_stage_logs`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from zonkey import Zonkey, ZonkeyConfig
from zonkey.checkpoint import CheckpointError, load_tensors, read_config, stage_logs

GROWABLE = ("n_latents", "seg_len", "compressor_layers", "draft_layers", "denoiser_layers")  # what `grow` may raise
_STACK_BLOCK = re.compile(r"\.(?:compressor\.encoder|decoder\.draft|decoder\.denoiser)\.blocks\.\d+\.")
_BLOCK_OUTPUTS = (".attn.o.weight", ".attn.o.bias", ".ff.2.weight", ".ff.2.bias")  # what a block adds to its input


def init_from_release(model: Zonkey, init_from: str | Path, init_levels: int = 0, grow: bool = False) -> None:
    """Copy the embedding and the lowest `init_levels` levels (0 = all) from the release
    directory `init_from`; the other levels keep their fresh initialisation. With `grow`, a level
    may have more latents (C) or a longer window (S) than the checkpoint's (`grow_level_tensors`), or
    deeper compressor, draft or denoiser stacks (`add_identity_blocks`)."""
    src = Path(init_from)
    if not src.is_dir():
        raise CheckpointError(f"{src}: init_from must be a release directory (config.json + safetensors).")
    src_cfg = read_config(src, ZonkeyConfig.from_dict)
    k = init_levels or model.num_levels
    if k > min(model.num_levels, len(src_cfg.levels)):
        raise CheckpointError(
            f"{src}: init_levels={k} but the checkpoint has {len(src_cfg.levels)} levels "
            f"and the model {model.num_levels}"
        )
    for i in range(k):
        a, b = src_cfg.levels[i].architecture(), model.config.levels[i].architecture()
        diff = {f: (a[f], b[f]) for f in a if a[f] != b[f]}
        growable = grow and diff and all(f in GROWABLE and a[f] < b[f] for f in diff)
        if diff and not growable:
            hint = "" if grow else f" (grow=True widens {' and '.join(GROWABLE)})"
            raise CheckpointError(
                f"{src}: level {i} architecture differs from this run's model config "
                f"(field: (checkpoint, run)): {diff}{hint}"
            )
    state = load_tensors(src)
    keep = ("embed.",) + tuple(f"levels.{i}." for i in range(k))
    picked = {n: t for n, t in state.items() if n.startswith(keep)}
    if grow:
        target = model.state_dict()
        grow_level_tensors(picked, target)
        add_identity_blocks(picked, target, keep)
    missing = [n for n in model.load_state_dict(picked, strict=False).missing_keys if n.startswith(keep)]
    if missing:
        raise CheckpointError(f"{src}: missing tensors {missing[:5]}")


@torch.no_grad()
def grow_level_tensors(state: dict, target: dict, seed: int = 0) -> None:
    """Widen, in place, the tensors of `state` that are shorter along dim 0 than their namesakes in
    `target`: a level's CLS latents (`compressor.cls`, (C, d)) and decoder position queries
    (`decoder.queries`, (S, d)). The old rows are kept. A new latent row i starts as old row
    i mod C plus noise (0.1 of the rows' std), so the extra latents begin as near-copies that
    training pulls apart; a new position row starts as the last old position plus the same noise
    (positions past the old S continue from the last one). Any other shape difference is an error.

    Why: a longer level-1 window (S) with more latents per segment (C) lets level-1 segments
    grow to sentence length; growing the trained level keeps what it learned, where a fresh
    level 1 at this scale takes hours to reconstruct at all (zonkey-small's stage 2)."""
    gen = torch.Generator().manual_seed(seed)
    for name, old in list(state.items()):
        new_shape = target[name].shape if name in target else old.shape
        if old.shape == new_shape:
            continue
        grows_rows = old.dim() == 2 and old.shape[1] == new_shape[1] and old.shape[0] < new_shape[0]
        if not (name.endswith(("compressor.cls", "decoder.queries")) and grows_rows):
            raise CheckpointError(f"{name}: shape {tuple(old.shape)} cannot grow to {tuple(new_shape)}")
        n0, d = old.shape
        src = torch.arange(n0, new_shape[0]) % n0 if name.endswith("cls") else torch.full((new_shape[0] - n0,), n0 - 1)
        noise = 0.1 * old.float().std() * torch.randn(len(src), d, generator=gen)
        state[name] = torch.cat([old, (old[src].float() + noise).to(old.dtype)])


@torch.no_grad()
def add_identity_blocks(state: dict, target: dict, prefixes: tuple[str, ...]) -> None:
    """Add to `state`, in place, the transformer blocks that a deeper compressor, draft or denoiser
    stack of `target` has and `state` lacks (names under `prefixes`): each starts from `target`'s
    fresh initialisation with its two residual outputs (attention's `o`, the feed-forward's last
    layer) zeroed, so it adds nothing to its input. New blocks come after the old ones.

    Why: the grown model then computes exactly what the checkpoint did, and training starts the new
    layers from there; re-training a level at this scale from scratch takes hours (zonkey-small's
    stage 2). The zeroed outputs get gradient at once (their inputs are not zero), the rest of the
    block as soon as they move."""
    for name, fresh in target.items():
        if name in state or not name.startswith(prefixes) or not _STACK_BLOCK.search(name):
            continue
        state[name] = torch.zeros_like(fresh) if name.endswith(_BLOCK_OUTPUTS) else fresh.clone()


def parse_row_range(spec: str) -> tuple[int, int]:
    """ "lo-hi" -> (lo, hi), inclusive byte ids with 0 <= lo < hi <= 255."""
    try:
        lo, hi = (int(v) for v in spec.split("-"))
    except ValueError:
        raise ValueError(f"respread_rows={spec!r} must look like 'lo-hi' (e.g. '128-255')") from None
    if not 0 <= lo < hi <= 255:
        raise ValueError(f"respread_rows={spec!r}: need 0 <= lo < hi <= 255")
    return lo, hi


def check_soften_factor(factor: float) -> float:
    """The factor of `soften_bos_output` must be in (0, 1] (1 leaves the head as it is)."""
    if not 0 < factor <= 1:
        raise ValueError(f"soften_bos={factor} must be in (0, 1]")
    return factor


@torch.no_grad()
def soften_bos_output(head, factor: float) -> None:
    """Multiply the output layer of a BOS head by `factor` (weight and bias), keeping its features.

    Why: the level-0 BOS logits of zonkey-small saturated early in its first stage (median -66
    where no segment starts, +14..16 where one does), so sigmoid gives no gradient and no later
    loss change can move a boundary. A factor of about 0.1 brings the logits back into the range
    where the losses act, and keeps their order: the starts stay on the space before each word,
    where they were. (Re-initialising the layer instead lets the boundaries settle on another
    offset: one trial put them on the last letter of each word.)"""
    check_soften_factor(factor)
    head.out.weight.mul_(factor)
    head.out.bias.mul_(factor)


@torch.no_grad()
def respread_embedding_rows(weight: torch.Tensor, lo: int, hi: int, seed: int) -> None:
    """Re-spread rows lo..hi of a (v, d) embedding in place around their mean direction c:
    row_i <- |row_i| * normalize(c + g_i), g_i ~ N(0, I/d) seeded, so each row keeps its norm,
    its cosine to c is about 1/sqrt(2) and two rows have a cosine of about 1/2.

    Why: the output logits are cosines to these tied rows, and rare rows (multi-byte UTF-8, 0.4 %
    of the training bytes) all receive the same "not me" gradient, so they drift onto one direction
    (nearest-neighbour cosine 0.98 in zonkey-small before its stage 8) and the compressor can no longer
    tell them apart. The mean direction keeps what they share ("a non-ASCII byte"); the noise makes
    them distinguishable again. Freeze the embedding afterwards (train_only) so they stay apart."""
    rows = weight[lo : hi + 1].float()  # (k, d)
    norms = rows.norm(dim=1, keepdim=True)  # (k, 1)
    c = F.normalize(F.normalize(rows, dim=1).mean(0), dim=0)  # (d,)
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(rows.shape, generator=gen) / rows.shape[1] ** 0.5  # (k, d), |g_i| ~ 1
    new = F.normalize(c + g, dim=1) * norms
    weight[lo : hi + 1] = new.to(weight.dtype)


def carry_stage_logs(src: Path, rel: Path) -> None:
    """Copy the logs of the stages behind `init_from` into a release as train_log_stage{i}.jsonl."""
    for i, p in enumerate(stage_logs(src), 1):
        shutil.copy(p, rel / f"train_log_stage{i}.jsonl")


def freeze_lower_levels(model: Zonkey, n: int) -> None:
    """No gradient for the embedding and the lowest n levels (n = 0: nothing frozen)."""
    for module in [model.embed, *model.levels[:n]] if n else []:
        for p in module.parameters():
            p.requires_grad_(False)


def restrict_training(model: Zonkey, train_only: str) -> None:
    """Freeze every parameter whose name starts with none of the comma-separated prefixes in
    `train_only` ("" = leave everything as it is). A prefix that names no parameter is an error:
    a typo would otherwise freeze the whole model silently."""
    prefixes = [p.strip() for p in train_only.split(",") if p.strip()]
    if not prefixes:
        return
    params = dict(model.named_parameters())
    keep = {pre: {n for n in params if n == pre or n.startswith(pre + ".")} for pre in prefixes}
    for pre, names in keep.items():
        if not names:
            top = sorted({".".join(n.split(".")[:3]) for n in params})
            raise ValueError(f"train_only prefix {pre!r} names no parameter; parameter groups are: {', '.join(top)}")
    trained = set().union(*keep.values())
    for n, p in params.items():
        if n not in trained:
            p.requires_grad_(False)
