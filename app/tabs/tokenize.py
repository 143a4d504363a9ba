"""Tokenization tab: the learned boundary probabilities as a heatmap (characters x levels), a
threshold, segments per level as alternating highlighted spans with whitespace made visible,
counters, boundary P/R/F1 against word and sentence starts, and the entropy baseline beside."""

from __future__ import annotations

import gradio as gr

from app import analysis, callbacks, plots, settings
from app.tabs.viewer import PRIVATE


def build_tokenize_tab(models, model_choice, baseline, baseline_note: str, examples: list[dict], tab=None) -> dict:
    """`model_choice`: the model dropdown, the first input of every segmenting listener (the
    page's model). `tab`: the enclosing gr.Tab; selecting it segments the text shown (one cheap
    model call)."""
    first = examples[0]["text"] if examples else ""
    c: dict = {}
    with gr.Row():
        with gr.Column(scale=4):
            c["text"] = gr.Textbox(first, lines=4, max_lines=12, label="Any text", elem_id="tok-text")
        with gr.Column(scale=1, min_width=220):
            c["threshold"] = gr.Slider(
                0.05,
                0.95,
                value=settings.DEFAULT_THRESHOLD,
                step=0.05,
                label="Boundary threshold",
                info="a segment starts where P > threshold, or where the one before would exceed its "
                "maximum length (hollow dot)",
                elem_id="tok-threshold",
            )
            c["run"] = gr.Button("Segment", variant="primary", elem_id="tok-run")
    c["counters"] = gr.Markdown("", elem_id="tok-counters")
    c["heatmap"] = gr.Plot(
        plots.empty_figure("press Segment to see P(segment begins) per character"),
        show_label=False,
        elem_id="tok-heatmap",
    )
    gr.Markdown("Segments (alternating colours; `·` is a space, `⏎` a newline, `→` a tab; hover for offsets)")
    c["segments0"] = gr.HTML(label="level 0", elem_id="tok-seg0")
    c["segments1"] = gr.HTML(label="level 1", elem_id="tok-seg1")
    c["scores"] = gr.Dataframe(
        headers=analysis.SCORE_HEADERS,
        label="Boundary precision / recall / F1",
        interactive=False,
        elem_id="tok-scores",
        wrap=True,
    )
    outputs = {k: c[k] for k in ("counters", "heatmap", "segments0", "segments1", "scores")}
    with gr.Accordion("Entropy baseline (BLT-style patcher)", open=baseline is not None):
        if baseline is None:
            gr.Markdown(f"Not available: {baseline_note}.")
        else:
            c["baseline_heatmap"] = gr.Plot(show_label=False, elem_id="tok-baseline-heatmap")
            c["baseline_segments"] = gr.HTML(elem_id="tok-baseline-seg")
            outputs.update(baseline_heatmap=c["baseline_heatmap"], baseline_segments=c["baseline_segments"])
    fn, outs = callbacks.bind(callbacks.for_model(models, callbacks.run_segment, baseline), outputs)
    common = dict(
        concurrency_id=settings.MODEL_CONCURRENCY_ID,
        concurrency_limit=1,
        show_progress="minimal",
        trigger_mode="always_last",
        **PRIVATE,
    )
    inputs = [model_choice, c["text"], c["threshold"]]
    c["run"].click(fn, inputs, outs, **common)
    c["text"].submit(fn, inputs, outs, **common)
    c["threshold"].release(fn, inputs, outs, **common)
    if tab is not None:
        tab.select(fn, inputs, outs, **common)
    if examples:
        # the example fills the text and threshold; then the page's model segments it
        shown = gr.Examples(
            [[ex["text"], settings.DEFAULT_THRESHOLD] for ex in examples],
            inputs[1:],
            example_labels=[ex.get("title", "") for ex in examples],
            label="Examples (held-out Wikipedia)",
            cache_examples=False,
            run_on_click=False,
            api_visibility="private",
        )
        shown.load_input_event.then(fn, inputs, outs, **common)
    return c
