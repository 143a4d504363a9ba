"""The launched app through gradio_client: `/segment`, `/infill`, `/generate` return correct,
JSON-serialisable, reproducible results; every bad input gets a clean error and the app keeps
answering; the optional `model` argument picks the model. Uses two tiny models with seeded random
weights (fast, no checkpoint needed; the first is the default), plus tests with the shipped
checkpoints when they exist."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import settings  # noqa: E402
from app.models import ModelRegistry  # noqa: E402
from app.service import ModelService, resolve_model_dir  # noqa: E402
from app.ui import serve_in_background  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog. It was not amused."


@pytest.fixture(scope="module")
def models():
    return ModelRegistry.of([ModelService.tiny(seed=0), ModelService.tiny(seed=1)])


@pytest.fixture(scope="module")
def url(models):
    with serve_in_background(models) as local_url:
        yield local_url


@pytest.fixture(scope="module")
def client(url):
    c = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    yield c
    c.close()


def test_only_the_three_endpoints_are_public(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/segment", "/infill", "/generate"}
    assert not api["unnamed_endpoints"]


def test_segment(client):
    res = client.predict(TEXT, 0.5, api_name="/segment")
    json.dumps(res)
    assert res["text"] == TEXT and len(res["levels"]) == 2
    for lv in res["levels"]:
        assert len(lv["char_bos"]) == len(TEXT)
        assert "".join(lv["segments"]) == TEXT
        assert lv["starts"][0] == 0 and lv["starts"] == sorted(lv["starts"])
    assert {(r["level"], r["tolerance"]) for r in res["boundary_scores"]} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert client.predict(TEXT, 0.5, api_name="/segment") == res


def test_infill_keeps_context_and_is_reproducible(client):
    res = client.predict(text=TEXT, spans=[[4, 9]], level="auto", length="auto", steps=8, seed=11, api_name="/infill")
    json.dumps(res)
    (s, e), text = res["filled"][0], res["text"]
    assert text[:s] == TEXT[:4] and text[e:] == TEXT[9:]
    assert res["spans"] == [[4, 9]] and res["seed"] == 11 and res["steps"] == 8
    assert res["trajectory"] and res["trajectory"][-1]["text"] == text
    again = client.predict(text=TEXT, spans=[[4, 9]], steps=8, seed=11, api_name="/infill")
    assert again["text"] == text and again["trajectory"] == res["trajectory"]


def test_infill_gap_markers_levels_and_lengths(client):
    text = "The cat ___ on the mat [...] dog."
    res = client.predict(text=text, steps=5, seed=0, api_name="/infill")
    assert res["spans"] == [[8, 11], [23, 28]] and len(res["filled"]) == 2
    assert res["text"].startswith("The cat ") and res["text"].endswith(" dog.")
    for level in ("0", "1", 0, 1):
        r = client.predict(text=text, level=level, steps=3, seed=0, api_name="/infill")
        assert r["levels"] == [int(level)] * 2
    r = client.predict(text=text, length="keep", steps=3, seed=0, api_name="/infill")
    assert [e - s for s, e in r["filled"]] and r["text"].endswith(" dog.")
    r = client.predict(text=text, length="6", steps=3, seed=0, api_name="/infill")
    assert r["text"].startswith("The cat ")


@pytest.mark.parametrize(
    "text",
    ["I ❤️ my 🫏 and ___ too.", "שלום ___ עולם", "cafe\u0301 ___ na\u00efve", "tabs\tand\nnewlines ___ here"],
)
def test_infill_odd_unicode(client, text):
    res = client.predict(text=text, steps=3, seed=0, api_name="/infill")
    s, e = res["filled"][0]
    gap = text.index("___")
    assert res["text"][:s] == text[:gap] and res["text"][e:] == text[gap + 3 :]


def test_generate_is_reproducible(client):
    a = client.predict(num_segments=2, steps=6, seed=5, api_name="/generate")
    json.dumps(a)
    assert a["seed"] == 5 and a["steps"] == 6 and a["trajectory"][-1]["text"] == a["text"]
    assert client.predict(num_segments=2, steps=6, seed=5, api_name="/generate") == a
    assert client.predict(steps=3, seed=1, api_name="/generate")["text"] is not None


def test_refine_reaches_the_sampler(client, models):
    # the default is the library's; 0 is the method's sampler alone, one pass
    model = models.get("")
    res = client.predict(num_segments=2, steps=4, seed=7, api_name="/generate")
    assert res == {**model.generate(num_segments=2, steps=4, seed=7).to_dict(), "model": models.names[0]}
    assert res["refine"] == settings.DEFAULT_REFINE and len(res["trajectory"]) == 10
    res = client.predict(num_segments=2, steps=4, seed=7, refine=0, api_name="/generate")
    assert res == {**model.generate(num_segments=2, steps=4, seed=7, refine=0).to_dict(), "model": models.names[0]}
    assert res["refine"] == 0 and len(res["trajectory"]) == 5


def test_temperature_reaches_the_sampler(client, models):
    # the endpoints' results equal the model's own output at that temperature, and report it
    model = models.get("")
    res = client.predict(num_segments=2, steps=4, seed=7, temperature=0.5, api_name="/generate")
    assert res == {
        **model.generate(num_segments=2, steps=4, seed=7, temperature=0.5).to_dict(),
        "model": models.names[0],
    }
    assert res["temperature"] == 0.5 and res != client.predict(num_segments=2, steps=4, seed=7, api_name="/generate")
    res = client.predict(text=TEXT, spans=[[4, 9]], steps=4, seed=7, temperature=0.5, api_name="/infill")
    assert res["temperature"] == 0.5
    assert res == {
        **model.infill(TEXT, [(4, 9)], steps=4, seed=7, temperature=0.5).to_dict(),
        "spans": [[4, 9]],
        "model": models.names[0],
    }


BAD_INFILL = [
    (dict(text=""), "empty"),
    (dict(text="   \n\t "), "empty"),
    (dict(text="x" * (settings.LIMITS["max_text_chars"] + 1) + " ___"), "limit"),
    (dict(text="no gap markers here"), "Nothing to fill"),
    (dict(text="abc def", spans=[[4, 99]]), "out of range"),
    (dict(text="abc def", spans=[[-1, 2]]), "out of range"),
    (dict(text="abc def", spans=[[3, 1]]), "reversed"),
    (dict(text="abc def", spans=[[0, 5], [3, 7]]), "overlap"),
    (dict(text="abc def", spans=[[0, 7]]), "whole text"),
    (dict(text="a b c d e f g h i j", spans=[[2 * i, 2 * i + 1] for i in range(9)]), "at most"),
    (dict(text="abc def", spans=[[0]]), "pair"),
    (dict(text="abc ___", steps=0), "out of range"),
    (dict(text="abc ___", steps=10**12), "out of range"),
    (dict(text="abc ___", seed=-5), "out of range"),
    (dict(text="abc ___", seed=2**70), "out of range"),
    (dict(text="abc ___", level="3"), "level"),
    (dict(text="abc ___", length="huge"), "length"),
    (dict(text="abc ___", length="100000"), "out of range"),
    (dict(text="bell\x07 ___"), "control character"),
    (dict(text="nul\x00 ___"), "control character"),
    (dict(text="abc ___", temperature=0), "temperature=0"),
    (dict(text="abc ___", temperature="warm"), "temperature must be a number"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_INFILL, ids=[m for _, m in BAD_INFILL])
def test_bad_infill_input_gets_a_clean_error(client, kwargs, message):
    with pytest.raises(AppError) as info:
        client.predict(api_name="/infill", **kwargs)
    assert message.lower() in str(info.value).lower()
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [(("", 0.5), "empty"), (("abc", 1.5), "threshold"), (("abc", 0.0), "threshold"), (("a\x01b", 0.5), "control")],
)
def test_bad_segment_input_gets_a_clean_error(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/segment")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_segments=99), "num_segments"),
        (dict(steps=-1), "steps"),
        (dict(seed=-1), "seed"),
        (dict(temperature=3), "temperature=3"),
        (dict(refine=0.95), "refine=0.95"),
        (dict(refine="lots"), "refine must be a number"),
    ],
)
def test_bad_generate_input_gets_a_clean_error(client, kwargs, message):
    with pytest.raises(AppError, match=message):
        client.predict(api_name="/generate", **kwargs)


def test_app_still_answers_after_errors_and_a_vanished_client(url, client):
    quitter = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    job = quitter.submit(text=TEXT, spans=[[4, 9]], steps=settings.LIMITS["max_steps"], seed=0, api_name="/infill")
    time.sleep(0.2)
    quitter.close()  # the client goes away mid-request
    for _ in range(3):
        with pytest.raises(AppError):
            client.predict(text="", api_name="/infill")
    res = client.predict(TEXT, 0.5, api_name="/segment")
    assert res["text"] == TEXT
    del job


def test_shipped_checkpoint_first_example_when_present():
    if not any(settings.SMALL_DIR.glob("*.safetensors")):
        pytest.skip("no shipped checkpoint yet")
    service = ModelService.from_env({})
    assert service.ready, service.error
    example = json.loads(settings.EXAMPLES_FILE.read_text(encoding="utf-8"))["infill"][0]
    gap = example["text"].index("___")
    t0 = time.perf_counter()
    res = service.infill(example["text"], [(gap, gap + 3)], steps=example["steps"], seed=example["seed"])
    print(f"shipped checkpoint, first example: {time.perf_counter() - t0:.2f} s -> {res.text!r}")
    s, e = res.filled[0]
    assert res.text[:s] == example["text"][:gap] and res.text[e:] == example["text"][gap + 3 :]


def test_model_argument_picks_the_model(client, models):
    default, other = models.names
    seg = {name: client.predict(TEXT, 0.5, name, api_name="/segment") for name in ("", default, other)}
    assert seg[""] == seg[default] and seg[default]["model"] == default and seg[other]["model"] == other
    for name in (default, other):
        direct = [lv.to_dict() for lv in models.get(name).segment(TEXT, 0.5).levels]
        assert [{k: lv[k] for k in d} for lv, d in zip(seg[name]["levels"], direct)] == direct
    assert seg[default]["levels"][0]["char_bos"] != seg[other]["levels"][0]["char_bos"]  # other weights
    gens = {}
    for name in (default, other):  # same seed and inputs: each result is that model's own
        res = client.predict(text=TEXT, spans=[[4, 9]], steps=4, seed=7, model=name, api_name="/infill")
        direct = models.get(name).infill(TEXT, [(4, 9)], steps=4, seed=7).to_dict()
        assert res == {**direct, "spans": [[4, 9]], "model": name}
        gens[name] = client.predict(num_segments=2, steps=4, seed=7, model=name, api_name="/generate")
        assert gens[name] == {**models.get(name).generate(num_segments=2, steps=4, seed=7).to_dict(), "model": name}
    assert gens[default]["trajectory"] != gens[other]["trajectory"]


@pytest.mark.parametrize(
    ("api_name", "kwargs"),
    [("/segment", dict(text=TEXT)), ("/infill", dict(text="The cat ___ here.")), ("/generate", dict(steps=3))],
)
def test_unknown_model_gets_a_clean_error_listing_the_models(client, models, api_name, kwargs):
    with pytest.raises(AppError) as info:
        client.predict(model="zonkey-huge", api_name=api_name, **kwargs)
    msg = str(info.value)
    assert "Unknown model 'zonkey-huge'" in msg and all(repr(n) in msg for n in models.names)
    assert "Traceback" not in msg


def test_shipped_models_are_both_served():
    if not all(any(d.glob("*.safetensors")) for d in (settings.SMALL_DIR, settings.BASE_DIR)):
        pytest.skip("needs both shipped checkpoints (zonkey-small and zonkey-base)")
    from zonkey import Zonkey

    models = ModelRegistry.from_env({})
    assert models.names == ["zonkey-small", "zonkey-base"]
    text = "The zebra is an African equine with black and white stripes."
    with serve_in_background(models) as local_url:
        c = Client(local_url, verbose=False, analytics_enabled=False, download_files=False)
        try:
            seg = {name: c.predict(text, 0.5, name, api_name="/segment") for name in ("", *models.names)}
            fill = {
                name: c.predict(text=text, spans=[[16, 23]], steps=10, seed=3, model=name, api_name="/infill")
                for name in models.names
            }
        finally:
            c.close()
    assert seg[""]["model"] == resolve_model_dir({})[0].name and seg[""] == seg[seg[""]["model"]]
    for name, d in (("zonkey-small", settings.SMALL_DIR), ("zonkey-base", settings.BASE_DIR)):
        model = Zonkey.from_pretrained(str(d))  # the checkpoint itself, loaded here: the app served this one
        assert seg[name]["model"] == fill[name]["model"] == name
        assert seg[name]["levels"][0]["starts"] == model.segment(text, threshold=0.5).levels[0].starts
        assert fill[name]["text"] == model.infill(text, spans=[(16, 23)], steps=10, seed=3).text
    assert seg["zonkey-small"]["levels"][0]["char_bos"] != seg["zonkey-base"]["levels"][0]["char_bos"]
