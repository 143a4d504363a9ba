"""Baselines: patchers on hand-made scores, the AR model's contracts, its training loop's exact resume."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from training.baselines.ar import BOS, CharLM, CharLMConfig
from training.baselines.evaluate_baselines import stop_rule
from training.baselines.patchers import (
    byte_to_char_starts,
    calibrate_fixed_size,
    calibrate_threshold,
    chars_per_segment_total,
    entropy_patch_starts,
    fixed_patch_starts,
    monotonic_patch_starts,
    whitespace_starts,
)
from training.baselines.train_ar import ARTrainConfig, main, parse_overrides
from training.loop import load_state
from training.metrics import word_starts
from zonkey.checkpoint import CheckpointError

ZONKEY_SMALL_PARAMS = 6_684_232
TINY = CharLMConfig(d_model=32, n_layers=2, n_heads=4, context=32)


@pytest.fixture(scope="module")
def tiny_lm() -> CharLM:
    torch.manual_seed(0)
    return CharLM(TINY).eval()


# --- patchers -----------------------------------------------------------------------------------------------------


def test_entropy_patcher_global_threshold():
    h = np.array([5.0, 1.0, 0.5, 3.0, 0.2, 4.0])
    assert entropy_patch_starts(h, 2.0) == [0, 3, 5]
    assert entropy_patch_starts(h, 3.0) == [0, 5]  # strictly greater
    assert entropy_patch_starts(h, 10.0) == [0]  # position 0 is always a start
    assert entropy_patch_starts(np.zeros(0), 1.0) == [0]


def test_entropy_patcher_monotonic_variant():
    h = np.array([1.0, 2.0, 0.5, 3.0, 3.1, 0.0])  # rises: -, 1.0, -1.5, 2.5, 0.1, -3.1
    assert monotonic_patch_starts(h, 0.5) == [0, 1, 3]
    assert monotonic_patch_starts(h, 2.0) == [0, 3]
    assert monotonic_patch_starts(h, 0.05) == [0, 1, 3, 4]
    assert monotonic_patch_starts(h, 2.5) == [0]  # strictly greater
    # a high but flat entropy is a global boundary, not a monotonic one
    flat = np.array([0.0, 6.0, 6.0, 6.0])
    assert entropy_patch_starts(flat, 5.0) == [0, 1, 2, 3]
    assert monotonic_patch_starts(flat, 5.0) == [0, 1]


def test_fixed_patches():
    assert fixed_patch_starts(10, 3) == [0, 3, 6, 9]
    assert fixed_patch_starts(9, 3) == [0, 3, 6]
    assert fixed_patch_starts(10, 2.5) == [0, 2, 5, 7]
    assert fixed_patch_starts(3, 5) == [0]
    assert fixed_patch_starts(0, 3) == [0]
    with pytest.raises(ValueError):
        fixed_patch_starts(10, 0)


def test_whitespace_reference_is_word_starts():
    for text in ["The zebra is an equine.", "  two\tleading\nspaces ", "one", "", "a  b   c"]:
        assert whitespace_starts(text) == word_starts(text)
    assert whitespace_starts("The zebra runs") == [0, 4, 10]


def test_byte_scores_map_to_characters():
    text = "aé€b"  # bytes: a | é é | € € € | b
    assert len(text.encode("utf-8")) == 7
    assert byte_to_char_starts([0, 2, 5, 6], text) == [0, 1, 2, 3]
    assert byte_to_char_starts([3, 4, 5], text) == [2]  # all three bytes of € start one character
    h = np.array([0.0, 0.0, 9.0, 0.0, 0.0, 9.0, 0.0])  # high entropy on continuation bytes only
    assert entropy_patch_starts(h, 1.0, text=text) == [0, 1, 2]
    assert monotonic_patch_starts(h, 1.0, text=text) == [0, 1, 2]
    with pytest.raises(ValueError, match="UTF-8 bytes"):
        entropy_patch_starts(h[:4], 1.0, text=text)


def test_calibrate_threshold_hits_the_target_rate():
    rng = np.random.default_rng(0)
    texts = ["x" * 200 for _ in range(20)]
    entropies = [rng.uniform(0, 8, size=200) for _ in texts]
    for fn in (entropy_patch_starts, monotonic_patch_starts):
        for target in (3.0, 6.0, 12.0):
            th = calibrate_threshold(fn, entropies, texts, target)
            rate = chars_per_segment_total([fn(h, th, text=t) for h, t in zip(entropies, texts)], texts)
            assert abs(rate - target) / target < 0.01, (fn.__name__, target, rate)
    # an exactly reachable rate: blocks of entropies 0..9, one start per block above 8 plus position 0
    block = [np.arange(100.0) % 10]
    th = calibrate_threshold(entropy_patch_starts, block, ["y" * 100], 100 / 11)
    assert entropy_patch_starts(block[0], th) == [0, *range(9, 100, 10)]
    size = calibrate_fixed_size(["z" * 23, "z" * 41], 5.5)
    rate = chars_per_segment_total([fixed_patch_starts(23, size), fixed_patch_starts(41, size)], ["z" * 23, "z" * 41])
    assert abs(rate - 5.5) < 0.3


# --- AR model -----------------------------------------------------------------------------------------------------


def test_default_charlm_matches_zonkey_small_size():
    n = CharLM().num_parameters()
    assert abs(n - ZONKEY_SMALL_PARAMS) <= 0.10 * ZONKEY_SMALL_PARAMS, n
    assert CharLMConfig().context == 512


def test_config_round_trips_and_refuses_unknown_keys(tmp_path):
    assert CharLMConfig.from_json(TINY.to_json()) == TINY
    TINY.to_json(tmp_path / "c.json")
    assert CharLMConfig.from_json(tmp_path / "c.json") == TINY
    with pytest.raises(ValueError, match="unknown"):
        CharLMConfig.from_dict({**TINY.to_dict(), "width": 3})
    with pytest.raises(ValueError, match="format"):
        CharLMConfig.from_dict({"d_model": 32})


@torch.no_grad()
def test_forward_is_causal_and_scores_are_consistent(tiny_lm):
    ids = torch.tensor([list(b"the zebra grazes")])
    logits = tiny_lm(ids)
    assert logits.shape == (1, 16, 256)
    changed = ids.clone()
    changed[0, 10] = ord("Q")
    assert torch.allclose(tiny_lm(changed)[0, :11], logits[0, :11], atol=1e-6)
    text = "zebras graze in herds on the open plains of Africa."  # longer than the 32-byte context: windows
    log2p, ent = tiny_lm.score_bytes([text])[0]
    assert log2p.shape == ent.shape == (len(text.encode()),)
    assert np.isfinite(log2p).all() and (ent >= 0).all() and (ent <= 8 + 1e-6).all()
    first = torch.log_softmax(tiny_lm(torch.tensor([list(text.encode())[:32]])), -1)[0] / np.log(2)
    assert np.allclose(log2p[:32], first.gather(-1, torch.tensor(list(text.encode())[:32])[:, None])[:, 0], atol=1e-4)
    assert np.array_equal(tiny_lm.next_byte_entropy(text), ent)
    bpc = tiny_lm.bits_per_char([text])
    assert bpc == pytest.approx(-log2p.mean())
    cont = tiny_lm.continuation_log2prob("the zebra", [" grazes", " g", ""])  # cached prefix
    full = tiny_lm.score_bytes(["the zebra grazes"])[0][0]
    assert cont == pytest.approx([full[9:].sum(), full[9:11].sum(), 0.0], abs=1e-4)


def test_kv_cache_sampling_matches_recomputation(tiny_lm):
    with torch.no_grad():  # sharpen the random model so that greedy bytes vary
        sharp = CharLM(TINY)
        sharp.load_state_dict({k: v * 3 for k, v in tiny_lm.state_dict().items()})
    out = sharp.sample_bytes(b"ab", 1, 40, torch.Generator(), temperature=0)[0]  # restarts once past 32 tokens
    stream, seq = list(b"ab"), [BOS, *b"ab"]
    with torch.no_grad():
        for _ in range(40):
            nxt = int(sharp._run(torch.tensor([seq]))[0][0, -1].argmax())
            stream.append(nxt)
            seq = [BOS, *stream[-16:]] if len(seq) == 32 else [*seq, nxt]
    assert list(out) == stream[2:]


def test_sample_is_deterministic_per_seed(tiny_lm):
    a = tiny_lm.sample(40, seed=1)
    assert len(a) == 40  # exactly n_chars characters, past the 32-byte context
    assert tiny_lm.sample(40, seed=1) == a
    assert tiny_lm.sample(40, seed=2) != a
    assert tiny_lm.sample(10, seed=1, prompt="The ") == tiny_lm.sample(10, seed=1, prompt="The ")
    assert tiny_lm.sample(0) == ""


def test_save_load_round_trip_and_bad_checkpoint(tiny_lm, tmp_path):
    tiny_lm.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format"] == "zonkey-charlm v1"
    loaded = CharLM.from_pretrained(tmp_path / "m")
    ids = torch.tensor([list(b"round trip")])
    assert torch.equal(loaded(ids), tiny_lm(ids))
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        CharLM.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        CharLM.from_pretrained(tmp_path / "m")


def test_infill_stop_rules():
    stop, fill = stop_rule(1)
    assert not stop(b"zeb") and stop(b"zebra ") and stop(b"zebra,")
    assert fill(b"zebra,") == "zebra" and fill(b"zeb") == "zeb"
    stop3, fill3 = stop_rule(3)
    assert not stop3(b"in the ") and stop3(b"in the herd. ")
    assert fill3(b"in the herd. ") == "in the herd."


def test_ar_infill_rates_carry_intervals_like_zonkeys(tiny_lm):
    from training.baselines.evaluate_baselines import eval_ar_infill
    from training.metrics import wilson_interval

    sentences = ["I saw sand go to us.", "A dog ran to me."]  # short: the tiny model's context is 32 bytes
    m = eval_ar_infill(tiny_lm, sentences, {"saw", "sand", "dog", "ran"}, 1, candidates=2, seed=0)
    for method in ("left", "rescore"):  # one 0/1 per gap: Wilson's intervals, as training/evaluate.py gives them
        n = m[f"ar_{method}_infill_1w_n"]
        assert n == 2
        for rate in ("exact", "valid_word_rate"):
            k = round(m[f"ar_{method}_infill_1w_{rate}"] * n)
            assert m[f"ar_{method}_infill_1w_{rate}_ci95"] == list(wilson_interval(k, n))


# --- training loop ------------------------------------------------------------------------------------------------


def _train_cfg(tmp_path, name: str, **kw) -> ARTrainConfig:
    model = tmp_path / "tiny.json"
    TINY.to_json(model)
    return ARTrainConfig(
        model=str(model),
        out_dir=str(tmp_path / name),
        batch_size=2,
        warmup_steps=1,
        max_train_texts=20,
        eval_batches=1,
        eval_every=10_000,
        ckpt_every=1,
        threads=1,
        export=False,
        **kw,
    )


def test_overrides_are_typed():
    assert parse_overrides(["--lr=0.5", "--max_steps=3", "--export=false"]) == {
        "lr": 0.5,
        "max_steps": 3,
        "export": False,
    }
    with pytest.raises(ValueError, match="unknown training option"):
        parse_overrides(["--learning_rate=1"])


def test_train_ar_resume_is_exact_and_exports(tmp_path):
    main(_train_cfg(tmp_path, "straight", max_steps=2))
    main(_train_cfg(tmp_path, "split", max_steps=1))
    end = main(replace(_train_cfg(tmp_path, "split", max_steps=2), export=True), resume=True)
    assert end["step"] == 2 and np.isfinite(end["heldout/bits_per_char"])
    a = load_state(tmp_path / "straight" / "state.pt")
    b = load_state(tmp_path / "split" / "state.pt")
    assert a["step"] == b["step"] == 2 and a["data"] == b["data"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    release = tmp_path / "split" / "release"
    assert {"config.json", "model.safetensors", "train_log.jsonl"} <= {p.name for p in release.iterdir()}
    assert CharLM.from_pretrained(release).config == TINY


def test_entropy_patcher_object_matches_the_patcher_function(tmp_path):
    import json as _json

    import torch as _torch

    from training.baselines import load_entropy_patcher
    from training.baselines.ar import CharLM, CharLMConfig
    from training.baselines.patchers import entropy_patch_starts

    _torch.manual_seed(0)
    CharLM(CharLMConfig(d_model=32, n_layers=1, n_heads=2)).save_pretrained(tmp_path)
    (tmp_path / "metrics.json").write_text(_json.dumps({"entropy_global_threshold": 7.9}))
    patcher = load_entropy_patcher(tmp_path)
    assert patcher.calibrated and patcher.threshold == 7.9
    text = "Zürich is a city."
    out = patcher.segment(text)
    assert out.starts == entropy_patch_starts(patcher.lm.next_byte_entropy(text), 7.9, text=text)
    assert out.starts[0] == 0 and len(out.scores) == len(text)
