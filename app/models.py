"""`ModelRegistry`: the checkpoints a user can switch between, each behind its own `ModelService`.

The registry names every shipped checkpoint that exists on disk (`assets/models/zonkey-small`,
`assets/models/zonkey-base`, in that order), plus `$ZONKEY_MODEL` when it is set. The default is the
checkpoint `app.service.resolve_model_dir` picks (so `$ZONKEY_MODEL`, when set, is the default); an
invalid `$ZONKEY_MODEL` becomes a default entry whose service carries resolve_model_dir's error, as
the single-model app did, and the shipped checkpoints stay selectable beside it.

Example (names depend on what is on disk):
    models = ModelRegistry.from_env()
    models.names    -> ['zonkey-small', 'zonkey-base']
    models.default  -> 'zonkey-small'
    models.get("")  -> the default's ModelService; models.get("zonkey-base") -> the base one

Each service is loaded on first use and cached: `get` takes a per-name lock, so concurrent first
requests load a checkpoint once, and loading one checkpoint never waits for another. A checkpoint
that fails to load gives a service whose `error` says why (its calls raise `ModelUnavailable`); the
other models keep working. A name the registry does not know raises `UnknownModel` (a
`ZonkeyInputError`, so the UI shows it as a warning and the API as a clean error).

The registry holds no per-user state: which model a user works with is their own UI value (the
model dropdown) or API argument, passed to `get` on every request. No gradio import here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from app import settings
from app.service import ModelService, _is_checkpoint, resolve_model_dir
from zonkey.validation import ZonkeyInputError

Loader = Callable[[Path, str], ModelService]  # (checkpoint dir, name) -> service; must not raise


class UnknownModel(ZonkeyInputError):
    """A model name that is not in the registry; the message lists the valid names."""


def load_checkpoint(path: Path, name: str) -> ModelService:
    return ModelService.load(path, name=name)


def _same_dir(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _unique(name: str, taken: Iterable[str]) -> str:
    """`name`, or `name ($ZONKEY_MODEL)` when a shipped checkpoint already uses it."""
    taken = set(taken)
    return name if name not in taken else f"{name} (${settings.MODEL_ENV})"


class ModelRegistry:
    """Named checkpoints, each loaded lazily into a cached `ModelService`.

    Args:
        entries: name -> a checkpoint directory (loaded on first `get`) or a ready `ModelService`.
            Order is kept (it is the dropdown's order).
        default: the name `get("")` serves; the first entry when None.
        loader: turns (directory, name) into a service; `ModelService.load` unless a test swaps it.
    """

    def __init__(
        self,
        entries: dict[str, Path | ModelService],
        default: str | None = None,
        *,
        loader: Loader = load_checkpoint,
    ):
        if not entries:
            raise ValueError("ModelRegistry needs at least one entry (a checkpoint directory or a ModelService)")
        self._paths: dict[str, Path | None] = {}
        self._services: dict[str, ModelService] = {}
        for name, entry in entries.items():
            if isinstance(entry, ModelService):
                self._paths[name] = entry.model_dir
                self._services[name] = entry
            else:
                self._paths[name] = Path(entry)
        self._locks = {name: threading.Lock() for name in self._paths}
        self._loader = loader
        self.default = next(iter(self._paths)) if default is None else default
        if self.default not in self._paths:
            raise ValueError(f"default model {self.default!r} is not one of {self.names}")

    # --- building -------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: dict | None = None, *, loader: Loader = load_checkpoint) -> ModelRegistry:
        """The shipped checkpoints that exist, plus `$ZONKEY_MODEL`; the default is the one
        `resolve_model_dir(env)` picks. Loads nothing."""
        env = os.environ if env is None else env
        entries: dict[str, Path | ModelService] = {}
        for path in (settings.SMALL_DIR, settings.BASE_DIR):
            if _is_checkpoint(path):
                entries[path.name] = path
        path, why = resolve_model_dir(env)
        if path is not None:
            default = next((n for n, p in entries.items() if _same_dir(p, path)), None)
            if default is None:  # $ZONKEY_MODEL (or another directory the rule picks)
                default = _unique(path.name, entries)
                entries[default] = path
        else:  # nothing loadable, or an invalid $ZONKEY_MODEL: the default carries the error
            default = _unique(
                f"${settings.MODEL_ENV}" if env.get(settings.MODEL_ENV, "").strip() else "no model", entries
            )
            entries[default] = ModelService(name=default, error=why)
        return cls(entries, default, loader=loader)

    @classmethod
    def of(cls, services: Iterable[ModelService], default: str | None = None) -> ModelRegistry:
        """A registry of ready services, each under its own `name` (tests, notebooks)."""
        entries: dict[str, Path | ModelService] = {}
        for svc in services:
            if svc.name in entries:
                raise ValueError(f"two services are named {svc.name!r}; give each a distinct name")
            entries[svc.name] = svc
        return cls(entries, default)

    @classmethod
    def coerce(cls, models: ModelRegistry | ModelService) -> ModelRegistry:
        """A registry as it is; a single service as a registry of one."""
        return models if isinstance(models, ModelRegistry) else cls.of([models])

    # --- lookups --------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._paths)

    def resolve(self, name: str | None = "") -> str:
        """The registry name for `name` ("" or None: the default); raises `UnknownModel`."""
        key = "" if name is None else str(name).strip()
        if not key:
            return self.default
        if key not in self._paths:
            valid = ", ".join(repr(n) for n in self.names)
            raise UnknownModel(
                f"Unknown model {key!r}. Choose one of {valid}, or leave it empty for the default ({self.default!r})."
            )
        return key

    def path(self, name: str | None = "") -> Path | None:
        return self._paths[self.resolve(name)]

    def is_loaded(self, name: str | None = "") -> bool:
        return self.resolve(name) in self._services

    def get(self, name: str | None = "") -> ModelService:
        """The service for `name` ("" or None: the default), loading it on first use."""
        key = self.resolve(name)
        svc = self._services.get(key)
        if svc is None:
            with self._locks[key]:
                svc = self._services.get(key)
                if svc is None:  # first use: load once; a concurrent caller waits for this load
                    svc = self._loader(self._paths[key], key)
                    self._services[key] = svc
        return svc
