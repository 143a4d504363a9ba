"""The live + replay trajectory viewer shared by the Infill and Generate tabs.

While the model runs, the text (filled regions highlighted), a step caption and the existence
bars stream in. Afterwards a step slider scrubs the trajectory, Play/Pause replay it (a
`gr.Timer` advances the slider), the learned-boundary heatmap follows each step where the text
changes, and Export downloads the trajectory with the settings that reproduce it as JSON.
"""

from __future__ import annotations

import gradio as gr

from app import callbacks, plots, replay, settings

PRIVATE = dict(api_visibility="private")
STOPPED_JS = (  # the caption after Stop: a finished (or already stopped) run keeps its own
    "(c) => (!c || c.includes('computed in') || c.startsWith('**Stopped**')) ? c "
    ": c.startsWith('**Starting') ? '**Stopped** before the first step.' "
    ": '**Stopped** by you at ' + c.replace('**Step', 'step').replace('**', '')"
)


def temperature_slider(elem_id: str) -> gr.Slider:
    return gr.Slider(
        0.1,
        settings.LIMITS["max_temperature"],
        value=settings.DEFAULT_TEMPERATURE,
        step=0.05,
        label="Temperature",
        info="1 = the method's sampler; lower = more conservative, less varied text",
        elem_id=elem_id,
    )


def build_viewer(prefix: str) -> dict:
    """Create the viewer's components (inside the current layout context); returns them by name."""
    c: dict = {}
    c["caption"] = gr.Markdown("", elem_id=f"{prefix}-caption", elem_classes=["zk-caption-md"])
    c["view"] = gr.HTML(
        '<div class="zk-text zk-muted">The result appears here, step by step.</div>', elem_id=f"{prefix}-view"
    )
    with gr.Row():
        c["slider"] = gr.Slider(
            0, 1, value=0, step=1, label="Replay: step index", visible=False, elem_id=f"{prefix}-replay", scale=4
        )
        c["play"] = gr.Button("▶ Play", size="sm", scale=0, min_width=80, elem_id=f"{prefix}-play")
        c["pause"] = gr.Button("Pause", size="sm", scale=0, min_width=80, elem_id=f"{prefix}-pause")
        c["export"] = gr.DownloadButton(
            "Export trajectory (JSON)", visible=False, size="sm", scale=0, min_width=200, elem_id=f"{prefix}-export"
        )
    with gr.Row():
        c["existence"] = gr.Plot(
            plots.empty_figure("existence per slot, while denoising", height=170),
            show_label=False,
            elem_id=f"{prefix}-existence",
            scale=2,
        )
        c["heatmap"] = gr.Plot(
            plots.empty_figure("learned boundaries per step (after a run)", height=170),
            show_label=False,
            elem_id=f"{prefix}-heatmap",
            scale=3,
        )
    with gr.Accordion("Reproduce", open=False):
        c["reproduce"] = gr.Markdown("Run the model first.")
    c["timer"] = gr.Timer(settings.REPLAY_TICK_S, active=False)
    c["replay"] = gr.State(None)
    return c


def wire_replay(c: dict) -> None:
    """Scrubbing, play, pause and the timer; all UI-only (private) listeners, no model work."""
    frame_out = {k: c[k] for k in ("view", "caption", "existence", "heatmap")}
    fn, outs = callbacks.bind(replay.on_scrub, frame_out)
    c["slider"].input(
        fn, [c["replay"], c["slider"]], outs, trigger_mode="always_last", show_progress="hidden", **PRIVATE
    )
    fn, outs = callbacks.bind(replay.on_play, {**frame_out, "timer": c["timer"], "slider": c["slider"]})
    c["play"].click(fn, [c["replay"], c["slider"]], outs, show_progress="hidden", **PRIVATE)
    fn, outs = callbacks.bind(replay.on_pause, {"timer": c["timer"]})
    c["pause"].click(fn, None, outs, show_progress="hidden", **PRIVATE)
    fn, outs = callbacks.bind(replay.on_tick, {**frame_out, "timer": c["timer"], "slider": c["slider"]})
    c["timer"].tick(fn, [c["replay"], c["slider"]], outs, show_progress="hidden", **PRIVATE)


def wire_run(c: dict, v: dict, models, run_fn, inputs: list) -> None:
    """Run streams `run_fn` (for the page's model, the first of `inputs`) into the viewer `v`;
    Stop cancels it; then the replay controls."""
    fn, outs = callbacks.bind(callbacks.for_model(models, run_fn), run_outputs(v))
    run = c["run"].click(
        fn,
        inputs,
        outs,
        concurrency_id=settings.MODEL_CONCURRENCY_ID,
        concurrency_limit=1,
        show_progress="minimal",
        **PRIVATE,
    )
    # Stop says so in the caption (unless the run had already finished) and keeps the partial result
    c["stop"].click(
        None,
        [v["caption"]],
        [v["caption"]],
        js=STOPPED_JS,
        cancels=[run],
        show_progress="hidden",
        **PRIVATE,
    )
    wire_replay(v)


def run_outputs(c: dict) -> dict:
    """The components a model run updates, by the names the run callbacks use."""
    keys = ("view", "caption", "existence", "heatmap", "slider", "export", "timer", "replay", "reproduce")
    return {k: c[k] for k in keys}
