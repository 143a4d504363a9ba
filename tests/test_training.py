"""Training loop: exact resume, refused corrupt state, non-finite losses, the smoke recipe."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training import train
from training.loop import bf16_slowdown, load_state
from training.staging import respread_embedding_rows
from training.train import TrainConfig, get_lr, main, parse_overrides
from zonkey import Zonkey, ZonkeyConfig
from zonkey.checkpoint import CheckpointError


def _cfg(tmp_path, name, **kw) -> TrainConfig:
    base = TrainConfig.from_json("training/configs/tiny.json")
    return replace(base, out_dir=str(tmp_path / name), eval_every=10_000, ckpt_every=1, threads=1, export=False, **kw)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert get_lr(0, cfg) == pytest.approx(0.1)
    assert get_lr(9, cfg) == pytest.approx(1.0)
    assert get_lr(110, cfg) == pytest.approx(0.1)
    assert get_lr(60, cfg) == pytest.approx(0.55)
    assert get_lr(60, cfg, minutes=9.0) == pytest.approx(0.55)  # wall-clock ignored by default
    timed = replace(cfg, time_schedule=True, max_minutes=10.0)
    assert get_lr(60, timed, minutes=1.0) == pytest.approx(0.55)  # steps are further along
    assert get_lr(20, timed, minutes=5.0) == pytest.approx(0.55)  # the budget is half spent
    assert get_lr(20, timed, minutes=12.0) == pytest.approx(0.1)  # past the budget: the floor
    assert get_lr(5, timed, minutes=12.0) == pytest.approx(0.6)  # warmup is by steps


def test_overrides_are_typed_and_unknown_keys_refused():
    assert parse_overrides(["--lr=0.5", "--max_steps=3", "--bf16=true"]) == {"lr": 0.5, "max_steps": 3, "bf16": True}
    assert parse_overrides(['--model_overrides={"loss_weights": {"mlm": 0.5}}']) == {
        "model_overrides": {"loss_weights": {"mlm": 0.5}}
    }
    with pytest.raises(ValueError, match="unknown training option"):
        parse_overrides(["--learning_rate=1"])
    with pytest.raises(ValueError):
        parse_overrides(["--max_steps=three"])


def test_a_config_extends_another_and_lists_only_its_changes(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"model": "tiny", "lr": 0.5, "seed": 1}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"extends": "../a.json", "seed": 2, "max_steps": 7}))
    b = TrainConfig.from_json(tmp_path / "sub" / "b.json", lr=0.25)
    assert (b.model, b.lr, b.seed, b.max_steps) == ("tiny", 0.25, 2, 7)
    assert b.batch_size == TrainConfig().batch_size  # neither file sets it: the dataclass default
    (tmp_path / "a.json").write_text(json.dumps({"extends": "sub/b.json"}))
    with pytest.raises(ValueError, match=r"cycle: b.json -> a.json -> b.json"):
        TrainConfig.from_json(tmp_path / "sub" / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"extends": "missing.json"}))
    with pytest.raises(ValueError, match=r"missing.json does not exist \(named by c.json"):
        TrainConfig.from_json(tmp_path / "c.json")


def test_extends_merges_model_overrides_instead_of_replacing_them(tmp_path):
    from training.train import model_config

    parent = {"model": "tiny", "model_overrides": {"levels": [{"short_len": 3}, {}], "loss_weights": {"mlm": 0.5}}}
    (tmp_path / "a.json").write_text(json.dumps(parent))
    child = {"extends": "a.json", "model_overrides": {"loss_weights": {"clean_recon": 0.25}}}
    (tmp_path / "b.json").write_text(json.dumps(child))
    b = TrainConfig.from_json(tmp_path / "b.json")
    assert b.model_overrides == {"levels": [{"short_len": 3}, {}], "loss_weights": {"mlm": 0.5, "clean_recon": 0.25}}
    mc = model_config(b)
    assert (mc.levels[0].short_len, mc.loss_weights.mlm, mc.loss_weights.clean_recon) == (3, 0.5, 0.25)


def test_every_shipped_training_config_resolves_to_a_valid_model():
    from training.train import model_config

    # ar_small.json configures the baseline trainer
    names = [p for p in sorted(Path("training/configs").glob("*.json")) if p.stem != "ar_small"]
    assert len(names) >= 10
    for p in names:
        cfg = TrainConfig.from_json(p)
        assert isinstance(model_config(cfg), ZonkeyConfig), p
    stage6 = TrainConfig.from_json("training/configs/small_stage6.json")
    stage5 = TrainConfig.from_json("training/configs/small_stage5.json")
    assert (
        replace(
            stage6,
            out_dir=stage5.out_dir,
            init_from=stage5.init_from,
            lr=stage5.lr,
            max_minutes=stage5.max_minutes,
            seed=stage5.seed,
        )
        == stage5
    )
    # the last stage's model config is the one shipped: the preset with its overrides merged in
    shipped = ZonkeyConfig.from_json("assets/models/zonkey-small/config.json")
    assert model_config(TrainConfig.from_json("training/configs/small_stage30.json")) == shipped
    assert shipped.loss_weights.dirty_recon == ZonkeyConfig.preset("small").loss_weights.dirty_recon


def test_resume_continues_the_same_run(tmp_path):
    main(_cfg(tmp_path, "straight", max_steps=4))
    main(_cfg(tmp_path, "split", max_steps=2))
    main(_cfg(tmp_path, "split", max_steps=4), resume=True)
    a = load_state(tmp_path / "straight" / "state.pt")
    b = load_state(tmp_path / "split" / "state.pt")
    assert a["step"] == b["step"] == 4
    assert a["data"] == b["data"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_corrupted_or_partial_state_is_refused(tmp_path):
    cfg = _cfg(tmp_path, "run", max_steps=1)
    main(cfg)
    state = tmp_path / "run" / "state.pt"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="state.pt: truncated or corrupted"):
        main(replace(cfg, max_steps=2), resume=True)
    main(cfg)  # a sound state again
    other = replace(cfg, max_steps=2, model_overrides={"levels": [{"short_len": 2}, {}]})
    with pytest.raises(CheckpointError, match="model config differs from --config"):
        main(other, resume=True)
    state.unlink()
    with pytest.raises(CheckpointError, match="no training state"):
        main(replace(cfg, max_steps=2), resume=True)


def test_nonfinite_losses_are_skipped_counted_and_stop_the_run(tmp_path, monkeypatch):
    real_forward = Zonkey.forward
    calls = {"n": 0}

    def flaky(self, *args):
        out = real_forward(self, *args)
        calls["n"] += 1
        if calls["n"] == 2:  # one NaN step: skipped, parameters untouched
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Zonkey, "forward", flaky)
    summary = main(_cfg(tmp_path, "nan", max_steps=3))
    assert summary["step"] == 3 and summary["bad_steps"] == 1
    log = [json.loads(line) for line in (tmp_path / "nan" / "train_log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "nonfinite_loss" for r in log)

    def always_nan(self, *args):
        out = real_forward(self, *args)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Zonkey, "forward", always_nan)
    summary = main(_cfg(tmp_path, "allnan", max_steps=50, max_bad_steps=3))
    assert summary["stop_reason"] == "3 consecutive non-finite losses" and summary["step"] == 0


def test_staged_training_freezes_the_lower_level_and_trains_a_fresh_upper_one(tmp_path):
    from zonkey.checkpoint import load_tensors

    main(replace(_cfg(tmp_path, "stage1", max_steps=2), export=True))
    release1 = tmp_path / "stage1" / "release"
    stage2 = _cfg(tmp_path, "stage2", max_steps=2, init_from=str(release1), init_levels=1, frozen_levels=1)
    main(stage2)
    main(replace(stage2, max_steps=3, export=True), resume=True)
    before, after = load_tensors(release1), load_tensors(tmp_path / "stage2" / "release")
    lower = [k for k in before if k.startswith(("embed.", "levels.0."))]
    upper = [k for k in before if k.startswith("levels.1.")]
    assert lower and upper
    for k in lower:  # copied, then frozen (through the resume too)
        assert torch.equal(before[k], after[k]), k
    assert sum(not torch.equal(before[k], after[k]) for k in upper) > len(upper) // 2
    log = [json.loads(line) for line in (tmp_path / "stage2" / "train_log.jsonl").read_text().splitlines()]
    carried = tmp_path / "stage2" / "release" / "train_log_stage1.jsonl"
    assert carried.read_text() == (release1 / "train_log.jsonl").read_text()
    steps = [r for r in log if "lr" in r]
    assert steps and all("l0/clean_recon" not in r and "l1/clean_recon" in r for r in steps)


def test_staged_training_refuses_bad_combinations(tmp_path):
    with pytest.raises(ValueError, match="set init_from"):
        _cfg(tmp_path, "x", frozen_levels=1)
    with pytest.raises(ValueError, match="every frozen level must come from init_from"):
        _cfg(tmp_path, "x", init_from="somewhere", init_levels=1, frozen_levels=2)
    main(replace(_cfg(tmp_path, "stage1", max_steps=1), export=True))
    small_like = _cfg(tmp_path, "x", model="small", init_from=str(tmp_path / "stage1" / "release"), init_levels=1)
    with pytest.raises(CheckpointError, match="level 0 architecture differs"):
        main(small_like)
    with pytest.raises(CheckpointError, match="init_from must be a release directory"):
        main(_cfg(tmp_path, "y", init_from=str(tmp_path / "nowhere")))


def test_train_only_trains_just_the_named_parameters(tmp_path):
    """Stage 4 of zonkey-small: only level 0's decoder and stitcher train, so level 0's latents (what
    level 1 was trained on) stay bit-identical."""
    from zonkey.checkpoint import load_tensors

    main(replace(_cfg(tmp_path, "stage1", max_steps=2), export=True))
    release1 = tmp_path / "stage1" / "release"
    only = "levels.0.decoder,levels.0.stitcher"
    cfg = _cfg(tmp_path, "dec", max_steps=2, init_from=str(release1), train_only=only, upper_levels_from=10**9)
    main(cfg)
    main(replace(cfg, max_steps=3, export=True), resume=True)
    before, after = load_tensors(release1), load_tensors(tmp_path / "dec" / "release")
    trained = [k for k in before if k.startswith(("levels.0.decoder.", "levels.0.stitcher."))]
    assert trained and sum(not torch.equal(before[k], after[k]) for k in trained) > len(trained) // 2
    for k in set(before) - set(trained):  # embedding, splitter, compressor, level 1: untouched
        assert torch.equal(before[k], after[k]), k


def test_train_only_refuses_a_missing_init_or_an_unknown_prefix(tmp_path):
    with pytest.raises(ValueError, match="set init_from"):
        _cfg(tmp_path, "x", train_only="levels.0.decoder")
    main(replace(_cfg(tmp_path, "stage1", max_steps=1), export=True))
    cfg = _cfg(tmp_path, "y", init_from=str(tmp_path / "stage1" / "release"), train_only="levels.0.decodr")
    with pytest.raises(ValueError, match=r"'levels.0.decodr' names no parameter.*levels\.0\.decoder"):
        main(cfg)


def test_respread_separates_collapsed_rows_and_keeps_the_others():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(256, 64, generator=gen)
    w[128:] = torch.randn(64, generator=gen) * 3 + 0.01 * torch.randn(128, 64, generator=gen)  # collapsed rows
    before = w.clone()
    respread_embedding_rows(w, 128, 255, seed=6)
    assert torch.equal(w[:128], before[:128])
    torch.testing.assert_close(w[128:].norm(dim=1), before[128:].norm(dim=1))
    unit = torch.nn.functional.normalize(w[128:], dim=1)
    cos = unit @ unit.T - 2 * torch.eye(128)
    old = torch.nn.functional.normalize(before[128:], dim=1)
    assert (old @ old.T - 2 * torch.eye(128)).max(1).values.min() > 0.99  # collapsed before
    assert cos.max(1).values.max() < 0.9  # apart after
    assert 0.3 < (cos.sum() + 2 * 128) / (128 * 127) < 0.7  # still sharing their mean direction (~1/2)
    again = before.clone()
    respread_embedding_rows(again, 128, 255, seed=6)
    assert torch.equal(again, w)  # seeded


def test_respread_rows_is_checked_and_applied_once_at_init(tmp_path):
    from zonkey.checkpoint import load_tensors

    for bad in ("128", "a-b", "200-100", "0-256"):
        with pytest.raises(ValueError, match="respread_rows"):
            _cfg(tmp_path, "x", init_from="somewhere", respread_rows=bad)
    with pytest.raises(ValueError, match="set init_from"):
        _cfg(tmp_path, "x", respread_rows="128-255")
    main(replace(_cfg(tmp_path, "stage1", max_steps=1), export=True))
    release1 = tmp_path / "stage1" / "release"
    only = "levels.0.decoder,levels.0.stitcher"
    cfg = _cfg(tmp_path, "re", max_steps=1, init_from=str(release1), train_only=only, respread_rows="128-255")
    main(cfg)
    main(replace(cfg, max_steps=2, export=True), resume=True)  # resume keeps the respread rows, no second respread
    before, after = load_tensors(release1), load_tensors(tmp_path / "re" / "release")
    expected = before["embed.weight"].clone()
    respread_embedding_rows(expected, 128, 255, seed=cfg.seed)
    assert torch.equal(after["embed.weight"], expected)
    assert not torch.equal(after["embed.weight"][128:], before["embed.weight"][128:])


def test_smoke_recipe_trains_resumes_exports_and_evaluates(tmp_path):
    from training.evaluate import evaluate

    cfg = replace(TrainConfig.from_json("training/configs/tiny.json"), out_dir=str(tmp_path / "smoke"), threads=1)
    main(replace(cfg, max_steps=6))
    summary = main(cfg, resume=True)
    assert summary["step"] == cfg.max_steps
    release = tmp_path / "smoke" / "release"
    assert (release / "config.json").exists() and (release / "train_log.jsonl").exists()
    m = evaluate(str(release), n_paragraphs=2, n_sentences=2, n_generate=1, steps=2)
    keys = ("recon_acc_l0", "recon_acc_all", "l0_word_tol1_f1", "infill_1w_exact", "infill_inword_exact")
    for key in (*keys, "gen_valid_word_rate"):
        assert key in m and m[key] == m[key]  # present and not NaN
    assert "temperature" not in m  # the method's sampler
    for key in ("recon_acc_l0", "recon_acc_all", "infill_1w_exact", "infill_1w_valid_word_rate"):
        lo, hi = m[f"{key}_ci95"]  # every goal figure has its 95 % interval, around it
        assert 0.0 <= lo <= m[key] <= hi <= 1.0, key
    cold = evaluate(str(release), n_paragraphs=2, n_sentences=2, n_generate=1, steps=2, temperature=0.5)
    assert cold["temperature"] == 0.5 and cold["recon_acc_l0"] == m["recon_acc_l0"]  # reconstruction draws nothing


DDP_DRIVER = """
import os, sys
sys.path.insert(0, os.getcwd())
from training import train
from zonkey import Zonkey

real, calls = Zonkey.forward, {"n": 0}

def flaky(self, *args, **kwargs):  # rank 1's second training forward gives a NaN loss
    out = real(self, *args, **kwargs)
    calls["n"] += 1
    if calls["n"] == 2 and os.environ["RANK"] == "1":
        out.loss = out.loss * float("nan")
    return out

Zonkey.forward = flaky
train.main(*train.parse_args(sys.argv[1:]))
"""


def test_ddp_two_cpu_processes_on_gloo(tmp_path):
    """torchrun with 2 processes (gloo): both ranks train in lockstep and rank 0 writes the run; a
    NaN loss on rank 1 alone makes both ranks skip that step (no hang, no divergence)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    driver = tmp_path / "driver.py"
    driver.write_text(DDP_DRIVER)
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"),
        str(driver),
        *("--config", "training/configs/tiny.json", f"--out_dir={out}", "--max_steps=2"),
        "--max_minutes=30",  # never reached; exercises rank 0's clock carried by the step's all-reduce
        *("--time_schedule=true", "--threads=1", "--eval_every=100", "--export=false"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["world_size"] == 2
    assert [r["step"] for r in log if r.get("event") == "nonfinite_loss"] == [1]  # rank 0's own loss was finite
    assert log[-1]["event"] == "end" and log[-1]["step"] == 2 and log[-1]["bad_steps"] == 1
    assert load_state(out / "state.pt")["step"] == 2
    # characters are counted over both ranks' batches (each rank reads every 2nd training text);
    # the skipped step's batches (the 2nd) are not counted
    from training.data import PackedBatches, local_split

    texts = [x for _, x in local_split("train")]
    cfg = TrainConfig.from_json("training/configs/tiny.json")
    want = 0
    for rank in (0, 1):
        data = PackedBatches(
            texts[rank::2], cfg.batch_size, ZonkeyConfig.preset("tiny").levels[0].doc_len, seed=cfg.seed
        )
        sizes = [int(next(data)[1].sum()) for _ in range(3)]
        want += sizes[0] + sizes[2]
    assert log[-1]["chars_seen"] == want


def test_bf16_autocast_trains_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "bf16_slowdown", lambda device: 1.0)  # as on a CPU with native bf16
    main(replace(_cfg(tmp_path, "bf16", max_steps=3, log_every=1), bf16=True))
    log = [json.loads(line) for line in (tmp_path / "bf16" / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "lr" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] and abs(r["loss"]) < 1e4 for r in steps)  # finite, trained on
    assert not any(r.get("event") == "nonfinite" for r in log)


def test_bf16_is_turned_off_where_it_would_slow_training(tmp_path, monkeypatch, capsys):
    assert bf16_slowdown(torch.device("cuda")) == 1.0  # not measured on a GPU
    assert bf16_slowdown(torch.device("cpu"), n=32, repeats=2) > 0
    autocasts = []
    real = torch.autocast

    def spy(*args, **kwargs):  # records training's bf16 autocast, not the float32 guards inside the model
        if kwargs.get("dtype") == torch.bfloat16:
            autocasts.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(train.torch, "autocast", spy)
    monkeypatch.setattr(train, "bf16_slowdown", lambda device: 90.0)  # an AVX2-only CPU emulates bf16
    main(replace(_cfg(tmp_path, "off", max_steps=2, log_every=1), bf16=True))
    log = [json.loads(line) for line in (tmp_path / "off" / "train_log.jsonl").read_text().splitlines()]
    assert [r["bf16_slowdown"] for r in log if r.get("event") == "bf16_off"] == [90.0]
    assert "bf16 autocast is off: on this CPU a bf16 matrix product is 90x slower" in capsys.readouterr().err
    assert autocasts == [] and [r["step"] for r in log if "lr" in r] == [1, 2]


def test_gpu_recipe_runs_on_cpu_and_writes_at_most_8_files_under_16_mb(tmp_path):
    """training/gpu_run.sh end to end with a tiny model and a seconds-long budget on the CPU."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    extra = "--model=tiny --batch_size=2 --threads=1 --log_every=1 --ckpt_every=1000 --export_dtype=bfloat16"
    env = {**os.environ, "OUT": str(out), "MINUTES": "0.1", "DEVICE": "cpu", "EXTRA": extra, "PYTHON": sys.executable}
    env["EVAL"] = "--paragraphs 2 --sentences 2 --generate 1 --steps 2"
    env["LEVEL0_EXTRA"] = "--seed=7"  # stage 1 (level 0) alone
    env["LEVEL1_EXTRA"] = "--seed=9"  # stage 2 (level 1) alone, and its FLOP count
    proc = subprocess.run(["bash", "training/gpu_run.sh"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2**20 for f in files), files
    assert {"config.json", "train_log.jsonl", "train_log_stage1.jsonl", "gpu_run.txt"} <= set(files)
    report = (out / "gpu_run.txt").read_text()
    assert '"mfu"' in report and "boundary_f1_l0" in report
    assert Zonkey.from_pretrained(out).config.name == "tiny"
    seeds = [
        json.loads((out / f).read_text().splitlines()[0])["train_config"]["seed"]
        for f in ("train_log_stage1.jsonl", "train_log.jsonl")
    ]
    assert seeds == [7, 9]


def test_level_overrides_merge_element_by_element():
    from training.train import merged, model_config

    base = {"levels": [{"a": 1, "b": 2}, {"a": 3}], "w": {"x": 1, "y": 2}}
    assert merged(base, {"levels": [{"b": 5}, {}], "w": {"y": 0}}) == {
        "levels": [{"a": 1, "b": 5}, {"a": 3}],
        "w": {"x": 1, "y": 0},
    }
    assert merged(base, {"levels": [{"b": 5}]})["levels"] == [{"b": 5}]  # other length: replaced
    cfg = TrainConfig(model="small", model_overrides={"levels": [{"short_len": 3}, {}]})
    mc = model_config(cfg)
    assert mc.levels[0].short_len == 3 and mc.levels[1] == ZonkeyConfig.preset("small").levels[1]


def test_soften_bos_level_must_name_a_level_of_the_model(tmp_path):
    main(replace(_cfg(tmp_path, "stage1", max_steps=1), export=True))
    release = tmp_path / "stage1" / "release"
    with pytest.raises(ValueError, match="soften_bos_level=2: the model has 2 levels"):
        main(_cfg(tmp_path, "soft", max_steps=1, init_from=str(release), soften_bos=0.5, soften_bos_level=2))
    from zonkey.checkpoint import load_tensors

    cfg = _cfg(tmp_path, "soft1", max_steps=1, init_from=str(release), soften_bos=0.5, soften_bos_level=1)
    main(replace(cfg, train_only="levels.0.decoder", export=True))  # both splitters stay as loaded
    before, after = load_tensors(release), load_tensors(tmp_path / "soft1" / "release")
    for name in ("levels.1.splitter.out.weight", "levels.1.splitter.out.bias"):
        torch.testing.assert_close(after[name], 0.5 * before[name])
    assert torch.equal(after["levels.0.splitter.out.weight"], before["levels.0.splitter.out.weight"])


def test_soften_bos_scales_the_logits_keeps_their_order_and_needs_init(tmp_path):
    from training.staging import soften_bos_output

    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="soften_bos"):
            _cfg(tmp_path, "x", init_from="somewhere", soften_bos=bad)
    with pytest.raises(ValueError, match="set init_from"):
        _cfg(tmp_path, "x", soften_bos=0.1)
    with pytest.raises(ValueError, match="soften_bos_level=-1 must be >= 0"):
        _cfg(tmp_path, "x", init_from="somewhere", soften_bos=0.1, soften_bos_level=-1)
    torch.manual_seed(0)
    model = Zonkey(ZonkeyConfig.preset("tiny")).eval()
    head = model.levels[0].splitter
    x = model.embed(torch.randint(0, 256, (2, 40)))
    lengths = torch.tensor([40, 40])
    seen = []
    head.out.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    with torch.no_grad():
        beta0 = head(x, lengths)
        soften_bos_output(head, 0.1)
        beta1 = head(x, lengths)
    torch.testing.assert_close(seen[1], 0.1 * seen[0])  # the output layer's logits, scaled
    assert torch.equal(beta0[:, 1:].argsort(), beta1[:, 1:].argsort())  # same order of positions
    r0 = torch.sigmoid(torch.tensor(head.init_logit))  # the initial rate 2/S
    assert ((beta1 - r0).abs() <= (beta0 - r0).abs() + 1e-6).all()  # every probability moved towards it


def test_grow_widens_the_top_levels_latents_and_window_keeping_the_trained_rows(tmp_path):
    from zonkey.checkpoint import CheckpointError, load_tensors

    main(replace(_cfg(tmp_path, "g1", max_steps=1), export=True))
    release = tmp_path / "g1" / "release"
    top = ZonkeyConfig.preset("tiny").levels[1]
    c, s = top.n_latents, top.seg_len
    wide = {"levels": [{}, {"n_latents": c + 2, "seg_len": s + 4}]}
    with pytest.raises(ValueError, match="grow widens the levels of a trained checkpoint; set init_from"):
        _cfg(tmp_path, "x", grow=True)
    with pytest.raises(CheckpointError, match=rf"'seg_len': \({s}, {s + 4}\).*grow=True widens"):
        main(_cfg(tmp_path, "plain", max_steps=1, init_from=str(release), model_overrides=wide))
    narrow = {"levels": [{}, {"seg_len": s - 2}]}
    with pytest.raises(CheckpointError, match="level 1 architecture differs"):
        main(_cfg(tmp_path, "narrow", max_steps=1, init_from=str(release), model_overrides=narrow, grow=True))
    cfg = _cfg(tmp_path, "grown", max_steps=1, init_from=str(release), model_overrides=wide, grow=True)
    main(replace(cfg, train_only="levels.0.decoder", export=True))  # level 1 stays as grown
    before, after = load_tensors(release), load_tensors(tmp_path / "grown" / "release")
    cls0, cls1 = before["levels.1.compressor.cls"], after["levels.1.compressor.cls"]  # (c, d), (c + 2, d)
    q0, q1 = before["levels.1.decoder.queries"], after["levels.1.decoder.queries"]  # (s, d), (s + 4, d)
    assert cls1.shape == (c + 2, cls0.shape[1]) and q1.shape == (s + 4, q0.shape[1])
    assert torch.equal(cls1[:c], cls0) and torch.equal(q1[:s], q0)
    cos = torch.nn.functional.cosine_similarity
    assert (cos(cls1[c:], cls0[:2]) > 0.95).all() and not torch.equal(cls1[c:], cls0[:2])  # near-copies
    assert (cos(q1[s:], q0[-1:].expand(4, -1)) > 0.95).all()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("levels.1.splitter"))
    assert Zonkey.from_pretrained(tmp_path / "grown" / "release").config.levels[1].seg_len == s + 4


def test_grow_deepens_a_levels_stacks_with_blocks_that_start_as_identities(tmp_path):
    from training.staging import init_from_release

    main(replace(_cfg(tmp_path, "d1", max_steps=1), export=True))
    release = tmp_path / "d1" / "release"
    old = Zonkey.from_pretrained(release).eval()
    top = old.config.levels[1]
    deep = {"compressor_layers": top.compressor_layers + 2, "draft_layers": top.draft_layers + 1}
    deep["denoiser_layers"] = top.denoiser_layers + 1
    cfg = replace(old.config, levels=(old.config.levels[0], replace(top, **deep)))
    torch.manual_seed(3)
    new = Zonkey(cfg).eval()
    with pytest.raises(CheckpointError, match="grow=True widens"):
        init_from_release(new, release)
    init_from_release(new, release, grow=True)
    assert len(new.levels[1].compressor.encoder.blocks) == top.compressor_layers + 2
    added = new.levels[1].compressor.encoder.blocks[-1]
    assert added.ff[2].weight.abs().sum() == 0 and added.attn.o.weight.abs().sum() == 0
    assert added.ff[0].weight.abs().sum() > 0  # the rest of a new block keeps its fresh initialisation
    lv_old, lv_new = old.levels[1], new.levels[1]
    torch.manual_seed(4)
    x = torch.randn(3, top.seg_len, top.d_model)  # (m, S, d): three windows of level-0 latents
    logp = torch.zeros(3, top.seg_len)
    valid = torch.ones(3, top.seg_len, dtype=torch.bool)
    with torch.no_grad():
        z_old, z_new = lv_old.compressor(x, logp, valid), lv_new.compressor(x, logp, valid)
        t = torch.full((3,), 0.3)
        d_old, d_new = lv_old.decoder(z_old, t), lv_new.decoder(z_new, t)
    torch.testing.assert_close(z_new, z_old)  # the deeper level computes what the checkpoint did
    torch.testing.assert_close(d_new.x, d_old.x)
