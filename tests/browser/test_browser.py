"""The app in a real browser (system Chromium through Playwright): it loads offline without
console errors; masking a selected word and running shows the fill highlighted; the replay
scrubber changes the displayed step; the Tokenization heatmap has one cell per character; the
Generate tab's temperature reaches the sampler; choosing another model in one page switches that
page (banner, Model tab, runs) and no other."""

import json
import re
import time
from pathlib import Path

import pytest

TEXT = "The quick brown fox jumps over the lazy dog."


def open_app(page, app_url):
    t0 = time.perf_counter()
    page.goto(app_url)
    page.wait_for_selector("#infill-run")
    seconds = time.perf_counter() - t0
    page.wait_for_timeout(500)  # late requests (fonts, the heartbeat) are recorded too
    return seconds


def select_in_textarea(page, selector: str, start: int, end: int) -> None:
    """Select characters [start, end) of a textarea, as a mouse drag would (fires `select`)."""
    page.locator(selector).evaluate(
        "(el, [s, e]) => { el.focus(); el.setSelectionRange(s, e); el.dispatchEvent(new Event('select')); }",
        [start, end],
    )


def caption(page, prefix: str) -> str:
    return page.inner_text(f"#{prefix}-caption")


def run_infill_on_brown(page):
    page.fill("#infill-text textarea", TEXT)
    page.wait_for_timeout(600)  # let the text-change listener settle before selecting
    select_in_textarea(page, "#infill-text textarea", 10, 15)  # "brown"
    page.wait_for_timeout(400)
    page.click("#infill-mask")
    page.wait_for_selector("#infill-preview mark.zk-mask")
    page.click("#infill-run")
    page.wait_for_selector("#infill-export", state="visible")
    page.wait_for_selector("#infill-view mark.zk-fill")


def test_page_loads_offline_without_console_errors(page, plog, app_url, shot):
    seconds = open_app(page, app_url)
    print(f"page interactive after {seconds:.2f} s")
    for tab in ("Generate", "Tokenization", "Model", "Infill"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)
    shot(page, "loaded")
    assert plog.errors() == []
    assert plog.external_requests() == []
    assert "No model loaded" not in page.inner_text("body")


def test_mask_selected_word_and_infill_shows_highlighted_fill(page, plog, app_url, shot):
    open_app(page, app_url)
    run_infill_on_brown(page)
    assert page.inner_text("#infill-preview mark.zk-mask") == "brown"
    assert "10–15" in page.inner_text("#infill-spans")
    view = page.locator("#infill-view .zk-text")
    text = view.inner_text()
    fill = page.inner_text("#infill-view mark.zk-fill")
    assert text.startswith("The quick ") and text.endswith(" fox jumps over the lazy dog.")
    assert text == "The quick " + fill + " fox jumps over the lazy dog."
    assert re.match(r"Step \d+/20", caption(page, "infill"))
    shot(page, "filled")
    with page.expect_download() as download:
        page.click("#infill-export")
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert exported["result"]["text"] == text and exported["settings"]["spans"] == [[10, 15]]
    assert exported["settings"]["seed"] == 0 and len(exported["result"]["trajectory"]) >= 20
    assert plog.errors() == []
    assert plog.external_requests() == []


def test_replay_scrubber_changes_the_displayed_step(page, plog, app_url, shot):
    open_app(page, app_url)
    run_infill_on_brown(page)
    last = caption(page, "infill")
    assert last.startswith("Step 20/20")
    box = page.locator("#infill-replay input[type=number]")
    box.fill("3")
    box.press("Enter")
    page.wait_for_function("() => document.querySelector('#infill-caption').innerText.startsWith('Step 3/')")
    assert page.locator("#infill-view mark.zk-fill").count() >= 1
    heat = page.evaluate("() => document.querySelector('#infill-heatmap .js-plotly-plot').data[0].z[0].length")
    assert heat > 0
    shot(page, "step3")
    page.click("#infill-play")  # replays from step 3 onwards
    page.wait_for_function(
        "() => !document.querySelector('#infill-caption').innerText.startsWith('Step 3/')", timeout=10_000
    )
    page.click("#infill-pause")
    assert plog.errors() == []


def test_generate_at_a_chosen_temperature_and_refine_gives_the_models_own_sample(page, plog, app_url, models, shot):
    open_app(page, app_url)
    page.get_by_role("tab", name="Generate").click()
    for elem, value in (("gen-temperature", "0.5"), ("gen-refine", "0.5")):
        box = page.locator(f"#{elem} input[type=number]")
        box.fill(value)
        box.press("Enter")
    page.click("#gen-run")
    page.wait_for_selector("#gen-export", state="visible")
    model = models.get("").model
    cold, default = model.generate(steps=20, seed=0, temperature=0.5, refine=0.5), model.generate(steps=20, seed=0)
    assert [st.existence for st in cold.trajectory] != [st.existence for st in default.trajectory]
    assert page.locator("#gen-view .zk-text").inner_text()  # shown (control characters as visible symbols)
    assert "second pass" in caption(page, "gen")  # the last frame belongs to the re-infilling pass
    shot(page, "generated-cold")
    with page.expect_download() as download:
        page.click("#gen-export")
    exported = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert exported["settings"]["temperature"] == 0.5 and exported["result"]["temperature"] == 0.5
    assert exported["settings"]["refine"] == 0.5 and exported["result"]["refine"] == 0.5
    assert exported["result"]["text"] == cold.text  # the model's own sample at those settings
    assert plog.errors() == []


def test_tokenization_heatmap_has_one_cell_per_character(page, plog, app_url, shot):
    open_app(page, app_url)
    page.get_by_role("tab", name="Tokenization").click()
    text = "Zonkey learns where words begin.\nIt also finds sentences! Ünïcödé and 🫏 too."
    page.fill("#tok-text textarea", text)
    page.click("#tok-run")  # (selecting the tab already segmented the example text shown there)
    page.wait_for_function(
        "n => document.querySelector('#tok-counters')?.innerText.startsWith(n + ' characters')", arg=len(text)
    )
    page.wait_for_function("() => document.querySelector('#tok-heatmap .js-plotly-plot')?.data?.[0]?.z")
    rows = page.evaluate("() => document.querySelector('#tok-heatmap .js-plotly-plot').data[0].z.map(r => r.length)")
    assert rows == [len(text), len(text)]
    assert page.locator("#tok-heatmap .js-plotly-plot .heatmaplayer").count() >= 1
    segs = page.locator("#tok-seg0 .zk-seg").all_inner_texts()
    assert "".join(segs).replace("·", " ").replace("⏎\n", "\n") == text
    assert page.locator("#tok-seg0 .zk-ws").count() >= text.count(" ")
    assert "characters" in page.inner_text("#tok-counters")
    assert "word starts" in page.inner_text("#tok-scores")
    shot(page, "heatmap")
    assert plog.errors() == []


def test_rapid_clicks_and_bad_input_keep_the_app_alive(page, plog, app_url):
    open_app(page, app_url)
    page.fill("#infill-text textarea", "nothing to fill here")
    page.wait_for_timeout(400)
    page.click("#infill-run")
    page.wait_for_selector("text=Nothing to fill")  # a warning toast, not a crash
    page.fill("#infill-text textarea", "The cat ___ on the mat.")
    page.wait_for_timeout(400)
    for _ in range(6):
        page.click("#infill-run", delay=0)
    page.wait_for_selector("#infill-export", state="visible")
    assert page.locator("#infill-view mark.zk-fill").count() == 1
    page.get_by_role("tab", name="Generate").click()
    page.click("#gen-run")
    page.wait_for_selector("#gen-export", state="visible")
    assert re.match(r"Step \d+/20", caption(page, "gen"))
    assert plog.errors() == []


def toasts(page, kind: str) -> list[str]:
    return page.locator(f"[data-testid='toast-body'].{kind}").all_inner_texts()


def test_rejected_input_warns_and_keeps_the_previous_result(page, plog, app_url):
    """A rejected input shows its warning and nothing else: no error toast, and the outputs of the
    last good run stay on screen (a plain handler and a streaming one, on two tabs)."""
    open_app(page, app_url)
    run_infill_on_brown(page)
    fill = page.inner_text("#infill-view")
    select_in_textarea(page, "#infill-text textarea", 12, 18)  # overlaps the masked "brown"
    page.wait_for_timeout(400)
    page.click("#infill-mask")
    page.wait_for_selector("[data-testid='toast-body'].warning >> text=overlaps")
    page.click("#infill-clear")
    page.wait_for_timeout(600)
    page.click("#infill-run")  # no span left and no ___ in the text
    page.wait_for_selector("[data-testid='toast-body'].warning >> text=Nothing to fill")
    page.wait_for_timeout(800)
    assert page.inner_text("#infill-view") == fill
    assert page.locator("#infill-view mark.zk-fill").count() == 1
    assert page.locator("#infill-export").is_visible()

    page.get_by_role("tab", name="Tokenization").click()
    page.fill("#tok-text textarea", TEXT)
    page.click("#tok-run")
    page.wait_for_selector("#tok-heatmap .js-plotly-plot")
    counters = page.inner_text("#tok-counters")
    page.fill("#tok-text textarea", "   ")
    page.click("#tok-run")
    page.wait_for_selector("[data-testid='toast-body'].warning >> text=empty")
    page.wait_for_timeout(800)
    assert page.inner_text("#tok-counters") == counters
    assert toasts(page, "error") == []
    assert plog.errors() == []


@pytest.mark.parametrize("tab", ["Model"])
def test_model_tab_renders_without_checkpoint_files(page, plog, app_url, tab):
    open_app(page, app_url)
    page.get_by_role("tab", name=tab).click()
    page.wait_for_selector("text=Limitations")
    assert "tiny" in page.inner_text("body")
    assert plog.errors() == []


def choose_model(page, name: str) -> None:
    page.click("#model-choice input")
    page.get_by_role("option", name=name, exact=True).click()


def expected_heatmap(service, text: str) -> list[list[float]]:
    """The Tokenization heatmap's cells (levels x characters) that `service` gives for `text`."""
    from app import callbacks

    return callbacks.run_segment(service, None, text, 0.5)["heatmap"].data[0].z


def segment_shows(page, text: str, cells: list[list[float]]) -> None:
    """Segment `text` in the Tokenization tab and wait until the heatmap shows exactly `cells`."""
    page.get_by_role("tab", name="Tokenization").click()
    page.fill("#tok-text textarea", text)
    page.click("#tok-run")
    page.wait_for_function(
        """want => {
            const z = document.querySelector('#tok-heatmap .js-plotly-plot')?.data?.[0]?.z;
            const same = (row, i) => row.length === want[i].length
                && row.every((v, j) => Math.abs(v - want[i][j]) < 1e-9);
            return !!z && z.length === want.length && z.every(same);
        }""",
        arg=cells,
    )
    page.wait_for_function(
        "n => document.querySelector('#tok-counters')?.innerText.startsWith(n + ' characters')", arg=len(text)
    )


def test_choosing_a_model_switches_this_page_only(browser, page, plog, app_url, models, shot):
    default, other = models.names
    cells = {name: expected_heatmap(models.get(name), TEXT) for name in models.names}
    assert cells[default] != cells[other]  # the two models are told apart by their probabilities
    open_app(page, app_url)
    assert page.input_value("#model-choice input") == default
    assert f"Model: {default}" in page.inner_text("#zk-status")
    segment_shows(page, TEXT, cells[default])

    choose_model(page, other)
    page.wait_for_function("n => document.querySelector('#zk-status')?.innerText.includes('Model: ' + n)", arg=other)
    assert default not in page.inner_text("#zk-status")
    page.get_by_role("tab", name="Model").click()
    page.wait_for_function("n => document.querySelector('#model-loaded')?.innerText.includes(n)", arg=other)
    segment_shows(page, TEXT, cells[other])  # a Tokenization run now uses the chosen model
    shot(page, "other-model")

    # another user's page still has the default model, for the banner and for its runs
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    try:
        second = context.new_page()
        second.set_default_timeout(20_000)
        open_app(second, app_url)
        assert page.input_value("#model-choice input") == other
        assert second.input_value("#model-choice input") == default
        assert f"Model: {default}" in second.inner_text("#zk-status")
        segment_shows(second, TEXT, cells[default])
    finally:
        context.close()
    assert f"Model: {other}" in page.inner_text("#zk-status")
    assert plog.errors() == []


def test_a_phone_sees_every_tab(browser, app_url):
    """At a phone's width the tabs wrap instead of hiding behind an overflow menu."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        phone = context.new_page()
        open_app(phone, app_url)
        visible = [t.inner_text() for t in phone.get_by_role("tab").all() if t.is_visible()]
        assert visible == ["Infill", "Generate", "Tokenization", "Model"]
        phone.get_by_role("tab", name="Tokenization").click()
        phone.wait_for_selector("#tok-run", state="visible")
    finally:
        context.close()
