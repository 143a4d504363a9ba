"""`ModelService`: the one model instance the app shares, and the way the UI and the API use it.

It resolves and loads the checkpoint, runs `segment` / `infill` / `generate`, and streams a
sampler's trajectory: the model call runs in a worker thread whose callback puts each
`TrajectoryStep` on a queue, and `infill_stream` / `generate_stream` yield the steps as they
arrive, then a `Finished` holding the result and the boundaries of every step (for the replay).
It never imports gradio; the callbacks translate its errors into UI messages.

Concurrency: gradio's queue runs one model listener at a time (one `concurrency_id`); a lock here
also serialises direct users of the service and a worker that is still winding down after its
client went away. Every call passes its own seed, and the model draws from a per-call generator,
so a result does not depend on other traffic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app import settings
from app.modelcard import ModelCard, compare_metrics, load_card, read_json
from zonkey.outputs import GenerationResult, InfillResult, Segmentation, TrajectoryStep
from zonkey.validation import ZonkeyInputError

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """No checkpoint could be loaded; the message says where the app looked and what to do."""


class StreamCancelled(Exception):
    """Raised inside the sampler callback when the consumer of a stream has gone away."""


@dataclass(frozen=True)
class Boundaries:
    """Learned boundaries of one text: per level, P(segment begins at char i) and the starts."""

    char_bos: list[np.ndarray]
    starts: list[list[int]]

    @classmethod
    def of(cls, seg: Segmentation) -> Boundaries:
        return cls([np.asarray(lv.char_bos, dtype=float) for lv in seg.levels], [list(lv.starts) for lv in seg.levels])


@dataclass(frozen=True)
class Finished:
    """The end of a stream: the result, the boundaries of each distinct step text, the wall time."""

    result: InfillResult | GenerationResult
    boundaries: dict[str, Boundaries]
    elapsed_s: float


# --- resolving the checkpoint -------------------------------------------------------------------


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve_model_dir(env: dict | None = None) -> tuple[Path | None, str]:
    """The checkpoint directory to load and why; (None, reason) when there is none.

    Order: `$ZONKEY_MODEL` (a directory; if set and invalid this is an error, not a fallback),
    then `assets/models/zonkey-base` when its metrics.json beats zonkey-small's on most shared
    metrics (or small has no checkpoint), then `assets/models/zonkey-small`."""
    env = os.environ if env is None else env
    override = env.get(settings.MODEL_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_absolute():
            path = settings.REPO_ROOT / path
        if _is_checkpoint(path):
            return path, f"${settings.MODEL_ENV}"
        return None, (
            f"${settings.MODEL_ENV}={override} is not a checkpoint directory "
            "(it needs config.json and model.safetensors). Unset it to use the shipped model."
        )
    small, base = settings.SMALL_DIR, settings.BASE_DIR
    if _is_checkpoint(base):
        if not _is_checkpoint(small):
            return base, "the shipped base checkpoint"
        mb, _ = read_json(base / "metrics.json")
        ms, _ = read_json(small / "metrics.json")
        if mb and ms and compare_metrics(mb, ms) > 0:
            return base, "the shipped base checkpoint (its metrics beat zonkey-small)"
    if _is_checkpoint(small):
        return small, "the shipped small checkpoint"
    return None, (
        "No trained checkpoint was found: looked for assets/models/zonkey-small (and zonkey-base) "
        f"and ${settings.MODEL_ENV}. Train one with the training pipeline (see README) or set "
        f"{settings.MODEL_ENV} to a checkpoint directory."
    )


def display_path(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(settings.REPO_ROOT))
    except ValueError:
        return Path(path).name


# --- the service --------------------------------------------------------------------------------


class ModelService:
    """One shared model behind a lock; `error` is set (and calls raise) when none could be loaded."""

    def __init__(self, model=None, *, name: str = "", model_dir: Path | None = None, error: str | None = None):
        self.model = model
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.name = name or (self.model_dir.name if self.model_dir else "model")
        self.error = error if model is None else None
        if model is None and self.error is None:
            self.error = "No model is loaded."
        self._lock = threading.Lock()
        self._card: ModelCard | None = None

    @classmethod
    def from_env(cls, env: dict | None = None) -> ModelService:
        """Load the checkpoint `resolve_model_dir` picks; never raises (errors become `error`)."""
        path, why = resolve_model_dir(env)
        if path is None:
            return cls(error=why)
        return cls.load(path, why=why)

    @classmethod
    def load(cls, path: Path, *, name: str = "", why: str = "") -> ModelService:
        """Load the checkpoint in `path` (named `name`, default its folder's name); never raises: a
        checkpoint that fails to load gives a service whose `error` names the folder and the problem."""
        path = Path(path)
        try:
            from zonkey import Zonkey

            model = Zonkey.from_pretrained(str(path))
        except Exception as e:  # a broken checkpoint must not take the app down
            log.exception("loading %s failed", path)
            return cls(name=name, model_dir=path, error=f"Could not load the checkpoint {display_path(path)}: {e}")
        log.info("loaded %s%s", path, f" ({why})" if why else "")
        return cls(model, name=name or path.name, model_dir=path)

    @classmethod
    def tiny(cls, seed: int = 0) -> ModelService:
        """A `tiny` model with random weights drawn from `seed` (for tests and UI development)."""
        import torch

        from zonkey import Zonkey, ZonkeyConfig

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Zonkey(ZonkeyConfig.preset("tiny"))
        if hasattr(model, "eval"):
            model.eval()
        return cls(model, name=f"tiny (random weights, seed {seed})")

    # --- facts -----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def config(self):
        return getattr(self.model, "config", None)

    @property
    def num_levels(self) -> int:
        cfg = self.config
        return len(cfg.levels) if cfg is not None else 2

    def num_parameters(self) -> int | None:
        params = getattr(self.model, "parameters", None)
        if params is None:
            return None
        return sum(p.numel() for p in params())

    def describe(self) -> str:
        if not self.ready:
            return self.error or "No model is loaded."
        n = self.num_parameters()
        size = f", {n / 1e6:.2f} M parameters" if n else ""
        where = f" from {display_path(self.model_dir)}" if self.model_dir else ""
        return f"{self.name}{where}{size}"

    def card(self) -> ModelCard:
        if self._card is None:
            self._card = load_card(self.model_dir)
        return self._card

    def _require(self):
        if not self.ready:
            raise ModelUnavailable(self.error or "No model is loaded.")

    # --- model calls -----------------------------------------------------------------------------
    def segment(self, text: str, threshold: float = settings.DEFAULT_THRESHOLD) -> Segmentation:
        self._require()
        with self._lock:
            return self.model.segment(text, threshold=threshold)

    def infill(self, text, spans, *, level="auto", length="auto", steps=20, seed=0, temperature=1.0) -> InfillResult:
        self._require()
        with self._lock:
            return self.model.infill(text, spans, level, length, steps, seed, temperature=temperature)

    def generate(
        self, *, num_segments=None, steps=20, seed=0, temperature=1.0, refine=settings.DEFAULT_REFINE
    ) -> GenerationResult:
        self._require()
        with self._lock:
            return self.model.generate(num_segments, steps, seed, temperature=temperature, refine=refine)

    def infill_stream(
        self,
        text,
        spans,
        *,
        level="auto",
        length="auto",
        steps=20,
        seed=0,
        temperature=1.0,
        threshold=settings.DEFAULT_THRESHOLD,
    ):
        """Yields each `TrajectoryStep` as the sampler produces it, then a `Finished`."""
        self._require()
        return self._stream(
            lambda cb: self.model.infill(text, spans, level, length, steps, seed, callback=cb, temperature=temperature),
            threshold,
        )

    def generate_stream(
        self,
        *,
        num_segments=None,
        steps=20,
        seed=0,
        temperature=1.0,
        refine=settings.DEFAULT_REFINE,
        threshold=settings.DEFAULT_THRESHOLD,
    ):
        self._require()
        return self._stream(
            lambda cb: self.model.generate(num_segments, steps, seed, cb, temperature=temperature, refine=refine),
            threshold,
        )

    def _stream(self, call: Callable, threshold: float) -> Iterator[TrajectoryStep | Finished]:
        q: queue.Queue = queue.Queue()
        cancel = threading.Event()

        def callback(step: TrajectoryStep) -> None:
            if cancel.is_set():
                raise StreamCancelled
            q.put(("step", step))

        def work():
            try:
                t0 = time.perf_counter()
                with self._lock:
                    result = call(callback)
                    elapsed = time.perf_counter() - t0
                    boundaries = {} if cancel.is_set() else self._boundaries(result.trajectory, threshold, cancel)
                q.put(("done", Finished(result, boundaries, elapsed)))
            except BaseException as e:  # handed to the consumer, which re-raises it
                q.put(("error", e))

        worker = threading.Thread(target=work, name="zonkey-sample", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    kind, payload = q.get(timeout=settings.REQUEST_TIMEOUT_S)
                except queue.Empty:
                    raise TimeoutError(f"the model did not finish within {settings.REQUEST_TIMEOUT_S:.0f} s") from None
                if kind == "step":
                    yield payload
                elif kind == "done":
                    yield payload
                    return
                else:
                    raise payload
        finally:
            cancel.set()  # a consumer that stops early (client gone, Stop pressed) ends the worker

    def _boundaries(self, trajectory, threshold: float, cancel: threading.Event) -> dict[str, Boundaries]:
        """Boundaries of each distinct step text (evenly thinned to MAX_REPLAY_HEATMAPS texts)."""
        texts: list[str] = []
        for st in trajectory:
            if st.text not in texts:
                texts.append(st.text)
        if len(texts) > settings.MAX_REPLAY_HEATMAPS:
            idx = np.linspace(0, len(texts) - 1, settings.MAX_REPLAY_HEATMAPS).round().astype(int)
            texts = [texts[i] for i in sorted(set(idx.tolist()))]
        out: dict[str, Boundaries] = {}
        for text in texts:
            if cancel.is_set():
                break
            if not text.strip() or len(text) > settings.LIMITS["max_text_chars"]:
                continue
            with contextlib.suppress(ZonkeyInputError):
                out[text] = Boundaries.of(self.model.segment(text, threshold=threshold))
        return out


# --- the entropy baseline -----------------------------------------------------------------------


class BaselineSegmenter:
    """The BLT-style entropy patcher of `training.baselines`, shown beside Zonkey when both the
    module and `assets/models/baseline-ar-small` exist; skipped with a note otherwise.

    Accepted interfaces, tried in order (the first one found is used):
      1. `training.baselines.load_entropy_patcher(path)`;
      2. `training.baselines.entropy.EntropyPatcher.from_pretrained(path)`.
    The loaded object's `segment(text)` returns `(starts, scores)` or an object with `.starts`
    and optionally `.scores` / `.entropy`: level-0 start offsets and per-character entropies.
    """

    def __init__(self, patcher):
        self.patcher = patcher
        self._lock = threading.Lock()

    @staticmethod
    def _loader():
        import importlib

        try:
            mod = importlib.import_module("training.baselines")
        except Exception as e:
            return None, f"the baselines module is not available yet ({type(e).__name__})"
        if hasattr(mod, "load_entropy_patcher"):
            return mod.load_entropy_patcher, ""
        try:
            ent = importlib.import_module("training.baselines.entropy")
        except Exception:
            ent = None
        cls = getattr(ent, "EntropyPatcher", None)
        if cls is not None and hasattr(cls, "from_pretrained"):
            return cls.from_pretrained, ""
        return None, "training.baselines has no entropy patcher loader"

    @classmethod
    def load(cls, path: Path = settings.BASELINE_AR_DIR) -> tuple[BaselineSegmenter | None, str]:
        """(segmenter, note); never raises."""
        if not Path(path).is_dir():
            return None, f"no entropy-baseline checkpoint ({display_path(path) or Path(path).name} is absent)"
        loader, why = cls._loader()
        if loader is None:
            return None, why
        try:
            return cls(loader(str(path))), "entropy baseline loaded"
        except Exception as e:
            log.exception("loading the entropy baseline failed")
            return None, f"the entropy baseline could not be loaded ({type(e).__name__}: {e})"

    def segment(self, text: str) -> tuple[list[int], np.ndarray]:
        with self._lock:
            out = self.patcher.segment(text)
        if isinstance(out, tuple):
            starts, scores = out
        else:
            starts = out.starts
            scores = getattr(out, "scores", None)
            if scores is None:
                scores = getattr(out, "entropy", None)
        scores = np.zeros(len(text)) if scores is None else np.asarray(scores, dtype=float).reshape(-1)[: len(text)]
        if len(scores) < len(text):
            scores = np.pad(scores, (0, len(text) - len(scores)))
        return sorted({int(s) for s in starts if 0 <= int(s) < len(text)} | {0}), scores
