"""The live view and the replay of a sampler trajectory, shared by the Infill and Generate tabs.

`stream_view` turns a service stream into UI updates: throttled live frames while the model runs,
then the replay-ready final frame (the whole trajectory and the boundaries of each step kept in a
`gr.State`, a step slider, the JSON export and a snippet that reproduces the run). `frame`,
`on_scrub`, `on_play`, `on_pause` and `on_tick` render one step of a finished trajectory; they do
no model work.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import gradio as gr

from app import plots, settings
from app.service import Boundaries, Finished, ModelService
from zonkey.outputs import TrajectoryStep

EXPORT_DIR = Path(tempfile.gettempdir()) / "zonkey-exports"
MAX_EXPORTS = 200  # older export files are deleted (gradio also keeps its own copy, see ui.py delete_cache)


def _boundaries_for(replay: dict, i: int) -> tuple[Boundaries | None, str]:
    """Boundaries of step i's text, or of the nearest earlier step that has them."""
    steps, table = replay["steps"], replay["boundaries"]
    for j in range(i, -1, -1):
        b = table.get(steps[j].text)
        if b is not None:
            return b, steps[j].text
    return None, ""


def step_label(step: TrajectoryStep, total: int, kind: str = "infill") -> str:
    """The step as the caption and the plot titles name it. Each pass of `total` steps has total + 1
    frames: an infill runs one pass per gap, a generation one pass plus a second that re-infills
    its least confident words."""
    k, i = divmod(step.step, total + 1)
    if k == 0:
        return f"step {i}/{total}"
    return f"{'second pass' if kind == 'generate' else f'gap {k + 1}'} · step {i}/{total}"


def step_caption(step: TrajectoryStep, total: int, elapsed: float | None = None, kind: str = "infill") -> str:
    k, i = divmod(step.step, total + 1)
    where = plots.level_name(step.level)
    done = f" · computed in {elapsed:.2f} s" if elapsed is not None else ""
    if k == 0:
        phase = ""
    elif kind == "generate":
        phase = " · second pass: re-infilling the least confident words"
    else:
        phase = f" · gap {k + 1}"
    return f"**Step {i}/{total}** · t = {step.t:.3f} · denoising at {where}{phase}{done}"


def frame(replay: dict, i: int) -> dict:
    """View of replay step i: text with filled regions, caption, existence bars, BOS heatmap."""
    steps = replay["steps"]
    i = max(0, min(int(i), len(steps) - 1))
    st = steps[i]
    b, btext = _boundaries_for(replay, i)
    label = step_label(st, replay["total"], replay["kind"])
    heat = (
        plots.bos_heatmap(
            btext,
            b.char_bos,
            b.starts,
            title=f"learned boundaries at {label} (filled regions shaded)",
            highlight=st.filled if btext == st.text else (),
            threshold=settings.DEFAULT_THRESHOLD,  # the service computes replay boundaries at it
        )
        if b is not None
        else plots.empty_figure("boundaries not computed for this step")
    )
    return {
        "view": plots.filled_html(st.text, st.filled),
        "caption": step_caption(
            st, replay["total"], replay["elapsed"] if i == len(steps) - 1 else None, replay["kind"]
        ),
        "existence": plots.existence_figure(st.existence, st.level, label),
        "heatmap": heat,
    }


def on_scrub(replay: dict | None, i) -> dict:
    if not replay:
        return {}
    return frame(replay, i)


def on_play(replay: dict | None, i) -> dict:
    if not replay:
        gr.Warning("Run the model first; then the replay can play.")
        return {}
    start = 0 if int(i or 0) >= len(replay["steps"]) - 1 else int(i or 0)
    return {"timer": gr.Timer(active=True), "slider": start, **frame(replay, start)}


def on_pause() -> dict:
    return {"timer": gr.Timer(active=False)}


def on_tick(replay: dict | None, i) -> dict:
    if not replay:
        return {"timer": gr.Timer(active=False)}
    nxt = int(i or 0) + 1
    last = len(replay["steps"]) - 1
    if nxt >= last:
        return {"timer": gr.Timer(active=False), "slider": last, **frame(replay, last)}
    return {"slider": nxt, **frame(replay, nxt)}


def _prune_exports(keep: int = MAX_EXPORTS) -> None:
    files = sorted(EXPORT_DIR.glob("zonkey-*.json"), key=lambda p: p.stat().st_mtime)
    for p in files[: max(0, len(files) - keep)]:
        p.unlink(missing_ok=True)


def _export(kind: str, settings_used: dict, result, service: ModelService) -> str:
    """Write the result and its trajectory, with the settings that reproduce it, as JSON."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    _prune_exports()
    payload = {"kind": kind, "model": service.name, "settings": settings_used, "result": result.to_dict()}
    fd, name = tempfile.mkstemp(prefix=f"zonkey-{kind}-seed{settings_used['seed']}-", suffix=".json", dir=EXPORT_DIR)
    with open(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False, indent=1)
    return name


def reproduce_snippet(kind: str, args: dict) -> str:
    call = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return (
        "Reproduce this result:\n\n```python\n"
        "from gradio_client import Client\n"
        f'Client("{settings.api_source()}").predict({call}, api_name="/{kind}")\n'
        "```\n"
    )


def stream_view(kind: str, stream, service: ModelService, settings_used: dict, api_args: dict):
    """Drive a service stream: yield live frames (throttled), then the replay-ready final frame."""
    total = settings_used["steps"]
    last_yield = 0.0
    yield {  # nothing of the previous run stays beside this one's frames
        "caption": "**Starting…**",
        "slider": gr.Slider(visible=False),
        "export": gr.DownloadButton(visible=False),
        "timer": gr.Timer(active=False),
        "heatmap": plots.empty_figure("learned boundaries per step (after the run)", height=170),
        "reproduce": "Run in progress.",
        "replay": None,
    }
    for ev in stream:
        if isinstance(ev, Finished):
            res = ev.result
            replay = {
                "kind": kind,
                "steps": list(res.trajectory),
                "boundaries": ev.boundaries,
                "total": total,
                "elapsed": ev.elapsed_s,
            }
            if not replay["steps"]:
                replay["steps"] = [TrajectoryStep(total, 0.0, 0, res.text, list(getattr(res, "filled", [])))]
            last = len(replay["steps"]) - 1
            yield {
                **frame(replay, last),
                "replay": replay,
                "slider": gr.Slider(
                    minimum=0,
                    maximum=max(last, 1),
                    value=last,
                    step=1,
                    visible=True,
                    interactive=last > 0,
                    label=f"Replay: step index (0–{last})",
                ),
                "export": gr.DownloadButton(value=_export(kind, settings_used, res, service), visible=True),
                "reproduce": reproduce_snippet(kind, api_args),
            }
            return
        now = time.perf_counter()
        if now - last_yield >= settings.STREAM_MIN_INTERVAL_S or ev.step >= total:
            last_yield = now
            yield {
                "view": plots.filled_html(ev.text, ev.filled),
                "caption": step_caption(ev, total, kind=kind),
                "existence": plots.existence_figure(ev.existence, ev.level, step_label(ev, total, kind)),
            }
