"""Generate tab: unconditional generation from noise, with the same live view and replay."""

from __future__ import annotations

import gradio as gr

from app import callbacks, settings
from app.tabs.viewer import build_viewer, temperature_slider, wire_run


def build_generate_tab(models, model_choice) -> dict:
    """`model_choice`: the model dropdown, the first input of the run (the page's model)."""
    c: dict = {}
    with gr.Row():
        c["num_segments"] = gr.Slider(
            0,
            settings.LIMITS["max_segments"],
            value=0,
            step=1,
            label="Top-level segments (0 = the model decides)",
            elem_id="gen-segments",
        )
        c["steps"] = gr.Slider(
            1,
            settings.LIMITS["max_steps"],
            value=settings.DEFAULT_STEPS,
            step=1,
            label="Denoising steps",
            elem_id="gen-steps",
        )
        c["temperature"] = temperature_slider("gen-temperature")
        c["refine"] = gr.Slider(
            0.0,
            settings.LIMITS["max_refine"],
            value=settings.DEFAULT_REFINE,
            step=0.05,
            label="Re-infill",
            info="share of the generated words re-infilled in a second pass, least confident first; 0 = off",
            elem_id="gen-refine",
        )
        c["seed"] = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="gen-seed")
    with gr.Row():
        c["run"] = gr.Button("Generate from noise", variant="primary", elem_id="gen-run")
        c["stop"] = gr.Button("Stop", variant="stop", elem_id="gen-stop")
    v = build_viewer("gen")
    c.update({f"v_{k}": x for k, x in v.items()})
    settings_in = [c[k] for k in ("num_segments", "steps", "seed", "temperature", "refine")]
    wire_run(c, v, models, callbacks.run_generate, [model_choice, *settings_in])
    return c
