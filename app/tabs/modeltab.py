"""Model tab: the model card, metrics beside the baselines, training curves from
`train_log.jsonl`, the configuration and honest limitations. Reads files only; never runs the model."""

from __future__ import annotations

import gradio as gr

from app import plots, settings
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
- A small model trained on about 5 million characters of English Wikipedia lead sections on two CPU
  cores: fills are often plausible in shape (length, spacing, capitalisation) but wrong in content,
  and generations drift after a sentence or two.
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
    candidates = []
    if model_dir is not None:
        candidates += sorted(model_dir.glob("bench*.md"))
    candidates += sorted((settings.REPO_ROOT / "assets").glob("**/bench*.md"))
    for p in candidates:
        try:
            return p.read_text(encoding="utf-8")
        except OSError:
            continue
    return None


def default_curve_keys(keys: list[str]) -> list[str]:
    chosen = [k for k in PREFERRED_CURVES if k in keys]
    return chosen or keys[:3]


def build_model_tab(service) -> dict:
    card = service.card()
    c: dict = {}
    gr.Markdown(f"**Loaded:** {service.describe()}" if service.ready else f"**No model loaded.** {service.error}")
    if card.notes:
        gr.Markdown("Not shown: " + "; ".join(card.notes) + ".", elem_classes=["zk-muted"])

    metrics = {k: v for k, v in (card.metrics or {}).items() if k != "baselines"} if card.metrics else None
    columns = {service.name: metrics, **_baseline_columns(card.metrics)}
    rows = metrics_rows(columns)
    gr.Markdown("### Metrics" + ("" if len(columns) > 1 else " (no baseline figures found)"))
    if rows:
        c["metrics"] = gr.Dataframe(
            rows, headers=["metric", *columns], interactive=False, elem_id="model-metrics", wrap=True, max_height=420
        )
    else:
        gr.Markdown("No `metrics.json` for this checkpoint yet (it is written by the evaluation script).")
    bench = _bench_markdown(service.model_dir)
    if bench:
        with gr.Accordion("Benchmark (speed and quality beside the baselines)", open=False):
            gr.Markdown(bench)

    gr.Markdown("### Training curves")
    keys = numeric_keys(card.log)
    if keys:
        c["curve_keys"] = gr.Dropdown(
            keys,
            value=default_curve_keys(keys),
            multiselect=True,
            max_choices=6,
            label="Logged values (training records as lines, held-out evaluations as markers)",
            elem_id="model-curve-keys",
        )
        c["curves"] = gr.Plot(
            plots.training_curves(card.log, default_curve_keys(keys)), show_label=False, elem_id="model-curves"
        )
        c["curve_keys"].change(
            lambda ks: plots.training_curves(card.log, ks or []),
            c["curve_keys"],
            c["curves"],
            show_progress="hidden",
            **PRIVATE,
        )
    else:
        gr.Markdown("No `train_log.jsonl` for this checkpoint.")

    with gr.Accordion("Configuration", open=False):
        cfg = service.config
        gr.JSON(cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else {}, elem_id="model-config")
        if card.metrics:
            gr.JSON({k: v for k, v in flatten(card.metrics).items() if not isinstance(v, list)}, label="metrics.json")
    with gr.Accordion("Model card", open=card.readme is not None and not rows):
        gr.Markdown(card.readme or "This checkpoint has no model card (README.md).", elem_id="model-readme")
    gr.Markdown(LIMITATIONS)
    return c
