"""Configuration dataclasses (frozen, validated, JSON round-trip) and the named presets.

`LevelConfig` holds one hierarchy level; `LossWeights` the explicit weight of every loss term of
METHOD §10 (the total loss is sum_level sum_term weight * term); `ZonkeyConfig` the whole model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Self

FORMAT = "zonkey-config v1"
SAME_COS = 1 - 1e-5  # a contrastive negative with a larger cosine to the target is the target itself (P8)
# LevelConfig fields that only set a loss: a release trained with other values loads all the same
LOSS_ONLY_FIELDS = frozenset(
    {
        "compression_penalty",
        "target_rate",
        "short_len",
        "mlm_negatives",
        "mlm_same_cos",
        "mlm_logit_scale",
        "mlm_denoiser",
        "contrastive_negatives",
        "contrastive_same_cos",
        "contrastive_logit_scale",
    }
)


@dataclass(frozen=True)
class LevelConfig:
    d_model: int = 64  # width of this level's vectors (level l+1 has n_latents * d_model)
    n_latents: int = 4  # C: latent vectors per segment
    seg_len: int = 16  # S: window length (longest segment, in units of this level)
    doc_len: int = 512  # L: document buffer in units of this level (chars at level 0)
    n_heads: int = 4
    compressor_layers: int = 2
    draft_layers: int = 1  # decoder draft pass (plain attention)
    denoiser_layers: int = 2  # decoder refine pass (Probabilistic Attention)
    splitter_window: int = 17  # local attention window of the BOS head (odd)
    ff_ratio: int = 4
    compression_penalty: float = 0.03  # lambda of the compression penalty
    target_rate: float = 0.0  # r*: BOS rate below which compression is free; 0 -> 1/seg_len (release);
    # the presets use C/S at level 0 (as the original code later did): no pressure towards segments longer
    # than words, so a local, content-based BOS head settles on recurring word starts
    short_len: int = 0  # C of the short-segment loss (segments at least this long); 0 = n_latents (the method's C).
    # A loss setting only: a release trained with another value loads into the same architecture
    mlm: bool = False  # masked-vector loss on this level's inputs (level >= 1 in the release)
    mlm_negatives: int = 32
    mlm_same_cos: float = SAME_COS  # MLM negatives with a larger cosine to the target are masked: by default only
    # the target itself (P8); lower (e.g. 0.95) also masks other occurrences of the same word. Not in the method
    mlm_logit_scale: float = 0.0  # MLM logits: 0 = the release's 2*atanh(cos); > 0 = this times cos. Not in the method
    mlm_denoiser: bool = False  # MLM term = mean of the compressor variant (the release) and a denoiser variant: the
    # masked window compressed, noised to t ~ U(0, 1) and decoded (the original code's HEAD; METHOD §10.8, §16).
    # Measured on `small` (stage 34 in training/cards/zonkey-small-stages.md): it cost the decoder its sampling
    contrastive_negatives: int = 63  # level >= 1 InfoNCE negatives (reconstruction and the stitcher's sequence terms)
    contrastive_same_cos: float = SAME_COS  # as mlm_same_cos, for those terms. Not in the method
    contrastive_logit_scale: float = 0.0  # as mlm_logit_scale, for those terms. Not in the method

    def __post_init__(self):
        for name in ("d_model", "n_latents", "seg_len", "doc_len", "n_heads", "compressor_layers", "denoiser_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"LevelConfig.{name}={getattr(self, name)} must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"LevelConfig.d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("LevelConfig: head dim (d_model / n_heads) must be even for sinusoidal positions")
        if self.splitter_window % 2 == 0:
            raise ValueError(f"LevelConfig.splitter_window={self.splitter_window} must be odd")
        if self.seg_len < self.n_latents:
            raise ValueError(f"LevelConfig.seg_len={self.seg_len} must be >= n_latents={self.n_latents}")
        for term in ("mlm", "contrastive"):
            same, scale = getattr(self, f"{term}_same_cos"), getattr(self, f"{term}_logit_scale")
            if not 0 < same <= 1:
                raise ValueError(f"LevelConfig.{term}_same_cos={same} must be in (0, 1]")
            if scale < 0:
                raise ValueError(f"LevelConfig.{term}_logit_scale={scale} must be >= 0 (0 = 2*atanh(cos))")
        if not 0 <= self.short_len <= self.seg_len:
            raise ValueError(f"LevelConfig.short_len={self.short_len} must be in 0..seg_len={self.seg_len}")

    @property
    def rate_target(self) -> float:
        return self.target_rate if self.target_rate > 0 else 1.0 / self.seg_len

    @property
    def min_segment(self) -> int:
        """C of the short-segment loss."""
        return self.short_len or self.n_latents

    def architecture(self) -> dict:
        """The fields that shape the parameters (two levels with equal architecture() share weights);
        loss settings (penalty, target rate, short_len, negatives) are left out."""
        return {k: v for k, v in asdict(self).items() if k not in LOSS_ONLY_FIELDS}


@dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term (METHOD §10). Defaults are the release weights divided by the
    release's number of averaged terms (14), so the sum matches the release's averaging (P1),
    except the two existence terms (see their comments)."""

    clean_recon: float = 1.0 / 14
    dirty_recon: float = 1.0 / 14
    clean_bos: float = 1.0 / 14  # release: 0.05 / 14; at 0.05 the decoder's existence stayed a smooth
    dirty_bos: float = 1.0 / 14  # decay instead of the label's step, so stitch offsets and fill lengths were wrong
    stitch_pos: float = 1.0 / 14
    stitch_seq: float = 1.0 / 14
    null_pos: float = 1.0 / 14
    null_seq: float = 1.0 / 14
    mlm: float = 1.0 / 14
    collapse: float = 1.0 / 14
    patch: float = 10.0 / 14
    short: float = 10.0 / 14
    compression: float = 1.0 / 14  # times the level's compression_penalty (lambda)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class JsonConfig:
    """`to_json` / `from_json` for a config dataclass that defines `to_dict` / `from_dict`."""

    def to_json(self, path: str | Path | None = None) -> str:
        s = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(s + "\n")
        return s

    @classmethod
    def from_json(cls, path_or_str: str | Path) -> Self:
        """Load from a JSON file path or a JSON string."""
        s = str(path_or_str)
        text = s if s.lstrip().startswith("{") else Path(s).read_text()
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class ZonkeyConfig(JsonConfig):
    levels: tuple[LevelConfig, ...] = (LevelConfig(), LevelConfig(d_model=256, doc_len=128, mlm=True))
    vocab_size: int = 256  # UTF-8 bytes: every Unicode string round-trips (no aliasing, P15)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    clean_t_max: float = 0.08  # clean pass noise: t0 = clean_t_max * Beta(1, 3)
    dirty_step: float = 0.02  # the previous estimate of the dirty pass is at t + dirty_step
    relax_min: float = 0.5  # floor of t* in the segment-relaxed dirty target (0 = release)
    dirty_from_estimate: float = 0.0  # levels >= 1: share of windows whose dirty pass decodes the re-compressed
    # previous estimate (what the sampler feeds the decoder) instead of z1; 0 = the release's dirty pass
    mlm_ratio: float = 0.2
    infill_threshold: float = 0.5  # existence cut-off when decoding
    name: str = "custom"

    def __post_init__(self):
        if len(self.levels) < 1:
            raise ValueError("ZonkeyConfig.levels must hold at least one LevelConfig")
        for i in range(len(self.levels) - 1):
            lo, hi = self.levels[i], self.levels[i + 1]
            if hi.d_model != lo.n_latents * lo.d_model:
                raise ValueError(
                    f"level {i + 1} d_model={hi.d_model} must equal level {i} n_latents*d_model="
                    f"{lo.n_latents * lo.d_model} (a flattened latent is one input vector of the next level)"
                )
        if self.vocab_size != 256:
            raise ValueError("ZonkeyConfig.vocab_size must be 256 (UTF-8 bytes)")
        if not 0.0 <= self.dirty_from_estimate <= 1.0:
            raise ValueError(f"ZonkeyConfig.dirty_from_estimate={self.dirty_from_estimate} must be in [0, 1]")

    # ---- JSON round trip ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = [asdict(lv) for lv in self.levels]
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict) -> "ZonkeyConfig":
        d = dict(d)
        fmt = d.pop("format", None)
        if fmt != FORMAT:
            raise ValueError(f"config format is {fmt!r}; expected {FORMAT!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        lv_known = {f.name for f in fields(LevelConfig)}
        levels = []
        for lv in d.get("levels", []):
            bad = set(lv) - lv_known
            if bad:
                raise ValueError(f"unknown level config keys: {sorted(bad)}")
            levels.append(LevelConfig(**lv))
        d["levels"] = tuple(levels)
        lw = d.get("loss_weights", {})
        bad = set(lw) - {f.name for f in fields(LossWeights)}
        if bad:
            raise ValueError(f"unknown loss weight keys: {sorted(bad)}")
        d["loss_weights"] = LossWeights(**lw)
        return cls(**d)

    @classmethod
    def preset(cls, name: str) -> "ZonkeyConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]

    def replace(self, **kw) -> "ZonkeyConfig":
        return replace(self, **kw)


PRESETS: dict[str, ZonkeyConfig] = {
    # seconds-fast tests; never shipped
    "tiny": ZonkeyConfig(
        levels=(
            LevelConfig(
                d_model=32,
                n_latents=4,
                seg_len=12,
                doc_len=128,
                n_heads=2,
                compressor_layers=1,
                denoiser_layers=1,
                splitter_window=9,
                target_rate=4 / 12,
            ),
            LevelConfig(
                d_model=128,
                n_latents=4,
                seg_len=12,
                doc_len=48,
                n_heads=4,
                compressor_layers=1,
                denoiser_layers=1,
                splitter_window=9,
                mlm=True,
                mlm_negatives=16,
                contrastive_negatives=15,
            ),
        ),
        name="tiny",
    ),
    # trained on 2 CPU cores (METHOD §18.3 CPU-small)
    "small": ZonkeyConfig(
        levels=(
            LevelConfig(d_model=64, n_latents=4, seg_len=16, doc_len=512, n_heads=4, target_rate=0.25),
            LevelConfig(d_model=256, n_latents=4, seg_len=16, doc_len=128, n_heads=4, mlm=True),
        ),
        name="small",
    ),
    # one GPU, sized so a bf16 release fits in three 15 MB shards (20 M parameters): `small`'s windows
    # and buffers, twice its width, deeper stacks
    "base": ZonkeyConfig(
        levels=(
            LevelConfig(
                d_model=128,
                n_latents=4,
                seg_len=16,
                doc_len=512,
                n_heads=4,
                compressor_layers=4,
                draft_layers=1,
                denoiser_layers=4,
                target_rate=0.25,
            ),
            LevelConfig(
                d_model=512,
                n_latents=4,
                seg_len=16,
                doc_len=128,
                n_heads=8,
                compressor_layers=2,
                draft_layers=1,
                denoiser_layers=2,
                ff_ratio=2,
                mlm=True,
            ),
        ),
        name="base",
    ),
}
