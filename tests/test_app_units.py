"""App pieces without a server: validation, plots, model-card readers, boundary analysis, the
service's streaming and checkpoint resolution, the callbacks, and that the UI builds."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from app import analysis, modelcard, plots, settings, validation  # noqa: E402
from app.service import Finished, ModelService, ModelUnavailable, resolve_model_dir  # noqa: E402
from zonkey import ZonkeyConfig  # noqa: E402
from zonkey.outputs import TrajectoryStep  # noqa: E402
from zonkey.validation import ZonkeyInputError  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. It was not amused."


@pytest.fixture(scope="module")
def service():
    return ModelService.tiny(seed=0)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [("abc", 2, 2), ("a🫏b", 1, 1), ("a🫏b", 3, 2), ("a🫏b", 2, 2), ("a🫏b", 4, 3), ("", 5, 0), ("abc", -1, 0)],
)
def test_utf16_to_index(text, offset, expected):
    assert validation.utf16_to_index(text, offset) == expected


def test_selection_to_span_handles_emoji_and_reversed_ranges():
    text = "I 🫏 love it"
    # the browser counts the donkey as two UTF-16 units: "love" is at [5, 9] there, [4, 8] in Python
    assert validation.selection_to_span(text, [5, 9]) == (4, 8)
    assert validation.selection_to_span(text, [9, 5]) == (4, 8)
    with pytest.raises(ZonkeyInputError, match="empty"):
        validation.selection_to_span(text, [3, 3])
    with pytest.raises(ZonkeyInputError, match="Select"):
        validation.selection_to_span(text, None)


@pytest.mark.parametrize("value", [1.5, "x", None, True, float("nan"), float("inf"), 1e300, "1e400"])
def test_parse_int_rejects_non_integers(value):
    with pytest.raises(ZonkeyInputError):
        validation.parse_int(value, "steps", 1, 10)


def test_parse_numbers_accept_integral_floats_and_strings():
    assert validation.parse_steps(20.0) == 20
    assert validation.parse_seed("7") == 7
    assert validation.parse_seed(2**63 - 1) == 2**63 - 1
    with pytest.raises(ZonkeyInputError, match="out of range"):
        validation.parse_seed(2**63)
    with pytest.raises(ZonkeyInputError, match="out of range"):
        validation.parse_steps(10**9)


def test_parse_level_length_segments():
    assert validation.parse_level("auto") == "auto"
    assert validation.parse_level("1") == 1
    assert validation.parse_level(0.0) == 0
    with pytest.raises(ZonkeyInputError):
        validation.parse_level("7")
    assert validation.parse_length("keep") == "keep"
    assert validation.parse_length("chars", 5.0) == 5
    assert validation.parse_length(12) == 12
    assert validation.parse_length("12") == 12
    with pytest.raises(ZonkeyInputError):
        validation.parse_length("long")
    with pytest.raises(ZonkeyInputError):
        validation.parse_length("chars", 0)
    assert validation.parse_num_segments(0) is None
    assert validation.parse_num_segments(3) == 3
    with pytest.raises(ZonkeyInputError):
        validation.parse_num_segments(999)


@pytest.mark.parametrize("bad", ["", "   \n", "a" * (settings.LIMITS["max_text_chars"] + 1), "ab\x00c", "x\ud800y", 5])
def test_check_input_text_rejects(bad):
    with pytest.raises(ZonkeyInputError):
        validation.check_input_text(bad)


@pytest.mark.parametrize("ok", ["tab\there\nnew line", "שלום עולם", "e\u0301te", "🫏 emoji", "Ünïcödé"])
def test_check_input_text_accepts_unicode(ok):
    assert validation.check_input_text(ok) == ok


def test_collect_spans_merges_masks_and_markers():
    text = "one ___ three [...] five"
    assert validation.collect_spans(text, [(0, 3)]) == [(0, 3), (4, 7), (14, 19)]
    assert validation.collect_spans(text, [(4, 7)]) == [(4, 7), (14, 19)]  # a mask on a marker counts once
    with pytest.raises(ZonkeyInputError, match="Nothing to fill"):
        validation.collect_spans("no gaps", [])
    with pytest.raises(ZonkeyInputError, match="overlap"):
        validation.collect_spans(text, [(2, 6)])
    with pytest.raises(ZonkeyInputError, match="out of range"):
        validation.collect_spans("abc ___", [(5, 50)])
    with pytest.raises(ZonkeyInputError, match="whole text"):
        validation.collect_spans("abc", [(0, 3)])


def test_prune_spans_drops_edited_spans():
    spans = [{"start": 0, "end": 3, "chars": "The"}, {"start": 4, "end": 9, "chars": "quick"}]
    assert validation.prune_spans("The slow fox", spans) == spans[:1]


# --- plots --------------------------------------------------------------------------------------


def test_heatmap_has_one_cell_per_character_and_level():
    text = "a b\nc\x06🫏"
    bos = [np.linspace(0, 1, len(text)), np.zeros(len(text))]
    fig = plots.bos_heatmap(text, bos, [[0, 2], [0]])
    z = fig.data[0].z
    assert len(z) == 2 and all(len(row) == len(text) for row in z)
    ticks = list(fig.layout.xaxis.ticktext)
    assert ticks[1] == "·" and ticks[3] == "⏎" and ticks[5] == "␆" and ticks[6] == "🫏"
    json.loads(fig.to_json())


def test_long_heatmap_opens_on_a_window():
    text = "x" * 1000
    fig = plots.bos_heatmap(text, [np.zeros(1000)])
    assert len(fig.data[0].z[0]) == 1000
    assert fig.layout.xaxis.range[1] < 1000


def test_html_views_escape_and_highlight():
    html = plots.filled_html("a <b> c", [(2, 5)])
    assert "<b>" not in html.replace('<mark class="zk-fill" data-start="2" data-end="5"', "")
    assert '<mark class="zk-fill" data-start="2" data-end="5"' in html and "&lt;b&gt;" in html
    assert 'dir="auto"' in html


def test_segments_html_alternates_and_shows_whitespace():
    html = plots.segments_html("ab cd\nef", [0, 3, 6])
    assert html.count("zk-seg-a") == 2 and html.count("zk-seg-b") == 1
    assert "·" in html and "⏎" in html


def test_training_curves_split_train_and_heldout():
    records = [{"step": i, "loss": 1 / (i + 1)} for i in range(10)] + [{"step": 9, "loss": 0.2, "split": "heldout"}]
    fig = plots.training_curves(records, ["loss"])
    assert {t.name for t in fig.data} == {"train", "heldout"}
    big = [{"step": i, "loss": 1.0} for i in range(10_000)]
    fig = plots.training_curves(big, ["loss"], max_points=500)
    assert len(fig.data[0].x) <= 501 and fig.data[0].x[-1] == 9999
    assert plots.training_curves([], ["loss"]).layout.annotations
    # held-out points only in a later panel: still one legend entry per split, one colour per split
    records = [{"step": i, "loss": 1.0, "acc": 0.5} for i in range(3)] + [{"step": 2, "acc": 0.6, "split": "heldout"}]
    fig = plots.training_curves(records, ["loss", "acc"])
    assert sorted(t.name for t in fig.data if t.showlegend) == ["heldout", "train"]
    colours = {t.name: {u.line.color for u in fig.data if u.name == t.name} for t in fig.data}
    assert all(len(c) == 1 for c in colours.values()) and colours["train"] != colours["heldout"]


# --- model card ---------------------------------------------------------------------------------


def test_load_card_degrades_gracefully(tmp_path):
    card = modelcard.load_card(tmp_path)
    assert card.readme is None and card.metrics is None and card.log == [] and len(card.notes) == 3
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# Card\ntext\n")
    (tmp_path / "metrics.json").write_text('{"recon": {"accuracy": 0.9}, "bpc": 1.5}')
    (tmp_path / "train_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss"\n')
    card = modelcard.load_card(tmp_path)
    assert card.readme.startswith("# Card")
    assert modelcard.flatten(card.metrics) == {"recon/accuracy": 0.9, "bpc": 1.5}
    assert card.log == [{"step": 1, "loss": 2.0}] and "malformed" in card.notes[0]


def test_stage_logs_become_one_curve(tmp_path):
    (tmp_path / "train_log_stage1.jsonl").write_text('{"event": "start"}\n{"step": 10, "loss": 3.0}\n')
    (tmp_path / "train_log.jsonl").write_text('{"step": 5, "loss": 2.0}\n{"step": 7, "split": "heldout"}\n')
    log, note = modelcard.read_stage_logs(tmp_path)
    assert note is None
    assert [(r.get("step"), r["stage"]) for r in log] == [(None, 1), (10, 1), (15, 2), (17, 2)]


def test_compare_metrics_uses_metric_direction():
    small = {"recon": {"accuracy": 0.8}, "bpc": 2.0}
    assert modelcard.compare_metrics({"recon": {"accuracy": 0.9}, "bpc": 1.5}, small) == 1
    assert modelcard.compare_metrics({"recon": {"accuracy": 0.7}, "bpc": 2.5}, small) == -1
    assert modelcard.compare_metrics({"other": 1}, small) == 0
    rows = modelcard.metrics_rows({"a": small, "b": None})
    assert rows == [["recon/accuracy", 0.8, ""], ["bpc", 2.0, ""]]


# --- analysis -----------------------------------------------------------------------------------


def test_boundary_scores_perfect_segmentation():
    text = "Hello there. General Kenobi."
    words = [0, 6, 13, 21]
    rows = analysis.boundary_scores(text, [words, [0, 13]])
    assert len(rows) == 4
    assert all(r["f1"] == 1.0 for r in rows)
    counts = analysis.segment_counts(text, [words, [0, 13]])
    assert counts[0]["segments"] == 4 and counts[1]["segments"] == 2


# --- service ------------------------------------------------------------------------------------


def _write_ckpt(path, metrics=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))


def test_resolve_model_dir_order(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "SMALL_DIR", tmp_path / "zonkey-small")
    monkeypatch.setattr(settings, "BASE_DIR", tmp_path / "zonkey-base")
    path, why = resolve_model_dir({})
    assert path is None and "No trained checkpoint" in why
    _write_ckpt(tmp_path / "zonkey-small", {"bpc": 2.0})
    assert resolve_model_dir({})[0] == tmp_path / "zonkey-small"
    _write_ckpt(tmp_path / "zonkey-base", {"bpc": 2.5})
    assert resolve_model_dir({})[0] == tmp_path / "zonkey-small"  # base is worse: small stays
    (tmp_path / "zonkey-base" / "metrics.json").write_text('{"bpc": 1.0}')
    assert resolve_model_dir({})[0] == tmp_path / "zonkey-base"
    path, why = resolve_model_dir({settings.MODEL_ENV: str(tmp_path / "nowhere")})
    assert path is None and settings.MODEL_ENV in why
    assert resolve_model_dir({settings.MODEL_ENV: str(tmp_path / "zonkey-small")})[0] == tmp_path / "zonkey-small"


def test_service_without_model_reports_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "SMALL_DIR", tmp_path / "a")
    monkeypatch.setattr(settings, "BASE_DIR", tmp_path / "b")
    svc = ModelService.from_env({})
    assert not svc.ready and "No trained checkpoint" in svc.describe()
    with pytest.raises(ModelUnavailable):
        svc.segment("abc")
    with pytest.raises(ModelUnavailable):
        svc.infill_stream("abc ___", [(4, 7)])


def test_broken_checkpoint_becomes_an_error_not_a_crash(tmp_path):
    _write_ckpt(tmp_path / "broken")
    svc = ModelService.from_env({settings.MODEL_ENV: str(tmp_path / "broken")})
    assert not svc.ready and "Could not load" in svc.error


def test_stream_yields_steps_then_finished(service):
    events = list(service.infill_stream("The cat ___ on the mat.", [(8, 11)], steps=5, seed=3))
    steps, done = events[:-1], events[-1]
    assert isinstance(done, Finished) and all(isinstance(s, TrajectoryStep) for s in steps)
    assert [s.step for s in steps] == [s.step for s in done.result.trajectory]
    assert done.result.text in done.boundaries or not done.result.text.strip()
    again = service.infill("The cat ___ on the mat.", [(8, 11)], steps=5, seed=3)
    assert again.text == done.result.text  # the stream and the plain call agree (same seed)


class _SlowSampler:
    """A model stand-in whose sampler takes 1000 steps of 10 ms and counts them."""

    def __init__(self):
        self.steps_run = 0

    def generate(self, num_segments=None, steps=20, seed=0, callback=None, temperature=1.0, refine=None):
        for k in range(1000):
            time.sleep(0.01)
            self.steps_run += 1
            callback(TrajectoryStep(k, 1 - k / 1000, 0, "x", [(0, 1)]))
        raise AssertionError("the sampler should have been stopped")

    def segment(self, text, threshold=0.5):
        return text


def test_stream_closed_early_stops_the_worker():
    slow = _SlowSampler()
    svc = ModelService(slow, name="slow")
    stream = svc.generate_stream(steps=1000, seed=1)
    for _ in range(3):
        next(stream)
    stream.close()  # what happens when the client disconnects or Stop is pressed
    t0 = time.perf_counter()
    assert svc.segment("still serving") == "still serving"  # waits for the lock: the worker has ended
    assert time.perf_counter() - t0 < 2
    assert slow.steps_run < 20
    assert not [t for t in threading.enumerate() if t.name == "zonkey-sample"]


def test_stream_surfaces_model_errors(service):
    with pytest.raises(ZonkeyInputError):
        list(service.infill_stream("abc", [(0, 3)]))


# --- callbacks and UI ---------------------------------------------------------------------------


def test_run_infill_callback_streams_then_replays(service, tmp_path, monkeypatch):
    from app import callbacks
    from app import replay as rp

    monkeypatch.setattr(rp, "EXPORT_DIR", tmp_path)
    monkeypatch.setattr(settings, "STREAM_MIN_INTERVAL_S", 0.0)
    updates = list(
        callbacks.run_infill(service, TEXT, [{"start": 4, "end": 9, "chars": "quick"}], "auto", "auto", 8, 6, 0)
    )
    start, final = updates[0], updates[-1]
    assert start["replay"] is None and start["reproduce"] == "Run in progress."  # nothing of a previous run
    assert not start["heatmap"].data
    live = [u for u in updates[1:-1] if "view" in u]
    assert len(live) == len(final["replay"]["steps"])  # every sampler step was streamed before the end
    assert all(u["caption"].startswith("**Step") and "zk-fill" in u["view"] for u in live)
    export = final["export"].value["path"]
    assert "replay" in final and export.endswith(".json")
    replay = final["replay"]
    with open(export, encoding="utf-8") as f:
        payload = json.load(f)
    assert payload["settings"]["seed"] == 0 and payload["result"]["text"] == replay["steps"][-1].text
    first = rp.on_scrub(replay, 0)
    assert "Step" in first["caption"] and "zk-fill" in first["view"]
    tick = rp.on_tick(replay, 0)
    assert tick["slider"] == 1
    end = rp.on_tick(replay, len(replay["steps"]) - 2)
    assert end["timer"].active is False


def test_step_label_names_the_same_step_in_caption_and_plot_titles():
    from app import replay as rp

    def step(k):
        return TrajectoryStep(k, 0.5, 1, "abc", [], [0.9, 0.2])

    assert rp.step_label(step(5), 20) == "step 5/20"
    assert rp.step_label(step(26), 20, "infill") == "gap 2 · step 5/20"
    assert rp.step_label(step(41), 20, "generate") == "second pass · step 20/20"
    assert rp.step_caption(step(41), 20, kind="generate").startswith("**Step 20/20**")
    replay = {"kind": "generate", "steps": [step(0), step(41)], "boundaries": {}, "total": 20, "elapsed": 1.0}
    out = rp.frame(replay, 1)
    assert out["existence"].layout.title.text.endswith(", second pass · step 20/20")
    assert "step 41" not in out["existence"].layout.title.text
    assert rp.frame(replay, 0)["existence"].layout.title.text.endswith(", step 0/20")  # step 0 is named too


def test_reproduce_snippet_points_at_the_space_or_the_local_server(monkeypatch):
    from app import replay as rp

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    assert 'Client("http://127.0.0.1:7861/")' in rp.reproduce_snippet("infill", {"seed": 0})
    monkeypatch.setenv("SPACE_ID", "someone/zonkey")
    assert 'Client("someone/zonkey").predict(seed=0, api_name="/infill")' in rp.reproduce_snippet("infill", {"seed": 0})


def test_heatmap_marks_forced_starts_apart_from_threshold_starts():
    text = "abcdefgh"
    bos = [np.array([0.0, 0.1, 0.9, 0.2, 0.0, 0.8, 0.1, 0.0])]
    fig = plots.bos_heatmap(text, bos, [[0, 2, 4, 5]], threshold=0.5)
    by_name = {t.name: list(t.x) for t in fig.data[1:]}
    assert by_name == {"segment start": [2, 5], "start forced (first character or maximum length)": [0, 4]}
    fig = plots.bos_heatmap(text, bos, [[0, 2, 4, 5]])  # no threshold: one kind of dot
    assert [(t.name, list(t.x)) for t in fig.data[1:]] == [("segment start", [0, 2, 4, 5])]


def test_run_callbacks_turn_bad_input_into_warnings(service):
    from app import callbacks

    with pytest.warns(UserWarning, match="Nothing to fill"):
        assert list(callbacks.run_infill(service, "no gap here", [], "auto", "auto", 8, 5, 0)) == [{}]
    with pytest.warns(UserWarning, match="out of range"):
        assert list(callbacks.run_generate(service, 0, 10**6, 0)) == [{}]
    with pytest.warns(UserWarning, match="empty"):
        assert callbacks.run_segment(service, None, "  ", 0.5) == {}
    with pytest.warns(UserWarning, match="overlaps"):
        assert callbacks.on_mask("abcdef", [{"start": 0, "end": 3, "chars": "abc"}], [2, 4]) == {}


def test_bind_turns_a_warning_only_update_into_skips_for_every_output():
    """A handler that only warned returns (or yields) {}; gradio must get one no-op update per
    output component, since a bare {} would be read as a single output value and fail."""
    import gradio as gr

    from app import callbacks

    outs = {"a": "component-a", "b": "component-b"}
    fn, comps = callbacks.bind(lambda: {}, outs)
    assert comps == ["component-a", "component-b"]
    assert fn() == {"component-a": gr.skip(), "component-b": gr.skip()}
    fn, _ = callbacks.bind(lambda: {"b": 2, "unbound": 3}, outs)
    assert fn() == {"component-b": 2}

    def stream():
        yield {"a": 1}
        yield {}

    gen, _ = callbacks.bind(stream, outs)
    assert list(gen()) == [{"component-a": 1}, {"component-a": gr.skip(), "component-b": gr.skip()}]


def test_run_segment_callback(service):
    from app import callbacks

    out = callbacks.run_segment(service, None, TEXT, 0.5)
    assert len(out["heatmap"].data[0].z[0]) == len(TEXT)
    assert len(out["scores"]) == 4 and "characters" in out["counters"]


def test_build_app_with_and_without_model(service, tmp_path, monkeypatch):
    from app.ui import build_app, launch_kwargs

    demo = build_app(service)
    api = {d["api_name"]: d for d in demo.config["dependencies"] if d.get("api_visibility") == "public"}
    assert set(api) == {"segment", "infill", "generate"}
    monkeypatch.setattr(settings, "SMALL_DIR", tmp_path / "a")
    monkeypatch.setattr(settings, "BASE_DIR", tmp_path / "b")
    demo = build_app(ModelService.from_env({}))
    assert any("No model loaded" in str(c.get("props", {}).get("value", "")) for c in demo.config["components"])
    kw = launch_kwargs()
    assert kw["server_name"] == os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1") and kw["share"] is False


def test_examples_are_held_out_and_have_gaps():
    from training.data import is_heldout
    from zonkey.validation import find_gap_markers

    data = json.loads(settings.EXAMPLES_FILE.read_text(encoding="utf-8"))
    assert data["infill"] and data["tokenize"]
    for ex in data["infill"]:
        assert is_heldout(ex["title"]), ex["title"]
        assert find_gap_markers(ex["text"])[1], ex["text"]
    for ex in data["tokenize"]:
        assert is_heldout(ex["title"]), ex["title"]


def test_tiny_config_is_the_tiny_preset(service):
    assert service.config == ZonkeyConfig.preset("tiny")


class _FakePatcher:
    """Stands in for the entropy baseline: a patch starts after every space."""

    def segment(self, text):
        starts = [0] + [i for i in range(1, len(text)) if text[i - 1] == " "]
        return starts, np.linspace(0, 3, len(text))


def test_baseline_segmenter_adapts_and_shows_beside_zonkey(service, tmp_path):
    from app import callbacks
    from app.service import BaselineSegmenter

    seg, note = BaselineSegmenter.load(tmp_path / "absent")
    assert seg is None and "absent" in note
    baseline = BaselineSegmenter(_FakePatcher())
    starts, scores = baseline.segment("ab cd")
    assert starts == [0, 3] and len(scores) == 5
    out = callbacks.run_segment(service, baseline, TEXT, 0.5)
    assert "entropy baseline" in out["counters"] and "zk-seg" in out["baseline_segments"]
    assert {row[0] for row in out["scores"]} == {"zonkey", "entropy baseline"}
    assert len(out["baseline_heatmap"].data[0].z[0]) == len(TEXT)


def test_model_tab_reads_card_metrics_and_log(service, tmp_path):
    from app.ui import build_app

    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# zonkey-small\nTrained on Wikipedia.\n")
    (tmp_path / "metrics.json").write_text(
        json.dumps({"recon_acc_all": 0.9, "l0_word_tol1_f1": 0.8, "gen_samples": []})
    )
    log = [{"event": "start", "params": 1}] + [{"step": i, "loss": 1.0 / (i + 1), "lr": 1e-3} for i in range(1, 50)]
    log.append({"step": 49, "split": "heldout", "heldout/loss": 0.5})
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    svc = ModelService(service.model, name="zonkey-small", model_dir=tmp_path)
    demo = build_app(svc)
    comps = {c.get("props", {}).get("elem_id"): c for c in demo.config["components"]}
    table = comps["model-metrics"]["props"]["value"]
    # the Zonkey column holds exactly this checkpoint's metrics (baseline columns may add rows)
    assert [row[0] for row in table["data"] if row[1] != ""] == ["recon_acc_all", "l0_word_tol1_f1"]
    assert comps["model-curve-keys"]["props"]["value"] == ["loss", "heldout/loss"]
    assert "Trained on Wikipedia" in comps["model-readme"]["props"]["value"]


def test_banner_warns_when_the_upper_level_is_not_usable(service, tmp_path):
    from app.ui import banner_html

    svc = ModelService(service.model, name="zonkey-small", model_dir=tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"recon_acc_all": -0.33}))
    assert "zk-caveat" in banner_html(svc) and "-0.33" in banner_html(svc) and "gibberish" in banner_html(svc)
    (tmp_path / "metrics.json").write_text(json.dumps({"recon_acc_all": 0.8}))
    assert "only partly trained" in banner_html(svc) and "0.80" in banner_html(svc)
    (tmp_path / "metrics.json").write_text(json.dumps({"recon_acc_all": 0.95}))
    assert "zk-caveat" not in banner_html(svc)
    (tmp_path / "metrics.json").unlink()
    assert "zk-caveat" not in banner_html(svc)


# --- model registry and the per-page model choice --------------------------------------------


def _tiny(seed: int, name: str, model_dir=None) -> ModelService:
    return ModelService(ModelService.tiny(seed=seed).model, name=name, model_dir=model_dir)


class _CountingLoader:
    """Stands in for ModelService.load: records each (path, name) and takes 50 ms per load."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def __call__(self, path, name):
        time.sleep(0.05)
        with self.lock:
            self.calls.append((path, name))
        return ModelService(object(), name=name, model_dir=path)


def _fake_shipped(tmp_path, monkeypatch, small_metrics, base_metrics):
    monkeypatch.setattr(settings, "SMALL_DIR", tmp_path / "zonkey-small")
    monkeypatch.setattr(settings, "BASE_DIR", tmp_path / "zonkey-base")
    _write_ckpt(tmp_path / "zonkey-small", small_metrics)
    _write_ckpt(tmp_path / "zonkey-base", base_metrics)


def test_registry_lists_the_shipped_models_and_defaults_to_resolve_model_dir():
    from app.models import ModelRegistry

    models = ModelRegistry.from_env({}, loader=_CountingLoader())
    shipped = [p.name for p in (settings.SMALL_DIR, settings.BASE_DIR) if any(p.glob("*.safetensors"))]
    if not shipped:
        pytest.skip("no shipped checkpoint")
    assert models.names == shipped
    assert models.path(models.default) == resolve_model_dir({})[0]
    assert not any(models.is_loaded(n) for n in models.names)  # building the registry loads nothing


@pytest.mark.parametrize(("base_bpc", "default"), [(2.5, "zonkey-small"), (1.0, "zonkey-base")])
def test_registry_default_follows_resolve_model_dir(tmp_path, monkeypatch, base_bpc, default):
    from app.models import ModelRegistry

    _fake_shipped(tmp_path, monkeypatch, {"bpc": 2.0}, {"bpc": base_bpc})
    models = ModelRegistry.from_env({}, loader=_CountingLoader())
    assert models.names == ["zonkey-small", "zonkey-base"]
    assert models.default == default == resolve_model_dir({})[0].name
    assert models.resolve("") == models.resolve(None) == models.resolve("  ") == default


def test_registry_loads_each_model_once_on_first_use(tmp_path, monkeypatch):
    from app.models import ModelRegistry

    _fake_shipped(tmp_path, monkeypatch, {"bpc": 2.0}, {"bpc": 2.5})
    loader = _CountingLoader()
    models = ModelRegistry.from_env({}, loader=loader)
    got: list[ModelService] = []
    threads = [threading.Thread(target=lambda: got.append(models.get("zonkey-base"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.calls == [(tmp_path / "zonkey-base", "zonkey-base")]  # eight first requests, one load
    assert len({id(s) for s in got}) == 1 and got[0].name == "zonkey-base"
    assert models.is_loaded("zonkey-base") and not models.is_loaded("zonkey-small")
    assert models.get("zonkey-base") is got[0] and len(loader.calls) == 1  # cached
    assert models.get("").name == "zonkey-small" and len(loader.calls) == 2


def test_registry_unknown_name_lists_the_valid_names(tmp_path, monkeypatch):
    from app.models import ModelRegistry, UnknownModel

    _fake_shipped(tmp_path, monkeypatch, {"bpc": 2.0}, {"bpc": 2.5})
    models = ModelRegistry.from_env({}, loader=_CountingLoader())
    with pytest.raises(UnknownModel) as info:
        models.get("zonkey-huge")
    msg = str(info.value)
    assert isinstance(info.value, ZonkeyInputError)
    assert "'zonkey-huge'" in msg and "'zonkey-small'" in msg and "'zonkey-base'" in msg and "default" in msg


def test_registry_adds_zonkey_model_as_the_default(tmp_path, monkeypatch):
    from app.models import ModelRegistry

    _fake_shipped(tmp_path, monkeypatch, {"bpc": 2.0}, {"bpc": 2.5})
    _write_ckpt(tmp_path / "mine" / "custom")
    models = ModelRegistry.from_env({settings.MODEL_ENV: str(tmp_path / "mine" / "custom")}, loader=_CountingLoader())
    assert models.names == ["zonkey-small", "zonkey-base", "custom"] and models.default == "custom"
    assert models.path("") == tmp_path / "mine" / "custom"
    # the variable naming a shipped checkpoint selects it rather than listing it twice
    models = ModelRegistry.from_env({settings.MODEL_ENV: str(tmp_path / "zonkey-base")}, loader=_CountingLoader())
    assert models.names == ["zonkey-small", "zonkey-base"] and models.default == "zonkey-base"
    # another directory with a shipped checkpoint's name gets a distinct name
    _write_ckpt(tmp_path / "mine" / "zonkey-small")
    models = ModelRegistry.from_env({settings.MODEL_ENV: str(tmp_path / "mine" / "zonkey-small")})
    assert models.default == f"zonkey-small (${settings.MODEL_ENV})"
    assert models.path("zonkey-small") == tmp_path / "zonkey-small"


def test_registry_invalid_zonkey_model_is_a_clear_error_and_shipped_models_stay(tmp_path, monkeypatch):
    from app.models import ModelRegistry

    _fake_shipped(tmp_path, monkeypatch, {"bpc": 2.0}, {"bpc": 2.5})
    loader = _CountingLoader()
    models = ModelRegistry.from_env({settings.MODEL_ENV: str(tmp_path / "nowhere")}, loader=loader)
    svc = models.get("")
    assert not svc.ready and "nowhere" in svc.error and "not a checkpoint directory" in svc.error
    assert models.default == f"${settings.MODEL_ENV}" and loader.calls == []
    with pytest.raises(ModelUnavailable, match="not a checkpoint directory"):
        svc.segment("abc")
    assert models.get("zonkey-small").ready


def test_registry_broken_checkpoint_does_not_break_the_others(tmp_path, service):
    from app.models import ModelRegistry

    _write_ckpt(tmp_path / "broken")
    models = ModelRegistry({"broken": tmp_path / "broken", "tiny": service}, default="tiny")
    broken = models.get("broken")
    assert not broken.ready and "Could not load" in broken.error and broken.name == "broken"
    assert models.get("tiny") is service and models.get("").segment(TEXT).text == TEXT
    with pytest.raises(ValueError, match="default"):
        ModelRegistry({"tiny": service}, default="other")
    with pytest.raises(ValueError, match="distinct"):
        ModelRegistry.of([service, service])


@pytest.fixture(scope="module")
def two_models():
    from app.models import ModelRegistry

    return ModelRegistry.of([_tiny(0, "model-a"), _tiny(1, "model-b")])


def test_for_model_sends_each_request_to_the_chosen_model(two_models):
    from app import callbacks

    def z(out):
        return out["heatmap"].data[0].z

    run = callbacks.for_model(two_models, callbacks.run_segment, None)
    a, b = run("model-a", TEXT, 0.5), run("model-b", TEXT, 0.5)
    assert z(a) == z(callbacks.run_segment(two_models.get("model-a"), None, TEXT, 0.5))
    assert z(b) == z(callbacks.run_segment(two_models.get("model-b"), None, TEXT, 0.5))
    assert z(a) != z(b)  # different weights, different probabilities
    assert z(run("", TEXT, 0.5)) == z(a)  # "" is the default, model-a
    with pytest.warns(UserWarning, match="Unknown model .*model-c.* Choose one of .*model-a.*model-b"):
        assert run("model-c", TEXT, 0.5) == {}
    gen = callbacks.for_model(two_models, callbacks.run_generate)
    with pytest.warns(UserWarning, match="Unknown model"):
        assert list(gen("model-c", 0, 3, 0)) == [{}]


def test_every_model_listener_takes_the_model_choice(two_models):
    from app.ui import build_app

    demo = build_app(two_models)
    comps = {c.get("props", {}).get("elem_id"): c for c in demo.config["components"]}
    choice = comps["model-choice"]
    assert [v for _, v in choice["props"]["choices"]] == ["model-a", "model-b"]
    assert choice["props"]["value"] == "model-a"
    model_fns = [fn for fn in demo.fns.values() if fn.concurrency_id == settings.MODEL_CONCURRENCY_ID]
    ui_fns = [fn for fn in model_fns if fn.api_visibility != "public"]  # the rest are the gr.api endpoints
    assert {fn.name for fn in ui_fns} == {"run_infill", "run_generate", "run_segment"}
    assert all(fn.concurrency_limit == 1 for fn in model_fns) and len(model_fns) == len(ui_fns) + 3
    # infill, generate, and segment on Segment / Enter / threshold release / tab select / example
    assert len(ui_fns) == 7 and all(fn.inputs[0]._id == choice["id"] for fn in ui_fns)


def test_model_change_updates_banner_and_model_tab(tmp_path):
    from app.models import ModelRegistry
    from app.ui import on_model_change

    for name, acc in (("a", 0.95), ("b", 0.3)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"recon_acc_all": acc}))
    log = [{"step": i, "loss": 1.0 / i} for i in range(1, 5)]
    (tmp_path / "b" / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    (tmp_path / "a" / "bench.md").write_text("| measurement | value |\n|---|---|\n| speed of a | 1 |\n")
    models = ModelRegistry.of([_tiny(0, "model-a", tmp_path / "a"), _tiny(1, "model-b", tmp_path / "b")])
    out = on_model_change(models, "model-b")
    assert "Model: model-b" in out["banner"] and "zk-caveat" in out["banner"] and "0.30" in out["banner"]
    assert out["loaded"]["value"].startswith("**Loaded:** model-b")
    table = out["metrics"]["value"]
    # the page's model first, then the model the user could switch to, read from its metrics.json
    assert table["headers"][1:3] == ["model-b", "model-a"] and ["recon_acc_all", 0.3, 0.95] == table["data"][0][:3]
    assert out["curve_keys"]["choices"] == ["loss"] and out["curve_keys"]["visible"] is True
    assert out["bench_box"]["visible"] is False  # model-a's benchmark is not shown for model-b
    out = on_model_change(models, "model-a")
    assert "Model: model-a" in out["banner"] and "zk-caveat" not in out["banner"]
    assert out["curve_keys"]["visible"] is False and out["no_curves"]["visible"] is True
    assert out["bench_box"]["visible"] is True and "speed of a" in out["bench"]["value"]
    assert out["metrics"]["value"]["headers"][1:3] == ["model-a", "model-b"]
    with pytest.warns(UserWarning, match="Unknown model"):
        assert on_model_change(models, "model-z") == {}
