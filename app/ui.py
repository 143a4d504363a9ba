"""`build_app(models) -> gr.Blocks` (layout and wiring only) and `launch_kwargs()` (one dict of
launch settings, reused by `app.py` and the tests).

The model dropdown under the intro (`#model-choice`) holds each browser page's choice of checkpoint: its
value lives in that user's page and is an input of every model listener and of the curve selector,
which pass it to `ModelRegistry.get`. Changing it updates the status banner and the Model tab for
that page only; the shared services are never swapped."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket

import gradio as gr

from app import settings
from app.api import make_endpoints
from app.callbacks import bind, guarded
from app.models import ModelRegistry
from app.service import BaselineSegmenter, ModelService
from app.tabs.generate import build_generate_tab
from app.tabs.infill import build_infill_tab
from app.tabs.modeltab import build_model_tab, model_tab_updates
from app.tabs.tokenize import build_tokenize_tab

log = logging.getLogger(__name__)

CSS = """
.zk-text { white-space: pre-wrap; line-height: 1.7; font-size: 1.02rem; padding: 10px 12px;
           border: 1px solid var(--border-color-primary); border-radius: 8px; unicode-bidi: plaintext;
           overflow-wrap: anywhere; min-height: 2.2em; }
.zk-muted { color: var(--body-text-color-subdued); }
.zk-caption { font-size: 0.9rem; margin-bottom: 4px; }
mark.zk-fill { background: #ffd166; color: #1b1b1b; border-radius: 3px; padding: 1px 2px;
               box-shadow: 0 0 0 1px #e0a800 inset; }
mark.zk-mask { background: #444; color: #fff; border-radius: 3px; padding: 1px 2px; }
.zk-segs { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.95rem; }
.zk-seg { border-radius: 3px; padding: 1px 0; }
.zk-seg-a { background: #cfe3ff; color: #10243e; }
.zk-seg-b { background: #ffe1c4; color: #3e2410; }
.zk-ws { color: #8a8a8a; }
.zk-banner { padding: 10px 14px; border-radius: 8px; margin-bottom: 6px; }
.zk-banner-error { background: #fde2e1; color: #7a1111; border: 1px solid #f3a5a2; }
.zk-banner-ok { background: var(--background-fill-secondary); color: var(--body-text-color); }
"""

INTRO = """\
# Zonkey — a diffusion language model that learns its own tokenization
Zonkey reads raw characters, learns where segments begin (word-like at level 0, sentence-like at
level 1), compresses each segment into latent vectors and denoises in that latent space. Mask any
span and watch it being filled, generate from noise, or inspect the learned boundaries.
"""


def load_examples() -> dict:
    try:
        data = json.loads(settings.EXAMPLES_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("no examples at %s", settings.EXAMPLES_FILE)
        return {"infill": [], "tokenize": []}
    return {"infill": data.get("infill", []), "tokenize": data.get("tokenize", [])}


def upper_level_caveat(service: ModelService) -> str:
    """A warning when this checkpoint's own metrics.json shows its upper level is weak
    (reconstruction through all levels below 90 %, the training goal): below 50 % word-level
    infill and generation produce gibberish; between 50 % and 90 % they produce rough text with
    misspelled words. Users should know before they try them."""
    from app.modelcard import read_json

    if service.model_dir is None:
        return ""
    metrics, _ = read_json(service.model_dir / "metrics.json")
    acc = (metrics or {}).get("recon_acc_all")
    if not isinstance(acc, (int, float)) or acc >= 0.9:
        return ""
    if acc < 0.5:
        what = "is not trained to a usable state"
        effect = "word-level infill and generation produce gibberish"
    else:
        what = "is only partly trained"
        effect = "word-level infill and generation give rough text with many misspelled words"
    return (
        f'<br><span id="zk-caveat">⚠ Level 1 (sentence level) of this checkpoint {what} '
        f"(reconstruction through both levels: {acc:.2f}); {effect}. "
        "Level 0 (inside words, the Tokenization tab) is the stronger part; see the Model tab.</span>"
    )


def banner_html(service: ModelService) -> str:
    import html

    if service.ready:
        return (
            f'<div class="zk-banner zk-banner-ok" id="zk-status">Model: {html.escape(service.describe())}'
            f"{upper_level_caveat(service)}</div>"
        )
    return (
        '<div class="zk-banner zk-banner-error" id="zk-status" role="alert"><b>No model loaded.</b> '
        f"{html.escape(service.error or '')}</div>"
    )


@guarded
def on_model_change(models: ModelRegistry, name: str) -> dict:
    """The user chose another model on this page: the banner and the Model tab show it (loading it on first
    use). Nothing else changes: each model listener reads the choice on its own request."""
    service = models.get(name)
    return {"banner": banner_html(service), **model_tab_updates(service, models)}


def build_app(
    models: ModelRegistry | ModelService, baseline: BaselineSegmenter | None = None, baseline_note: str = ""
) -> gr.Blocks:
    """The whole UI around shared services: a `ModelRegistry` (the user picks a model per browser page),
    or one `ModelService` (a registry of one). Builds only; never launches. Loads the default model."""
    models = ModelRegistry.coerce(models)
    service = models.get()
    examples = load_examples()
    with gr.Blocks(
        title="Zonkey — hierarchical diffusion LM",
        analytics_enabled=False,
        delete_cache=(3600, 3600),  # exported trajectories are removed from gradio's cache after an hour
    ) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            choice = gr.Dropdown(
                models.names,
                value=models.default,
                label="Model",
                info="applies to this browser page only",
                elem_id="model-choice",
                interactive=True,
                scale=1,
                min_width=240,
            )
            with gr.Column(scale=3):
                banner = gr.HTML(banner_html(service))
        with gr.Tabs(overflow_behavior="wrap"):  # a phone shows every tab, on two rows if need be
            with gr.Tab("Infill", id="infill"):
                build_infill_tab(models, choice, examples["infill"])
            with gr.Tab("Generate", id="generate"):
                build_generate_tab(models, choice)
            with gr.Tab("Tokenization", id="tokenize") as tok_tab:
                build_tokenize_tab(
                    models, choice, baseline, baseline_note or "no baseline configured", examples["tokenize"], tok_tab
                )
            with gr.Tab("Model", id="model"):
                model_tab = build_model_tab(models, choice)
        fn, outs = bind(functools.partial(on_model_change, models), {"banner": banner, **model_tab})
        choice.change(fn, [choice], outs, show_progress="minimal", api_visibility="private")
        segment, infill, generate = make_endpoints(models)
        common = dict(concurrency_id=settings.MODEL_CONCURRENCY_ID, concurrency_limit=1)
        gr.api(segment, api_name="segment", **common)
        gr.api(infill, api_name="infill", **common)
        gr.api(generate, api_name="generate", **common)
    demo.queue(default_concurrency_limit=2, max_size=settings.QUEUE_MAX_SIZE)
    return demo


def launch_kwargs(**overrides) -> dict:
    """Launch settings: loopback on port 7860 unless GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say
    otherwise; local theme and CSS (no external fonts or scripts); no share link."""
    kw = dict(
        server_name=settings.server_name(),
        server_port=settings.server_port(),
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="amber"),
        css=CSS,
        share=False,
        show_error=True,
        footer_links=["api", "gradio"],
        allowed_paths=[],
    )
    kw.update(overrides)
    return kw


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_background(models: ModelRegistry | ModelService, host: str = "127.0.0.1", port: int | None = None):
    """Launch the app for `models` without blocking (tests, notebooks); yields its URL and closes
    the server on exit."""
    demo = build_app(models)
    _, url, _ = demo.launch(
        **launch_kwargs(server_name=host, server_port=port or free_port(host), prevent_thread_lock=True, quiet=True)
    )
    try:
        yield url
    finally:
        demo.close()
