"""Thin event handlers: UI values in, service calls, UI values out.

Each handler returns (or yields) a dict keyed by output *names*; the tab modules bind those names
to components with `bind`. Invalid input becomes a `gr.Warning` (a clean message, no traceback,
outputs left as they were); an unexpected failure is logged on the server and shown as a short
`gr.Error`; either way the app keeps serving. Per-user state lives in `gr.State` values passed in
and out, never in module globals. The live/replay viewer's handlers are in `app/replay.py`.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging

import gradio as gr

from app import analysis, plots, settings
from app.models import ModelRegistry
from app.replay import stream_view
from app.service import ModelService, ModelUnavailable, StreamCancelled
from app.validation import (
    check_input_text,
    collect_spans,
    parse_length,
    parse_level,
    parse_num_segments,
    parse_refine,
    parse_seed,
    parse_steps,
    parse_temperature,
    parse_threshold,
    prune_spans,
    selection_to_span,
)
from zonkey.validation import ZonkeyInputError, find_gap_markers

log = logging.getLogger(__name__)


# --- plumbing -----------------------------------------------------------------------------------


def bind(fn, outputs: dict):
    """Wrap a handler that returns/yields {name: value} so gradio receives {component: value}.

    Returns (wrapped_fn, list_of_output_components) for `.click(fn, inputs, outputs)`."""
    comps = list(outputs.values())

    def convert(upd: dict) -> dict:
        # An empty update (a handler that only warned) leaves every output as it is. Gradio would
        # read a bare {} as one output's value and fail on the count, so it is spelt out.
        return {outputs[k]: v for k, v in upd.items() if k in outputs} or {c: gr.skip() for c in comps}

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def wrapped_gen(*args, **kwargs):
            for upd in fn(*args, **kwargs):
                yield convert(upd)

        return wrapped_gen, comps

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        return convert(fn(*args, **kwargs))

    return wrapped, comps


def user_error(e: Exception, *, escape: bool = True) -> gr.Error:
    """A gr.Error for an exception: input problems verbatim, anything else as a short report."""
    if isinstance(e, (ZonkeyInputError, ModelUnavailable)):
        msg = str(e)
        title = "Input problem" if isinstance(e, ZonkeyInputError) else "No model"
        return gr.Error(html.escape(msg) if escape else msg, title=title, print_exception=False)
    log.error("request failed", exc_info=e)
    return gr.Error(
        f"Something went wrong on the server ({type(e).__name__}). The app is still running; "
        "try again, or change the input.",
        print_exception=False,
    )


def _warn(e: Exception) -> None:
    title = "Input problem" if isinstance(e, ZonkeyInputError) else "No model"
    gr.Warning(html.escape(str(e)), title=title)


def guarded(fn):
    """UI handler wrapper: an input problem becomes a `gr.Warning` and leaves the outputs as they
    are; any other failure is logged and shown as a short `gr.Error`; the app keeps serving."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (ZonkeyInputError, ModelUnavailable) as e:
                _warn(e)
                yield {}  # outputs stay as they were (a generator that yields nothing blanks them)
            except StreamCancelled:
                return
            except gr.Error:
                raise
            except Exception as e:
                raise user_error(e) from None

        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ZonkeyInputError, ModelUnavailable) as e:
            _warn(e)
            return {}
        except gr.Error:
            raise
        except Exception as e:
            raise user_error(e) from None

    return plain


def for_model(models: ModelRegistry, handler, *bound):
    """A model handler `handler(service, *bound, *values)` as a listener `fn(model, *values)`.

    `model` is the page's choice (the value of the model dropdown, listed first in the
    listener's inputs); the call goes to that model's service in `models`, loaded on first use.
    Each request passes its own choice, so one user's choice never changes another's. An unknown
    name (`UnknownModel`) becomes a `gr.Warning`, like any other input problem."""
    if inspect.isgeneratorfunction(handler):

        def gen(model, *values):
            yield from handler(models.get(model), *bound, *values)

        fn = gen
    else:

        def plain(model, *values):
            return handler(models.get(model), *bound, *values)

        fn = plain
    fn.__name__ = getattr(handler, "__name__", fn.__name__)
    fn.__doc__ = handler.__doc__
    return guarded(fn)


# --- infill: building the gaps ------------------------------------------------------------------


def span_choices(text: str, spans: list[dict]) -> list[tuple[str, str]]:
    out = []
    for sp in spans:
        chars = sp["chars"].replace("\n", "⏎")
        short = chars if len(chars) <= 24 else chars[:21] + "…"
        out.append((f"{sp['start']}–{sp['end']} “{short}”", f"{sp['start']}:{sp['end']}"))
    return out


def _spans_view(text: str, spans: list[dict]) -> dict:
    _, markers = find_gap_markers(text or "")
    choices = span_choices(text, spans)
    return {
        "spans": spans,
        "preview": plots.mask_preview_html(text or "", [(s["start"], s["end"]) for s in spans], markers),
        "span_list": gr.Dropdown(choices=choices, value=[v for _, v in choices]),
    }


def on_select(text: str, evt: gr.SelectData) -> dict:
    """Remember the last selection in the text box (UTF-16 offsets from the browser)."""
    index = evt.index if isinstance(evt.index, (list, tuple)) else None
    return {"selection": list(index) if index else None}


@guarded
def on_mask(text: str, spans: list[dict], selection) -> dict:
    if not text:
        raise ZonkeyInputError("Type or paste some text first.")
    s, e = selection_to_span(text, selection)
    spans = list(spans or [])
    if len(spans) >= settings.LIMITS["max_spans"]:
        raise ZonkeyInputError(f"At most {settings.LIMITS['max_spans']} spans; remove one first.")
    for sp in spans:
        if s < sp["end"] and sp["start"] < e:
            raise ZonkeyInputError(
                f"The selection {s}–{e} overlaps the masked span {sp['start']}–{sp['end']}; "
                "remove that span first or select other characters."
            )
    spans.append({"start": s, "end": e, "chars": text[s:e]})
    spans.sort(key=lambda sp: sp["start"])
    return {**_spans_view(text, spans), "selection": None}


def on_span_list(text: str, spans: list[dict], kept: list[str]) -> dict:
    """The user removed spans from the list: keep only those still listed."""
    kept = set(kept or [])
    spans = [sp for sp in (spans or []) if f"{sp['start']}:{sp['end']}" in kept]
    return _spans_view(text, spans)


def on_text_change(text: str, spans: list[dict]) -> dict:
    """The text was edited: masked spans whose characters changed are dropped."""
    kept = prune_spans(text or "", list(spans or []))
    if len(kept) < len(spans or []):
        gr.Info("The text changed under a masked span, so that span was removed.")
    return _spans_view(text, kept)


def on_clear_spans(text: str) -> dict:
    return _spans_view(text, [])


@guarded
def run_infill(service: ModelService, text, spans, level, length_mode, length_n, steps, seed, temperature=1.0):
    text = check_input_text(text)
    all_spans = collect_spans(text, [(sp["start"], sp["end"]) for sp in (spans or [])])
    lvl = parse_level(level, service.num_levels)
    length = parse_length(length_mode, length_n)
    steps = parse_steps(steps)
    seed = parse_seed(seed)
    temp = parse_temperature(temperature)
    stream = service.infill_stream(text, all_spans, level=lvl, length=length, steps=steps, seed=seed, temperature=temp)
    used = {
        "text": text,
        "spans": [list(s) for s in all_spans],
        "level": lvl,
        "length": length,
        "steps": steps,
        "seed": seed,
        "temperature": temp,
    }
    yield from stream_view("infill", stream, service, used, {**used, "model": service.name})


@guarded
def run_generate(service: ModelService, num_segments, steps, seed, temperature=1.0, refine=None):
    n = parse_num_segments(num_segments)
    steps = parse_steps(steps)
    seed = parse_seed(seed)
    temp = parse_temperature(temperature)
    refine = parse_refine(refine)
    stream = service.generate_stream(num_segments=n, steps=steps, seed=seed, temperature=temp, refine=refine)
    used = {"num_segments": n, "steps": steps, "seed": seed, "temperature": temp, "refine": refine}
    yield from stream_view("generate", stream, service, used, {**used, "model": service.name})


# --- tokenization -------------------------------------------------------------------------------


@guarded
def run_segment(service: ModelService, baseline, text, threshold) -> dict:
    text = check_input_text(text)
    threshold = parse_threshold(threshold)
    seg = service.segment(text, threshold)
    starts = [lv.starts for lv in seg.levels]
    counts = analysis.segment_counts(text, starts)
    rows = analysis.boundary_scores(text, starts)
    out = {
        "heatmap": plots.bos_heatmap(
            text,
            [lv.char_bos for lv in seg.levels],
            starts,
            title="P(a segment begins at this character)",
            threshold=threshold,
        ),
        "counters": counters_markdown(text, counts),
    }
    for lv in range(2):
        name = f"{plots.level_name(lv)} segments"
        out[f"segments{lv}"] = plots.segments_html(
            text if lv < len(starts) else "", starts[lv] if lv < len(starts) else [], caption=name
        )
    if baseline is not None:
        b_starts, b_scores = baseline.segment(text)
        rows += analysis.boundary_scores(text, [b_starts], source="entropy baseline")
        out["baseline_segments"] = plots.segments_html(text, b_starts, caption="entropy baseline segments")
        out["baseline_heatmap"] = plots.bos_heatmap(
            text,
            [b_scores],
            [b_starts],
            row_names=["next-char entropy"],
            zmax=max(1.0, float(b_scores.max()) if len(b_scores) else 1.0),
            colorbar_title="entropy (bits)",
            title="entropy baseline: next-character entropy and its patch starts",
        )
        bc = analysis.segment_counts(text, [b_starts])[0]
        out["counters"] += f" · entropy baseline: {bc['segments']} segments, {bc['chars_per_segment']:.2f} chars/seg"
    out["scores"] = analysis.score_table(rows)
    return out


def counters_markdown(text: str, counts: list[dict]) -> str:
    parts = [f"**{len(text)}** characters"]
    for c in counts:
        parts.append(
            f"level {c['level']}: **{c['segments']}** segments, **{c['chars_per_segment']:.2f}** chars/segment"
        )
    return " · ".join(parts)
