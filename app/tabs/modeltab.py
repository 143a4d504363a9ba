"""Model tab: the model card, metrics beside the baselines, training curves from
`train_log.jsonl`, the configuration and honest limitations, of the model chosen in the model
dropdown. Reads files only; never runs the model."""

from __future__ import annotations

import gradio as gr

from app import callbacks, plots, settings
from app.modelcard import flatten, metrics_rows, numeric_keys, read_json
from app.tabs.viewer import PRIVATE

PREFERRED_CURVES = (
    "loss",
    "heldout/loss",
    "heldout/recon_acc",
    "heldout/boundary_f1_l0",
    "l0/clean_recon",
    "chars_per_sec",
)
LIMITATIONS = """\
### Limitations
- Small models trained on English Wikipedia lead sections (zonkey-small on about 5 million characters
  on two CPU cores, zonkey-base on one GPU; the model card gives each one's data and hardware): fills
  are often plausible in shape (length, spacing, capitalisation) but wrong in content, and
  generations drift after a sentence or two.
- English Wikipedia only: other languages, code and informal text are out of distribution. Any Unicode
  text is accepted (the model reads UTF-8 bytes), but boundaries there mean little.
- Levels 0 and 1 only (characters → word-like → sentence-like); there is no paragraph level.
- Boundary metrics here are computed on the text you paste, with simple rules for word and sentence
  starts (abbreviations count as sentence ends); the model card's figures are on the held-out split.
- Sampling is reproducible for the same seed, settings, checkpoint and library versions on the same
  kind of machine; other machines may differ in the last digits and so in rare cases in the text.
"""


def _baseline_columns(metrics: dict | None) -> dict[str, dict | None]:
    cols: dict[str, dict | None] = {}
    if metrics and isinstance(metrics.get("baselines"), dict):
        cols.update({f"baseline: {k}": v for k, v in metrics["baselines"].items() if isinstance(v, dict)})
    ar, _ = read_json(settings.BASELINE_AR_DIR / "metrics.json")
    if ar:
        cols.setdefault("baseline-ar-small", ar)
    return cols


def _bench_markdown(model_dir) -> str | None:
    """The checkpoint's own benchmark table (another checkpoint's figures would mislead once the
    user can switch models); without a checkpoint directory, the first one under assets/."""
    if model_dir is not None:
        candidates = sorted(model_dir.glob("bench*.md"))
    else:
        candidates = sorted((settings.REPO_ROOT / "assets").glob("**/bench*.md"))
    for p in candidates:
        try:
            return p.read_text(encoding="utf-8")
        except OSError:
            continue
    return None


def default_curve_keys(keys: list[str]) -> list[str]:
    chosen = [k for k in PREFERRED_CURVES if k in keys]
    return chosen or keys[:3]


def _peer_columns(models, name: str) -> dict[str, dict]:
    """The metrics.json of every other model in the registry (read from disk; nothing is loaded),
    so the table compares the page's model with the ones the user could switch to."""
    cols: dict[str, dict] = {}
    for other in models.names:
        path = models.path(other)
        if other == name or path is None:
            continue
        metrics, _ = read_json(path / "metrics.json")
        if metrics:
            cols[other] = {k: v for k, v in metrics.items() if k != "baselines"}
    return cols


def model_tab_view(service, models) -> dict[str, dict]:
    """What the Model tab shows for `service`: {component name: its properties}. The tab is built
    from the default model's view and updated to the page's model when the choice changes. The
    metrics table has a column for each other model of `models` (the registry) beside the page's
    model and the baselines."""
    card = service.card()
    metrics = {k: v for k, v in (card.metrics or {}).items() if k != "baselines"} if card.metrics else None
    baselines = _baseline_columns(card.metrics)
    columns = {service.name: metrics, **_peer_columns(models, service.name), **baselines}
    rows = metrics_rows(columns)
    bench = _bench_markdown(service.model_dir)
    keys = numeric_keys(card.log)
    curve_keys = default_curve_keys(keys)
    cfg = service.config
    flat_metrics = {k: v for k, v in flatten(card.metrics).items() if not isinstance(v, list)} if card.metrics else {}
    return {
        "loaded": {
            "value": f"**Loaded:** {service.describe()}" if service.ready else f"**No model loaded.** {service.error}"
        },
        "notes": {
            "value": "Not shown: " + "; ".join(card.notes) + "." if card.notes else "",
            "visible": bool(card.notes),
        },
        "metrics_title": {"value": "### Metrics" + ("" if baselines else " (no baseline figures found)")},
        "metrics": {"value": {"headers": ["metric", *columns], "data": rows}, "visible": bool(rows)},
        "no_metrics": {"visible": not rows},
        "bench_box": {"visible": bench is not None},
        "bench": {"value": bench or ""},
        "curve_keys": {"choices": keys, "value": curve_keys, "visible": bool(keys)},
        "curves": {"value": plots.training_curves(card.log, curve_keys), "visible": bool(keys)},
        "no_curves": {"visible": not keys},
        "config": {"value": cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else {}},
        "metrics_json": {"value": flat_metrics, "visible": bool(card.metrics)},
        "card_box": {"open": card.readme is not None and not rows},
        "readme": {"value": card.readme or "This checkpoint has no model card (README.md)."},
    }


def model_tab_updates(service, models) -> dict:
    """`model_tab_view` as gradio updates, for a listener's outputs."""
    return {name: gr.update(**props) for name, props in model_tab_view(service, models).items()}


def curves_for(service, keys) -> dict:
    return {"curves": plots.training_curves(service.card().log, keys or [])}


def build_model_tab(models, model_choice) -> dict:
    """The Model tab of `models`' default model. `model_choice` (the model dropdown) is an input
    of the curve selector, so the curves come from the page's model. Returns the components
    by the names of `model_tab_view`."""
    v = model_tab_view(models.get(), models)
    c: dict = {}
    c["loaded"] = gr.Markdown(**v["loaded"], elem_id="model-loaded")
    c["notes"] = gr.Markdown(**v["notes"], elem_classes=["zk-muted"])
    c["metrics_title"] = gr.Markdown(**v["metrics_title"])
    c["metrics"] = gr.Dataframe(**v["metrics"], interactive=False, elem_id="model-metrics", wrap=True, max_height=420)
    c["no_metrics"] = gr.Markdown(
        "No `metrics.json` for this checkpoint yet (it is written by the evaluation script).", **v["no_metrics"]
    )
    with gr.Accordion("Benchmark (speed and quality beside the baselines)", open=False, **v["bench_box"]) as box:
        c["bench_box"] = box
        c["bench"] = gr.Markdown(**v["bench"])

    gr.Markdown("### Training curves")
    c["curve_keys"] = gr.Dropdown(
        **v["curve_keys"],
        multiselect=True,
        max_choices=6,
        label="Logged values (training records as lines, held-out evaluations as markers)",
        elem_id="model-curve-keys",
    )
    c["curves"] = gr.Plot(**v["curves"], show_label=False, elem_id="model-curves")
    c["no_curves"] = gr.Markdown("No `train_log.jsonl` for this checkpoint.", **v["no_curves"])
    fn, outs = callbacks.bind(callbacks.for_model(models, curves_for), {"curves": c["curves"]})
    c["curve_keys"].change(
        fn,
        [model_choice, c["curve_keys"]],
        outs,
        show_progress="hidden",
        **PRIVATE,
    )

    with gr.Accordion("Configuration", open=False):
        c["config"] = gr.JSON(**v["config"], elem_id="model-config")
        c["metrics_json"] = gr.JSON(**v["metrics_json"], label="metrics.json")
    with gr.Accordion("Model card", **v["card_box"]) as box:
        c["card_box"] = box
        c["readme"] = gr.Markdown(**v["readme"], elem_id="model-readme")
    gr.Markdown(LIMITATIONS)
    return c
