"""The BLT-style entropy patcher as one object: the AR baseline's next-byte entropy plus the
global threshold calibrated by `evaluate_baselines` (stored in the baseline's metrics.json), so the
app can show it beside Zonkey's learned segmentation. It does not train or calibrate anything."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.baselines.ar import CharLM
from training.baselines.patchers import entropy_patch_starts

DEFAULT_THRESHOLD = 2.0  # bits; used only when metrics.json has no calibrated threshold


@dataclass(frozen=True)
class PatcherOutput:
    """starts: char offsets of patch starts; scores: (n_chars,) entropy (bits) at each char's first byte."""

    starts: list[int]
    scores: np.ndarray


class EntropyPatcher:
    def __init__(self, lm: CharLM, threshold: float, calibrated: bool):
        self.lm, self.threshold, self.calibrated = lm, threshold, calibrated

    @classmethod
    def from_pretrained(cls, path) -> "EntropyPatcher":
        lm = CharLM.from_pretrained(path)
        metrics = Path(path) / "metrics.json"
        threshold, calibrated = DEFAULT_THRESHOLD, False
        if metrics.exists():
            m = json.loads(metrics.read_text())
            if "entropy_global_threshold" in m:
                threshold, calibrated = float(m["entropy_global_threshold"]), True
        return cls(lm, threshold, calibrated)

    def segment(self, text: str) -> PatcherOutput:
        h = self.lm.next_byte_entropy(text)  # (n_bytes,)
        first = np.cumsum([0] + [len(ch.encode("utf-8")) for ch in text])[:-1]
        return PatcherOutput(entropy_patch_starts(h, self.threshold, text=text), np.asarray(h)[first])


def load_entropy_patcher(path) -> EntropyPatcher:
    return EntropyPatcher.from_pretrained(path)
