"""Spaces entry point: `python app.py` serves the Zonkey demo (127.0.0.1:7860 by default)."""

import app  # noqa: F401  (sets GRADIO_ANALYTICS_ENABLED / HF_HUB_OFFLINE before gradio is imported)
from app.models import ModelRegistry
from app.service import BaselineSegmenter
from app.ui import build_app, launch_kwargs

models = ModelRegistry.from_env()
baseline, baseline_note = BaselineSegmenter.load()
demo = build_app(models, baseline, baseline_note)

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
