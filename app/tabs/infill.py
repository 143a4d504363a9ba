"""Infill tab: mark gaps (select + Mask, or type ___ / [...]), choose level, length, steps, seed;
watch the fill stream in, then replay and export it."""

from __future__ import annotations

import gradio as gr

from app import callbacks, plots, settings
from app.tabs.viewer import PRIVATE, build_viewer, temperature_slider, wire_run
from zonkey.validation import find_gap_markers

LEVEL_CHOICES = [("auto", "auto"), ("0 · characters", "0"), ("1 · words", "1")]
LENGTH_CHOICES = [("auto (the model sizes it)", "auto"), ("keep (the gap's length)", "keep"), ("N characters", "chars")]


def example_rows(examples: list[dict]) -> tuple[list[list], list[str]]:
    rows, labels = [], []
    for ex in examples:
        length = ex.get("length", "auto")
        mode, n = (length, 8) if isinstance(length, str) else ("chars", int(length))
        rows.append(
            [
                ex["text"],
                str(ex.get("level", "auto")),
                mode,
                n,
                ex.get("steps", settings.DEFAULT_STEPS),
                ex.get("seed", 0),
            ]
        )
        labels.append(ex.get("title", ex["text"][:30]))
    return rows, labels


def build_infill_tab(models, model_choice, examples: list[dict]) -> dict:
    """`model_choice`: the model dropdown, the first input of the run (the page's model)."""
    first = examples[0]["text"] if examples else ""
    c: dict = {}
    with gr.Row():
        with gr.Column(scale=3):
            c["text"] = gr.Textbox(
                first,
                lines=5,
                max_lines=14,
                label="Text — select characters and press Mask, or type ___ / [...]",
                elem_id="infill-text",
            )
            with gr.Row():
                c["mask"] = gr.Button("Mask selection", elem_id="infill-mask", size="sm")
                c["clear"] = gr.Button("Clear masks", elem_id="infill-clear", size="sm")
            c["preview"] = gr.HTML(  # the first example's ___ gaps, before any edit
                plots.mask_preview_html(first, [], find_gap_markers(first)[1]),
                label="Gaps to fill",
                elem_id="infill-preview",
            )
            c["span_list"] = gr.Dropdown(
                choices=[],
                value=[],
                multiselect=True,
                label="Masked spans (× removes one)",
                elem_id="infill-spans",
                allow_custom_value=False,
            )
        with gr.Column(scale=2):
            c["level"] = gr.Radio(
                LEVEL_CHOICES, value="auto", label="Level", info="auto: inside a word → 0, whole words → 1"
            )
            c["length_mode"] = gr.Radio(LENGTH_CHOICES, value="auto", label="Fill length")
            c["length_n"] = gr.Number(
                8, precision=0, minimum=1, maximum=settings.LIMITS["max_fill_chars"], label="N (for 'N characters')"
            )
            c["steps"] = gr.Slider(
                1, settings.LIMITS["max_steps"], value=settings.DEFAULT_STEPS, step=1, label="Denoising steps"
            )
            c["temperature"] = temperature_slider("infill-temperature")
            c["seed"] = gr.Number(0, precision=0, minimum=0, label="Seed (same seed + settings = same result)")
            with gr.Row():
                c["run"] = gr.Button("Infill", variant="primary", elem_id="infill-run")
                c["stop"] = gr.Button("Stop", variant="stop", elem_id="infill-stop")
    rows, labels = example_rows(examples)
    if rows:
        gr.Examples(
            rows,
            [c["text"], c["level"], c["length_mode"], c["length_n"], c["steps"], c["seed"]],
            example_labels=labels,
            label="Examples (held-out Wikipedia, never trained on)",
            cache_examples=False,
            run_on_click=False,
            api_visibility="private",
        )
    v = build_viewer("infill")
    c.update({f"v_{k}": x for k, x in v.items()})
    c["spans"] = gr.State([])
    c["selection"] = gr.State(None)

    span_out = {"spans": c["spans"], "preview": c["preview"], "span_list": c["span_list"], "selection": c["selection"]}
    fn, outs = callbacks.bind(callbacks.on_select, {"selection": c["selection"]})
    c["text"].select(fn, [c["text"]], outs, trigger_mode="always_last", show_progress="hidden", **PRIVATE)
    fn, outs = callbacks.bind(callbacks.on_mask, span_out)
    c["mask"].click(fn, [c["text"], c["spans"], c["selection"]], outs, show_progress="hidden", **PRIVATE)
    fn, outs = callbacks.bind(callbacks.on_span_list, span_out)
    c["span_list"].input(fn, [c["text"], c["spans"], c["span_list"]], outs, show_progress="hidden", **PRIVATE)
    fn, outs = callbacks.bind(callbacks.on_text_change, span_out)
    c["text"].change(fn, [c["text"], c["spans"]], outs, trigger_mode="always_last", show_progress="hidden", **PRIVATE)
    fn, outs = callbacks.bind(callbacks.on_clear_spans, span_out)
    c["clear"].click(fn, [c["text"]], outs, show_progress="hidden", **PRIVATE)

    settings_in = [c[k] for k in ("text", "spans", "level", "length_mode", "length_n", "steps", "seed", "temperature")]
    wire_run(c, v, models, callbacks.run_infill, [model_choice, *settings_in])
    return c
