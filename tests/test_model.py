"""Model-level properties of a tiny random model: geometry, determinism, checkpoints, validation."""

import dataclasses
import json
import math
import types

import pytest
import torch
import torch.nn.functional as F

from zonkey import Zonkey, ZonkeyConfig, ZonkeyInputError
from zonkey._utils import draw, rho, to_sphere
from zonkey.checkpoint import CheckpointError
from zonkey.config import LevelConfig
from zonkey.diffusion import add_noise, pure_noise, relaxed_targets
from zonkey.level import ZonkeyLevel
from zonkey.losses import POOL_CAP, info_nce


def _batch(text: str, n: int):
    ids = torch.zeros(2, n, dtype=torch.long)
    raw = list(text.encode())[:n]
    ids[0, : len(raw)] = torch.tensor(raw)
    ids[1, :20] = torch.tensor(raw[:20])
    return ids, torch.tensor([len(raw), 20])


def test_config_json_round_trip_and_strictness():
    for name in ("tiny", "small", "base"):
        cfg = ZonkeyConfig.preset(name)
        assert ZonkeyConfig.from_json(cfg.to_json()) == cfg
    d = ZonkeyConfig.preset("tiny").to_dict()
    d["bogus"] = 1
    with pytest.raises(ValueError, match="unknown config keys"):
        ZonkeyConfig.from_dict(d)
    with pytest.raises(ValueError, match="must equal level 0"):
        ZonkeyConfig(levels=(LevelConfig(d_model=32), LevelConfig(d_model=100, n_heads=2)))


def test_compressor_and_decoder_outputs_lie_on_their_spheres(tiny_model, sentence):
    lv = tiny_model.levels[0]
    cfg = tiny_model.config.levels[0]
    ids, lengths = _batch(sentence, cfg.doc_len)
    with torch.no_grad():
        win, _ = lv.split(tiny_model.embed(ids), lengths, threshold=0.5)
        z = lv.compressor(win.x, win.logp, win.valid)
        dec = lv.decoder(add_noise(z, torch.full((z.shape[0],), 0.3)), torch.full((z.shape[0],), 0.3))
    assert torch.allclose(z.flatten(1).norm(dim=-1), torch.tensor(rho(cfg.n_latents * cfg.d_model)), rtol=1e-4)
    assert torch.allclose(dec.x.norm(dim=-1), torch.tensor(rho(cfg.d_model)), rtol=1e-4)
    p = dec.logp.exp()
    assert (p[:, 0] == 1).all() and (p[:, 1:] <= p[:, :-1] + 1e-6).all()  # existence is a survival curve


def test_training_forward_returns_every_term_per_level(tiny_model, sentence):
    ids, lengths = _batch(sentence, tiny_model.config.levels[0].doc_len)
    torch.manual_seed(0)
    out = tiny_model(ids, lengths)
    expected = {
        "clean_recon",
        "dirty_recon",
        "clean_bos",
        "dirty_bos",
        "stitch_pos",
        "stitch_seq",
        "null_pos",
        "null_seq",
        "collapse",
        "patch",
        "short",
        "compression",
    }
    assert set(out.terms[0]) == expected
    assert set(out.terms[1]) == expected | {"mlm"}
    w = tiny_model.config.loss_weights.as_dict()
    total = sum(w[k] * v for d in out.terms for k, v in d.items())
    assert torch.allclose(out.loss, total)
    assert torch.isfinite(out.loss)
    assert out.stats["l0/dropped_up"] == 0


def test_dirty_pass_from_the_previous_estimate_is_what_the_sampler_feeds(tiny_model, sentence):
    import copy
    from dataclasses import replace

    lv = copy.deepcopy(tiny_model.levels[1])
    lv.dirty_from_estimate = 1.0
    c = tiny_model.config.levels[1]
    z1 = pure_noise(5, c.n_latents, c.d_model, generator=torch.Generator().manual_seed(0))
    t = torch.rand(5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(3)
    dec, prev = lv.dirty_from_previous_estimate(z1, t)
    torch.manual_seed(3)  # by hand: decode at t + dirty_step, re-compress, noise to t, decode
    t1 = (t + lv.dirty_step).clamp_max(1.0)
    p = lv.decoder(add_noise(z1, t1), t1)
    zp = lv.compressor(p.x, p.logp, torch.ones_like(p.logp, dtype=torch.bool))
    torch.rand(5)  # the draw that picks the windows (all of them at share 1)
    want = lv.decoder(add_noise(zp, t), t)
    assert torch.allclose(prev.x, p.x, atol=1e-6) and torch.allclose(dec.x, want.x, atol=1e-6)
    # in a whole training forward: every term is there and finite, gradients reach level 1's decoder
    cfg = replace(tiny_model.config, dirty_from_estimate=0.5)
    assert ZonkeyConfig.from_json(cfg.to_json()) == cfg
    torch.manual_seed(0)
    model = Zonkey(cfg)
    ids, lengths = _batch(sentence, cfg.levels[0].doc_len)
    out = model(ids, lengths)
    assert torch.isfinite(out.loss) and "dirty_recon" in out.terms[1]
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.levels[1].decoder.parameters())
    with pytest.raises(ValueError, match="dirty_from_estimate=1.5 must be in"):
        replace(cfg, dirty_from_estimate=1.5)


def test_frozen_lower_level_feeds_the_upper_one_like_inference(tiny_model, sentence):
    from zonkey import codec
    from zonkey.inference import encode_ids

    ids, lengths = _batch(sentence, tiny_model.config.levels[0].doc_len)
    torch.manual_seed(0)
    out = tiny_model(ids, lengths, frozen_levels=1)
    assert out.terms[0] == {} and "clean_recon" in out.terms[1]
    out.loss.backward()
    assert all(p.grad is None for p in tiny_model.levels[0].parameters())
    assert tiny_model.levels[1].compressor.cls.grad is not None
    tiny_model.zero_grad(set_to_none=True)
    # the frozen level segments exactly as inference does (threshold 0.5)
    with torch.no_grad():
        raw = codec.encode(sentence)[: ids.shape[1]]
        expected = sum(encode_ids(tiny_model, r, top=0)[0].win.doc.numel() for r in (raw, raw[:20]))
    assert out.stats["l0/segments"] == expected
    with pytest.raises(ValueError, match="at least one level trains"):
        tiny_model(ids, lengths, frozen_levels=2)


def test_relaxed_target_picks_truth_or_previous_estimate():
    g = torch.Generator().manual_seed(0)
    a, x = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    w = torch.ones(2, 5)
    _, t = relaxed_targets(x.clone(), a, x, w)
    assert torch.allclose(t, torch.ones(2))
    _, t = relaxed_targets(a.clone(), a, x, w)
    assert torch.allclose(t, torch.zeros(2))
    _, t = relaxed_targets(a.clone(), a, x, w, t_min=0.5)
    assert (t >= 0.5).all()


def test_info_nce_ignores_zero_weight_rows_in_value_gradient_and_randomness():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 16, generator=g, requires_grad=True)
    targets, pool = torch.randn(3, 6, 16, generator=g), torch.randn(40, 16, generator=g)
    w = (torch.rand(3, 6, generator=g) < 0.3).float() * torch.rand(3, 6, generator=g)
    keep = w > 0
    assert 0 < int(keep.sum()) < w.numel()
    full = info_nce(x, targets, pool, w, k=7, generator=torch.Generator().manual_seed(1))
    x_kept = x.detach()[keep][None].requires_grad_()
    only = info_nce(x_kept, targets[keep][None], pool, w[keep][None], k=7, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(full, only, atol=1e-6)
    full.backward()
    only.backward()
    assert torch.equal(x.grad[~keep], torch.zeros_like(x.grad[~keep]))
    assert torch.allclose(x.grad[keep], x_kept.grad[0], atol=1e-6)
    # a target that is also in the pool is never its own negative (P8)
    t_in_pool = info_nce(targets.clone(), targets, targets.flatten(0, 1), torch.ones(3, 6), k=200)
    assert t_in_pool < 1e-3


def test_info_nce_same_cos_and_scale_match_the_closed_form():
    # one prediction, one target and a pool holding a single other vector: all k negatives are that vector
    x, t = torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[[0.8, 0.6, 0.0]]])
    near = torch.tensor([[0.8, 0.55, 0.2]])  # cosine 0.98 to the target: another occurrence of the same word
    c_pos, c_neg = 0.8, float(F.cosine_similarity(x[0], near))
    w, k = torch.ones(1, 1), 5
    for scale, logit in ((0.0, lambda c: 2 * math.atanh(c)), (16.0, lambda c: 16 * c)):
        want = -math.log(math.exp(logit(c_pos)) / (math.exp(logit(c_pos)) + k * math.exp(logit(c_neg))))
        got = info_nce(x, t, near, w, k, scale=scale)
        assert abs(float(got) - want) < 1e-4
        # counted as the target itself, the near copy is no negative: nothing left to tell apart
        assert float(info_nce(x, t, near, w, k, same_cos=0.95, scale=scale)) < 1e-6


def test_mlm_and_contrastive_options_are_loss_only_and_validated():
    a = LevelConfig(mlm=True, mlm_same_cos=0.95, mlm_logit_scale=16.0)
    assert a.architecture() == LevelConfig(mlm=True).architecture()
    b = LevelConfig(contrastive_negatives=512, contrastive_same_cos=0.95, contrastive_logit_scale=16.0)
    assert b.architecture() == LevelConfig().architecture()
    for term in ("mlm", "contrastive"):
        with pytest.raises(ValueError, match=f"{term}_same_cos=0"):
            LevelConfig(**{f"{term}_same_cos": 0.0})
        with pytest.raises(ValueError, match=f"{term}_logit_scale=-1"):
            LevelConfig(**{f"{term}_logit_scale": -1.0})


def test_contrastive_options_set_level_one_reconstruction():
    base = ZonkeyConfig.preset("tiny")
    wide = dataclasses.replace(
        base.levels[1], contrastive_negatives=7, contrastive_same_cos=0.95, contrastive_logit_scale=16.0
    )
    cfg = base.replace(levels=(base.levels[0], wide))
    g = torch.Generator().manual_seed(0)
    d = wide.d_model
    x, tgt = torch.randn(2, 3, d, generator=g), torch.randn(2, 3, d, generator=g)
    pool, w = torch.cat([tgt.flatten(0, 1), torch.randn(5, d, generator=g)]), torch.rand(2, 3, generator=g)
    win = types.SimpleNamespace(x=tgt)
    losses = []
    for c in (cfg, base):
        level = ZonkeyLevel(c.levels[1], 1, c)
        torch.manual_seed(3)  # the negatives' draws
        losses.append(level.recon(x, win, w, None, pool))
    torch.manual_seed(3)
    want = info_nce(x, tgt, pool, w, 7, same_cos=0.95, scale=16.0)
    torch.manual_seed(3)
    release = info_nce(x, tgt, pool, w, base.levels[1].contrastive_negatives)
    assert torch.equal(losses[0], want) and torch.equal(losses[1], release)
    assert not torch.allclose(want, release)


def test_mlm_denoiser_averages_the_compressor_and_the_decoders_prediction():
    base = ZonkeyConfig.preset("tiny")
    lc = dataclasses.replace(base.levels[1], mlm_negatives=7)
    assert dataclasses.replace(lc, mlm_denoiser=True).architecture() == lc.architecture()
    g = torch.Generator().manual_seed(0)
    m, s, d = 3, lc.seg_len, lc.d_model
    x = torch.randn(m, s, d, generator=g)
    valid = torch.arange(s)[None] < torch.tensor([[s], [s - 3], [5]])
    logp = torch.where(valid, 0.0, -20.0)
    win = types.SimpleNamespace(x=x, valid=valid, logp=logp)
    w, pool = valid.float(), x[valid]
    levels = []
    for flag in (False, True):
        cfg = base.replace(levels=(base.levels[0], dataclasses.replace(lc, mlm_denoiser=flag)))
        torch.manual_seed(1)
        levels.append(ZonkeyLevel(cfg.levels[1], 1, cfg))
    release, head = levels
    torch.manual_seed(3)
    want_compressor = release.mlm_loss(win, w, pool)
    # the same draws by hand: picks, the 80/10/10 split, the random vectors, the negatives, then t and the noise
    torch.manual_seed(3)
    pick = (torch.rand(m, s) < 0.2) & valid
    u = torch.rand(m, s)
    xs = to_sphere(x, rho(d))
    xs = torch.where((pick & (u >= 0.8) & (u < 0.9))[..., None], to_sphere(torch.randn_like(xs), rho(d)), xs)
    masked = pick & (u < 0.8)
    h = head.mlm_outputs(xs, masked, logp, valid)
    got_compressor = info_nce(h, x, pool, pick.float(), 7)
    z = head.compressor(torch.where(masked[..., None], to_sphere(head.mask_vector, rho(d)), xs), logp, valid)
    t = torch.rand(m)
    want_decoder = info_nce(head.decoder(add_noise(z, t), t).x, x, pool, pick.float(), 7)
    torch.manual_seed(3)
    got = head.mlm_loss(win, w, pool)
    assert torch.allclose(got_compressor, want_compressor)
    assert torch.allclose(got, 0.5 * (want_compressor + want_decoder))
    got.backward()  # the denoiser variant trains the decoder; the release's term does not reach it
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.decoder.parameters())
    release.zero_grad()
    torch.manual_seed(3)
    release.mlm_loss(win, w, pool).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in release.decoder.parameters())


def test_same_seed_same_output_and_different_seed_differs(tiny_model, sentence):
    g1 = tiny_model.generate(steps=4, seed=3)
    g2 = tiny_model.generate(steps=4, seed=3)
    assert g1.text == g2.text and len(g1.trajectory) == 10  # two passes (refine)
    r1 = tiny_model.infill(sentence, [(4, 9)], steps=3, seed=1)
    r2 = tiny_model.infill(sentence, [(4, 9)], steps=3, seed=1)
    assert r1.to_dict() == r2.to_dict()
    assert tiny_model.reconstruct(sentence) == tiny_model.reconstruct(sentence)


def test_temperature_scales_the_samplers_noise_and_one_is_the_default(tiny_model, sentence):
    # add_noise(scale=s): the same Gaussian draw, multiplied by s before the projection
    z = pure_noise(3, 2, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.3, 0.9])
    xi = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))
    tt = t[:, None, None]
    want = (tt.sqrt() * 0.5 * xi + (1 - tt).sqrt() * z).flatten(1)
    want = (rho(8) * want / want.norm(dim=-1, keepdim=True)).view_as(z)
    got = add_noise(z, t, generator=torch.Generator().manual_seed(5), scale=0.5)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.equal(
        add_noise(z, t, generator=torch.Generator().manual_seed(5)),
        add_noise(z, t, generator=torch.Generator().manual_seed(5), scale=1.0),
    )
    # the public calls: temperature 1 is the default, another one changes the sample, both are reported
    g = tiny_model.generate(steps=4, seed=3)
    assert g.to_dict() == tiny_model.generate(steps=4, seed=3, temperature=1.0).to_dict()
    cold = tiny_model.generate(steps=4, seed=3, temperature=0.3)
    assert (g.temperature, cold.temperature, cold.to_dict()["temperature"]) == (1.0, 0.3, 0.3)
    assert [s.existence for s in cold.trajectory] != [s.existence for s in g.trajectory]
    r = tiny_model.infill(sentence, [(4, 9)], steps=3, seed=1)
    assert r.to_dict() == tiny_model.infill(sentence, [(4, 9)], steps=3, seed=1, temperature=1).to_dict()
    r_cold = tiny_model.infill(sentence, [(4, 9)], steps=3, seed=1, temperature=0.3)
    assert r_cold.temperature == 0.3 and [s.existence for s in r_cold.trajectory] != [s.existence for s in r.trajectory]


def test_infill_leaves_context_byte_identical_and_reports_filled(tiny_model):
    text = "Zürich 🦓 is a city; שלום and e\u0301 combine. The end."
    spans = [(3, 6), (12, 14), (40, 43)]
    res = tiny_model.infill(text, spans, steps=3, seed=0)
    assert len(res.filled) == 3
    pieces, prev = [], 0
    for s, e in spans:
        pieces.append(text[prev:s])
        prev = e
    pieces.append(text[prev:])
    got, prev = [], 0
    for fs, fe in res.filled:
        got.append(res.text[prev:fs])
        prev = fe
    got.append(res.text[prev:])
    assert [p.encode() for p in got] == [p.encode() for p in pieces]
    assert res.trajectory[-1].text == res.text
    assert all(step.filled for step in res.trajectory)


def test_inputs_are_not_mutated(tiny_model, sentence):
    spans = [(4, 9), [20, 25]]
    before = json.dumps(spans)
    tiny_model.infill(sentence, spans, steps=2, seed=0)
    assert json.dumps(spans) == before


def test_level0_char_bos_is_the_highest_bos_among_the_chars_bytes(tiny_model):
    """A start is mapped to the char holding its byte, so the char's P is the max over its bytes:
    every char above the threshold is a start, and a start at or below it was forced (position 0,
    or `seg_len` bytes after the previous start)."""
    from zonkey import codec
    from zonkey.inference import encode_ids

    text = "Tokyo 東京 Москва — naïve café ok"
    seg = tiny_model.segment(text, threshold=0.5).levels[0]
    cmap = codec.char_map(text)
    with torch.no_grad():
        code = encode_ids(tiny_model, codec.encode(text), threshold=0.5)[0]
    beta = code.beta.float().numpy()  # (n_bytes,)
    starts_b = code.win.start.numpy().tolist()  # byte offsets of the level-0 starts
    seg_len = tiny_model.config.levels[0].seg_len
    for i in range(len(text)):
        b0, b1 = cmap.byte_of_char[i], cmap.byte_of_char[i + 1]
        assert seg.char_bos[i] == pytest.approx(float(beta[b0:b1].max()), abs=1e-6)
        if seg.char_bos[i] > 0.5:
            assert i in seg.starts
    for prev, nxt in zip(starts_b, starts_b[1:]):
        assert beta[nxt] > 0.5 or (nxt - prev) % seg_len == 0  # a start below the threshold is forced
    assert sorted({int(cmap.char_of_byte[b]) for b in starts_b}) == seg.starts


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.segment(""), "empty"),
        (lambda m: m.segment("   \n"), "empty"),
        (lambda m: m.segment(42), "must be a str"),
        (lambda m: m.segment("x" * 5000), "limit is 4000"),
        (lambda m: m.reconstruct("hello", level=7), "level=7"),
        (lambda m: m.infill("hello world", [(3, 30)]), "out of range"),
        (lambda m: m.infill("hello world", [(5, 2)]), "reversed"),
        (lambda m: m.infill("hello world", [(1, 5), (3, 8)]), "overlap"),
        (lambda m: m.infill("hello world", [(0, 11)]), "cover the whole text"),
        (lambda m: m.infill("hello world", [(2, 2)]), "empty"),
        (lambda m: m.infill("hello world", []), "non-empty list"),
        (lambda m: m.infill("hello world", [(0, 3)], steps=0), "steps=0"),
        (lambda m: m.infill("hello world", [(0, 3)], steps=10_000), "out of range"),
        (lambda m: m.infill("hello world", [(0, 3)], seed=-1), "seed=-1"),
        (lambda m: m.infill("hello world", [(0, 3)], length="long"), "length="),
        (lambda m: m.infill("hello world", [(0, 3)], level="top"), "level="),
        (lambda m: m.generate(steps=1.5), "steps must be an int"),
        (lambda m: m.generate(num_segments=0), "num_segments"),
        (lambda m: m.generate(temperature=0), "above 0 and at most 2"),
        (lambda m: m.generate(temperature=2.5), "temperature=2.5 is out of range"),
        (lambda m: m.infill("hello world", [(0, 3)], temperature="hot"), "temperature must be a number"),
    ],
)
def test_validation_errors_are_actionable(tiny_model, call, match):
    with pytest.raises(ZonkeyInputError, match=match):
        call(tiny_model)


def test_save_load_round_trip_gives_identical_outputs(tiny_model, sentence, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ck")
    loaded = Zonkey.from_pretrained(tmp_path / "ck")
    for a, b in zip(tiny_model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert loaded.reconstruct(sentence) == tiny_model.reconstruct(sentence)
    assert loaded.generate(steps=3, seed=5).text == tiny_model.generate(steps=3, seed=5).text


def test_bad_checkpoints_are_refused_with_the_file_named(tiny_model, tmp_path):
    d = tmp_path / "ck"
    tiny_model.save_pretrained(d)
    weights = d / "model.safetensors"
    # truncated
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: truncated or corrupted"):
        Zonkey.from_pretrained(d)
    # corrupted header
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        Zonkey.from_pretrained(d)
    # missing
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing weights file"):
        Zonkey.from_pretrained(d)
    # mismatched config
    tiny_model.save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["levels"][0]["compressor_layers"] = 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match config.json"):
        Zonkey.from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: invalid config"):
        Zonkey.from_pretrained(d)
    with pytest.raises(CheckpointError, match="does not exist"):
        Zonkey.from_pretrained(tmp_path / "nowhere")


def test_callback_streams_every_step_and_sampler_is_stepwise(tiny_model, sentence):
    from zonkey.diffusion import pure_noise
    from zonkey.samplers import DDMMSampler

    seen = []
    res = tiny_model.infill(sentence, [(4, 9)], steps=5, seed=0, callback=seen.append)
    assert [s.to_dict() for s in seen] == [s.to_dict() for s in res.trajectory]
    assert [s.step for s in seen] == list(range(len(seen)))
    sampler = DDMMSampler(tiny_model.levels[1])
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sampler.step(pure_noise(1, 4, 128), 1.0)
    sampler.set_timesteps(4)
    assert sampler.timesteps == [1.0, 0.75, 0.5, 0.25]
    with torch.no_grad():
        out = sampler.step(pure_noise(1, 4, 128), 1.0)
    assert out.z.shape == (1, 4, 128) and out.x.shape == (1, 12, 128)


def test_stitch_cuts_at_the_real_stitched_length(tiny_model):
    """P20: windows are placed at their existence drops and the last one is cut where its
    existence falls below the threshold, so nothing past the content survives."""
    st = tiny_model.levels[0].stitcher
    s, d = 12, 32
    lengths = [5, 3, 7]
    beta = torch.zeros(3, s)
    for i, k in enumerate(lengths):
        beta[i, k] = 1.0  # window i exists for exactly k positions
    from zonkey.attention import log_existence

    u = torch.randn(3, s, d, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = st.stitch(u, log_existence(beta))
    assert out.shape == (sum(lengths), d)
    assert torch.equal(out[-7:], u[2, :7])  # the last window is placed unrefined and cut at its end


def test_level1_auto_length_with_context_keeps_the_word_count_and_ranks_samples(tiny_model, sentence, monkeypatch):
    import zonkey.infill as zi

    calls, decoded = [], []
    real_candidates, real_decode = zi._candidates, zi.decode_scored
    monkeypatch.setattr(zi, "_candidates", lambda *a: calls.append(a) or real_candidates(*a))

    def decode(model, level, v):
        decoded.append((v.shape[0], *real_decode(model, level, v)))
        return decoded[-1][1:]

    monkeypatch.setattr(zi, "decode_scored", decode)
    runs, real_run = [], zi.run_canvas
    monkeypatch.setattr(zi, "run_canvas", lambda *a: runs.append(real_run(*a)) or runs[-1])
    s = sentence.index("African")
    kept = set()
    for span, words in (((s, s + len("African")), 1), ((s, s + len("African equine")), 2)):
        decoded.clear()
        res = tiny_model.infill(sentence, [span], level=1, length="auto", steps=3, seed=1)
        assert calls == []  # context on both sides: no slot-count search
        assert [n for n, _, _ in decoded] == [words] * zi.SAMPLES  # one slot per word of the span
        # the kept fill: most words right, then the most confident decoding
        ranked = [d[2] - abs(len(d[1].split()) - words) for d in decoded]
        best = ranked.index(max(ranked))
        left, right = sentence[: span[0]], sentence[span[1] :]
        fs, fe = res.filled[0]
        assert res.text[fs:fe] == zi._harmonize(left, decoded[best][1], right)
        # every step of the trajectory shows that same sample
        _, _, frames = runs[-1]
        assert len(res.trajectory) == len(frames) + 1
        for st, (t, d) in zip(res.trajectory, frames):
            assert st.t == t and st.existence == d.logp[best].exp().tolist()
        kept.add(best)
    assert kept != {0}  # (so the check above would notice a trajectory of the first sample)
    # a typed gap marker is one word
    decoded.clear()
    tiny_model.infill("The zebra is an ___ equine.", [(16, 19)], level=1, steps=2)
    assert [n for n, _, _ in decoded] == [1] * zi.SAMPLES
    # an explicit length and an open end still search slot counts
    tiny_model.infill(sentence, [(s, s + 7)], level=1, length="keep", steps=2)
    tiny_model.infill(sentence[: s + 7], [(s, s + 7)], level=1, length="auto", steps=2)
    assert len(calls) == 2


def test_decoder_confidence_is_the_mean_log_probability_of_the_read_bytes(tiny_model):
    import torch.nn.functional as F

    import zonkey.infill as zi
    from zonkey.inference import decode_down, decode_windows, vectors_to_latents
    from zonkey.losses import char_logits

    v = torch.randn(2, tiny_model.config.levels[1].d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        text, conf = zi.decode_scored(tiny_model, 1, v)
        x0 = decode_windows(tiny_model, 0, vectors_to_latents(tiny_model, 0, v))
        lp = F.log_softmax(char_logits(x0, tiny_model.embed.weight).float(), -1).max(-1).values
        assert text == decode_down(tiny_model, 1, v)
    assert conf == pytest.approx(float(lp.mean())) and conf <= 0.0


def test_hand_up_buffer_is_as_long_as_the_longest_document():
    from zonkey.model import hand_up

    z = torch.randn(7, 2, 3)
    doc = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    rank = torch.tensor([0, 1, 2, 0, 1, 0, 1])
    x, lengths, dropped = hand_up(z, doc, rank, torch.tensor([3, 2, 2]), cap=10)
    assert x.shape == (3, 3, 6) and lengths.tolist() == [3, 2, 2] and dropped == 0
    assert torch.equal(x[1, :2], z[3:5].flatten(1)) and not x[1, 2:].any()
    x, lengths, dropped = hand_up(z, doc, rank, torch.tensor([3, 2, 2]), cap=2)  # the cap still applies
    assert x.shape == (3, 2, 6) and lengths.tolist() == [2, 2, 2] and dropped == 1


def test_bf16_autocast_forward_matches_float32_and_keeps_losses_in_float32(tiny_model, sentence):
    """Under CPU bf16 autocast the projections run in bf16 while attention, existence,
    probabilities and losses stay float32: every term is finite and close to the float32 one."""
    ids, lengths = _batch(sentence, tiny_model.config.levels[0].doc_len)
    torch.manual_seed(0)
    ref = tiny_model(ids, lengths)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(ids, lengths)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    for lv_ref, lv in zip(ref.terms, out.terms):
        assert set(lv_ref) == set(lv)
        for key in lv:
            assert lv[key].dtype == torch.float32, key
            assert torch.isfinite(lv[key]), key
            got, want = float(lv[key].detach()), float(lv_ref[key].detach())
            assert abs(got - want) <= 0.05 * abs(want) + 0.02, key
    out.loss.backward()
    grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    tiny_model.zero_grad(set_to_none=True)


def test_fp32_guard_casts_arguments_and_turns_autocast_off():
    from zonkey._utils import fp32

    @fp32
    def probe(a, b=None):
        return a.dtype, b.dtype, torch.is_autocast_enabled("cpu"), (a @ a.t()).dtype

    x = torch.ones(2, 2, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert probe(x, b=x) == (torch.float32, torch.float32, False, torch.float32)
        assert torch.is_autocast_enabled("cpu")  # restored afterwards
    assert probe(x.float(), b=x)[2] is False


def test_bf16_release_loads_back_into_float32(tiny_model, sentence, tmp_path):
    tiny_model.save_pretrained(tmp_path, dtype=torch.bfloat16)
    loaded = Zonkey.from_pretrained(tmp_path)
    for (k, a), b in zip(tiny_model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, k
        assert torch.equal(b, a.to(torch.bfloat16).to(a.dtype) if a.is_floating_point() else a), k
    assert loaded.segment(sentence).segments  # a working model


def test_info_nce_draws_its_negatives_like_every_other_seeded_draw(monkeypatch):
    # the pool subsample (a pool above POOL_CAP) and the negatives go through `draw`, so a seeded
    # CPU generator works beside a model on a GPU; the same seed gives the same loss
    import zonkey.losses as losses

    calls = []

    def recording(fn, *args, **kw):
        calls.append((fn.__name__, kw["generator"] is not None))
        return draw(fn, *args, **kw)

    monkeypatch.setattr(losses, "draw", recording)
    g = torch.Generator().manual_seed(0)
    x, pool = torch.randn(2, 3, 8, generator=g), torch.randn(POOL_CAP + 5, 8, generator=g)
    w = torch.ones(2, 3)
    a = info_nce(x, x + 0.1, pool, w, k=5, generator=torch.Generator().manual_seed(1))
    assert calls == [("randperm", True), ("randint", True)]
    assert torch.equal(a, info_nce(x, x + 0.1, pool, w, k=5, generator=torch.Generator().manual_seed(1)))


def test_seeded_draws_do_not_depend_on_the_target_device():
    # a seeded CPU generator draws on the CPU and the numbers then move to the model's device, so a
    # seed gives the same noise on every device (a CPU generator cannot draw on a GPU at all);
    # "meta" stands in for a GPU here
    seeded = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    asked = []

    def randn(shape, **kw):
        asked.append(kw["device"])
        return torch.randn(shape, **kw)

    moved = draw(randn, (3, 4), generator=seeded(), device=torch.device("meta"))
    assert asked == [torch.device("cpu")] and moved.device.type == "meta" and moved.shape == (3, 4)
    on_cpu = draw(randn, (3, 4), generator=seeded(), device=torch.device("cpu"))
    assert torch.equal(on_cpu, torch.randn((3, 4), generator=seeded()))
    assert draw(randn, (2,), device=torch.device("meta")).device.type == "meta" and asked[-1] == torch.device("meta")
    assert pure_noise(2, 2, 3, generator=seeded(), device=torch.device("meta")).device.type == "meta"
    z = torch.zeros(2, 2, 3, device="meta")
    assert add_noise(z, torch.ones(2, device="meta"), generator=seeded()).device.type == "meta"


def test_generate_refine_adds_a_second_pass_that_keeps_the_confident_words(tiny_model):
    from zonkey.refine import refine, slot_confidence
    from zonkey.samplers import DDMMSampler
    from zonkey.validation import DEFAULT_REFINE

    one = tiny_model.generate(num_segments=2, steps=3, seed=5, refine=0)
    two = tiny_model.generate(num_segments=2, steps=3, seed=5)  # the default second pass
    assert (one.refine, two.refine) == (0.0, DEFAULT_REFINE) and two.to_dict()["refine"] == DEFAULT_REFINE
    assert len(one.trajectory) == 4 and len(two.trajectory) == 8
    # the first pass is the method's sampler, unchanged; the second starts again from t = 1
    assert [s.to_dict() for s in two.trajectory[:4]] == [s.to_dict() for s in one.trajectory]
    assert [s.step for s in two.trajectory] == list(range(8)) and two.trajectory[4].t == 1.0
    assert two.text == two.trajectory[-1].text
    # level 0 has no word slots: no second pass
    l0 = tiny_model.generate(num_segments=2, steps=3, seed=5, level=0)
    assert len(l0.trajectory) == 4 and l0.refine == 0.0

    # the pass itself: the least confident fraction of each window's slots is re-infilled, the rest kept
    lv = tiny_model.levels[1]
    lc = tiny_model.config.levels[1]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sampler = DDMMSampler(lv)
        sampler.set_timesteps(2)
        z = pure_noise(1, lc.n_latents, lc.d_model, generator=g)
        for t in sampler.timesteps:
            z = sampler.step(z, t, generator=g).z
        dec = sampler.final(z)
        n = int((dec.logp[0].exp() > tiny_model.config.infill_threshold).sum().clamp_min(1))
        conf = slot_confidence(tiny_model, 1, dec.x[0, :n])
        # batched confidences equal the one-slot decodes
        single = [zi_decode(tiny_model, dec.x[0, j : j + 1]) for j in range(n)]
        assert conf.tolist() == pytest.approx(single, abs=1e-5)
        frames = []
        vectors, logp = refine(tiny_model, 1, dec, 0.5, 2, g, 1.0, lambda t, v, lp: frames.append(t))
    low = set(conf.argsort()[: max(1, round(0.5 * n))].tolist())
    assert vectors.shape == (n, lc.d_model) and frames == [1.0, 0.5] and logp.shape == (1, lc.seg_len)
    for j in range(n):
        assert torch.equal(vectors[j], dec.x[0, j]) == (j not in low)


def zi_decode(model, v):
    import zonkey.infill as zi

    return zi.decode_scored(model, 1, v)[1]


@pytest.mark.parametrize(("refine", "message"), [(-0.1, "out of range"), (1.0, "out of range"), ("x", "a number")])
def test_refine_is_validated(tiny_model, refine, message):
    with pytest.raises(ZonkeyInputError, match=message):
        tiny_model.generate(steps=2, refine=refine)


def test_level1_fills_from_the_mlm_head_start_at_t_start(tiny_model, sentence, monkeypatch):
    import zonkey.infill as zi

    s = sentence.index("African")
    left, right = sentence[:s], sentence[s + len("African") :]

    def fills(t_start):
        g = torch.Generator().manual_seed(3)
        with torch.inference_mode():
            return zi._fill_level1(tiny_model, left, right, "auto", 7, 4, g, 1.0, 1, samples=2, t_start=t_start)

    method, again = fills(1.0), fills(1.0)
    assert method.fills == again.fills and torch.equal(method.scores, again.scores)  # seeded
    assert [t for t, _ in method.frames] == [1.0, 0.75, 0.5, 0.25]
    assert [t for t, _ in fills(0.5).frames] == [0.5, 0.25]  # only the schedule's steps at or below t_start
    # what the sampler starts from: the gap slot holds the mask vector at t_start = 1, the MLM head's reading below
    seen, real = [], zi.run_canvas
    monkeypatch.setattr(
        zi, "run_canvas", lambda m, lvl, canvas, *a: seen.append(canvas.x.clone()) or real(m, lvl, canvas, *a)
    )
    fills(1.0)
    fills(0.5)
    rho = zi.rho(tiny_model.config.levels[1].d_model)
    mask = zi.to_sphere(tiny_model.levels[1].mask_vector.detach(), rho)
    at_mask = (seen[0] == mask).all(-1)  # (samples, S)
    assert at_mask.sum(1).tolist() == [1, 1]  # one slot per sample: the single-word gap
    gap = int(at_mask[0].nonzero())
    assert not torch.allclose(seen[1][:, gap], mask.expand_as(seen[1][:, gap]))
    assert torch.allclose(seen[1][:, gap].norm(dim=-1), torch.full((2,), rho))  # on the sphere, as every slot
    keep = torch.ones(seen[0].shape[1], dtype=torch.bool)
    keep[gap] = False
    assert torch.equal(seen[0][:, keep], seen[1][:, keep])  # the context is untouched
