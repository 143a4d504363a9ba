"""Output dataclasses of the public API. Plain Python / numpy fields, JSON-serialisable via
`to_dict()`, so the app, the CLI and gradio_client can pass them around unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class LevelSegmentation:
    """Segmentation of a text at one level.

    char_bos: (n_chars,) float, P(a segment of this level begins at char i): the highest BOS
        probability among the units the char holds (its bytes at level 0, the level-0 segments
        starting at it above), 0 at characters where no unit of the level starts. A start at a
        char at or below `threshold` is a forced one (position 0, or the coverage rule).
    starts: char offsets where segments begin (decision rule: position 0, every BOS prob above
        `threshold`, plus the forced starts that keep every segment at most `seg_len` units long).
    """

    level: int
    char_bos: np.ndarray
    starts: list[int]
    threshold: float

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "char_bos": [round(float(p), 5) for p in self.char_bos],
            "starts": list(self.starts),
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class Segmentation:
    text: str
    levels: list[LevelSegmentation]

    def segments(self, level: int) -> list[str]:
        """The text cut at this level's starts (concatenation gives back the text)."""
        starts = self.levels[level].starts
        ends = starts[1:] + [len(self.text)]
        return [self.text[s:e] for s, e in zip(starts, ends)]

    def to_dict(self) -> dict:
        return {"text": self.text, "levels": [lv.to_dict() for lv in self.levels]}


@dataclass(frozen=True)
class TrajectoryStep:
    """One sampler step, as reported to callbacks and stored in trajectories.

    text: the whole text decoded at this step (context plus the current fill).
    filled: half-open (start, end) of each filled region in `text`.
    existence: existence probability of each slot of the canvas being denoised at `level`
        (word slots at level 1, character slots at level 0).
    """

    step: int
    t: float
    level: int
    text: str
    filled: list[tuple[int, int]]
    existence: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "t": round(float(self.t), 5),
            "level": self.level,
            "text": self.text,
            "filled": [list(f) for f in self.filled],
            "existence": [round(float(p), 4) for p in self.existence],
        }


@dataclass(frozen=True)
class InfillResult:
    """text: the input with every span filled; context outside the spans is byte-identical.
    filled: (start, end) of each filled region in `text`. level: the level used per span."""

    text: str
    filled: list[tuple[int, int]]
    trajectory: list[TrajectoryStep]
    levels: list[int]
    seed: int
    steps: int
    temperature: float = 1.0

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "filled": [list(f) for f in self.filled],
            "levels": list(self.levels),
            "seed": self.seed,
            "steps": self.steps,
            "temperature": self.temperature,
            "trajectory": [s.to_dict() for s in self.trajectory],
        }


@dataclass(frozen=True)
class GenerationResult:
    text: str
    trajectory: list[TrajectoryStep]
    seed: int
    steps: int
    temperature: float = 1.0
    refine: float = 0.0

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "seed": self.seed,
            "steps": self.steps,
            "temperature": self.temperature,
            "refine": self.refine,
            "trajectory": [s.to_dict() for s in self.trajectory],
        }


@dataclass
class ForwardOutput:
    """Training forward of `Zonkey`.

    loss: scalar, the weighted sum of every term of every level.
    terms: terms[level][name] = unweighted scalar loss term (tensor, with grad).
    stats: float diagnostics (BOS rate per level, segments, dropped segments, ...).
    """

    loss: torch.Tensor
    terms: list[dict[str, torch.Tensor]]
    stats: dict[str, float]

    def flat_terms(self) -> dict[str, float]:
        return {f"l{lv}/{k}": float(v.detach()) for lv, d in enumerate(self.terms) for k, v in d.items()}
