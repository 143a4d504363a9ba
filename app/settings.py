"""Settings of the app: where checkpoints live, request bounds, queue and launch defaults.

No gradio import here, so the service and the tests can read these without building a UI.
"""

from __future__ import annotations

import os
from pathlib import Path

from zonkey.validation import (
    DEFAULT_REFINE,  # noqa: F401  (the app's default is the library's)
    MAX_FILL_CHARS,
    MAX_REFINE,
    MAX_SEGMENTS,
    MAX_SPANS,
    MAX_STEPS,
    MAX_TEMPERATURE,
    MAX_TEXT_CHARS,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "assets" / "models"
SMALL_DIR = MODELS_DIR / "zonkey-small"
BASE_DIR = MODELS_DIR / "zonkey-base"
BASELINE_AR_DIR = MODELS_DIR / "baseline-ar-small"
EXAMPLES_FILE = REPO_ROOT / "assets" / "examples" / "examples.json"
MODEL_ENV = "ZONKEY_MODEL"  # a checkpoint directory that overrides the shipped ones

# Request bounds. The model enforces the same limits (zonkey.validation); the UI shows them.
LIMITS = {
    "max_text_chars": MAX_TEXT_CHARS,
    "max_steps": MAX_STEPS,
    "max_spans": MAX_SPANS,
    "max_segments": MAX_SEGMENTS,
    "max_fill_chars": MAX_FILL_CHARS,
    "max_seed": 2**63 - 1,
    "max_temperature": MAX_TEMPERATURE,
    "max_refine": MAX_REFINE,
}
DEFAULT_STEPS = 20
DEFAULT_TEMPERATURE = 1.0  # the method's sampler; the sliders offer 0.1 .. LIMITS['max_temperature']
DEFAULT_THRESHOLD = 0.5
MAX_REPLAY_HEATMAPS = 64  # distinct step texts whose boundaries are computed for the replay
STREAM_MIN_INTERVAL_S = 0.04  # the live view is refreshed at most this often
REQUEST_TIMEOUT_S = 300.0  # a model call that has not finished by then is reported as failed

# Queue: one model, one worker; every model listener shares MODEL_CONCURRENCY_ID.
MODEL_CONCURRENCY_ID = "model"
QUEUE_MAX_SIZE = 64
REPLAY_TICK_S = 0.4  # seconds per step when the replay plays


def server_name() -> str:
    return os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")


def server_port() -> int:
    return int(os.environ.get("GRADIO_SERVER_PORT", "7860"))


def api_source() -> str:
    """What `gradio_client.Client` connects to for this app: the Space's id on Hugging Face Spaces
    (where SPACE_ID is set), else the address `python app.py` serves at."""
    space = os.environ.get("SPACE_ID")
    if space:
        return space
    host = server_name()
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{server_port()}/"
