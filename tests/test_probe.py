"""training/probe.py: the data's invariants (split, masks, classes), the top-1 score on known cases, the
MLM head's predictions, and the probes (seeded, so deterministic) end to end, on the shipped
zonkey-small's level 0."""

import collections
import json

import pytest
import torch
import torch.nn.functional as F

from training.probe import (
    HELDOUT_EVERY,
    build_data,
    frequent_top1,
    head_predictions,
    main,
    probe,
    run_masks,
    segment_vectors,
    top1,
    train_probe,
)
from zonkey import Zonkey, ZonkeyConfig

SMALL = "assets/models/zonkey-small"

TEXTS = [
    "The cat sat on the mat. The dog ran to the park and the cat ran after it. It was a sunny day in May. "
    "The dog came back home at night, and the cat slept on the mat until the sun rose again.",
    "A river flows to the sea. Rivers carry water, sand and stones to the sea, and the sea keeps them all. "
    "Some rivers dry up in summer; others flood the plains in spring and carry trees to the coast.",
] * 10


@pytest.fixture(scope="module")
def model():  # the shipped checkpoint: a random level 0 gives near-identical word vectors
    return Zonkey.from_pretrained(SMALL).eval()


@pytest.fixture(scope="module")
def data(model):
    return build_data(model, TEXTS, seed=3)


def test_segment_vectors_cover_the_text_with_unit_vectors(model):
    texts, v = segment_vectors(model, TEXTS[0])
    assert "".join(texts) == TEXTS[0]
    assert v.shape == (len(texts), model.config.levels[1].d_model)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(len(texts)))


def test_run_masks_are_seeded_with_one_mask_at_least():
    m = run_masks(500, 16, seed=1)
    assert m.any(1).all()
    assert torch.equal(m, run_masks(500, 16, seed=1))
    assert not torch.equal(m, run_masks(500, 16, seed=2))
    assert 0.15 < m.float().mean() < 0.25


def test_build_data_splits_by_paragraph_and_keeps_classes_consistent(model, data):
    S = model.config.levels[1].seg_len
    reads = [segment_vectors(model, t) for t in TEXTS]
    expected = {True: 0, False: 0}
    for p, (segs, _) in enumerate(reads):
        expected[p % HELDOUT_EVERY == HELDOUT_EVERY - 1] += len(segs) // S
    assert (len(data.x_test), len(data.x_train)) == (expected[True], expected[False])
    assert data.x_train.shape[1:] == (S, model.config.levels[1].d_model)
    assert len(set(data.texts)) == len(data.texts) == data.class_vecs.shape[0] == data.counts.shape[0]
    assert data.n_segments == sum(len(segs) for segs, _ in reads)
    # the prior counts the training paragraphs only, plus one for every text
    held = [p % HELDOUT_EVERY == HELDOUT_EVERY - 1 for p in range(len(TEXTS))]
    counts = collections.Counter(s for (segs, _), h in zip(reads, held) if not h for s in segs)
    assert [int(c) for c in data.counts] == [counts[t] + 1 for t in data.texts]
    # the first training run is the first paragraph's first S segments
    first_texts, first_vecs = reads[0]
    assert [data.texts[i] for i in data.y_train[0]] == first_texts[:S]
    torch.testing.assert_close(data.x_train[0], first_vecs[:S])
    assert torch.equal(build_data(model, TEXTS, seed=3).mask_test, data.mask_test)


def test_top1_of_known_predictions(data):
    y = data.y_test[data.mask_test]
    assert top1(data.class_vecs[y], y, data) == 1.0  # each class's own mean vector
    assert top1(-data.class_vecs[y], y, data) < 1.0
    most = int(data.counts.argmax())
    assert frequent_top1(data) == pytest.approx(float((y == most).float().mean()))
    # with the prior, a prediction orthogonal to every class (all logits 0) picks the most frequent text
    zero = torch.zeros(len(y), data.class_vecs.shape[1])
    for scale in (0.0, 16.0):
        assert top1(zero, y, data, prior_scale=scale) == pytest.approx(frequent_top1(data))
    # under 2 atanh(cos) each class's own vector (cos 1, logit ~14.5) outweighs the prior here
    assert top1(data.class_vecs[y], y, data, prior_scale=0.0) == 1.0


def test_head_predictions_are_the_compressor_at_the_mask_slots(model, data):
    x, m = data.x_test[:3], data.mask_test[:3]
    h = head_predictions(model, x, m, chunk=2)
    assert h.shape == (int(m.sum()), model.config.levels[1].d_model)
    # changing an unmasked neighbour changes the prediction (the head reads its context)
    x2 = x.clone()
    r, j = (~m).nonzero()[0].tolist()
    x2[r, j] = F.normalize(torch.randn(x.shape[2]), dim=0)
    assert not torch.allclose(h, head_predictions(model, x2, m))


def untimed(r: dict) -> dict:
    return {k: [untimed(c) for c in v] if k == "checks" else v for k, v in r.items() if k != "minutes"}


@pytest.mark.parametrize("objective", ["release", "wide", "softmax"])
def test_probe_trains_deterministically(data, objective):
    a = train_probe(data, objective, steps=30, batch=16, check_every=10)
    b = train_probe(data, objective, steps=30, batch=16, check_every=10)
    assert untimed(a) == untimed(b)
    assert a["steps"] == 30 and [c["step"] for c in a["checks"]] == [10, 20, 30]
    assert 0.0 <= a["top1"] <= a["best_top1"] <= 1.0
    assert a["loss_last"] < a["loss_first"]  # it learns the training runs
    with pytest.raises(ValueError, match="unknown probe objective"):
        train_probe(data, "cosine", steps=1)


def test_cli_end_to_end_on_real_paragraphs(tmp_path):
    out = tmp_path / "p.json"
    r = main(["--model", SMALL, "--paragraphs", "40", "--steps", "3", "--objective", "wide", "--out", str(out)])
    assert json.loads(out.read_text()) == r and r["paragraphs"] == 40
    assert r["masked_test"] > 0 and r["runs_train"] > r["runs_test"] > 0
    assert [p["objective"] for p in r["probes"]] == ["wide"] and r["probes"][0]["steps"] == 3
    assert 0 <= r["head_top1"] <= 1 and r["classes"] <= r["segments"]


def test_a_model_without_a_level_1_mlm_head_is_refused(tmp_path):
    cfg = ZonkeyConfig.preset("tiny").to_dict()
    cfg["levels"] = cfg["levels"][:1]
    Zonkey(ZonkeyConfig.from_dict(cfg)).save_pretrained(tmp_path / "one")
    with pytest.raises(ValueError, match="no level-1 MLM head"):
        probe(str(tmp_path / "one"))
