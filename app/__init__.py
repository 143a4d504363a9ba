"""The Zonkey Gradio app: infill, generate, tokenization and model-card tabs over the shipped models.

Modules:
    settings.py    launch settings, limits, model locations (no gradio)
    service.py     `ModelService`: loads the checkpoint, runs the model, streams trajectories (no gradio)
    models.py      `ModelRegistry`: the checkpoints a user can switch between, loaded lazily (no gradio)
    validation.py  parses and checks UI/API values (no gradio)
    plots.py       pure functions from results to plotly figures and HTML (no gradio)
    modelcard.py   reads a checkpoint's README, metrics and training log (no gradio)
    callbacks.py   thin functions turning UI values into service calls and results into UI values
    tabs/          one module per tab, each `build_*_tab(models, model_choice, ...)`
    api.py         the public `/segment`, `/infill`, `/generate` endpoints
    ui.py          `build_app(models) -> gr.Blocks` and `launch_kwargs()`

Importing this package sets `GRADIO_ANALYTICS_ENABLED=False` and `HF_HUB_OFFLINE=1` unless the
environment already sets them, so that no request leaves the machine (gradio reads them at import).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
