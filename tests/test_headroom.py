"""training/headroom.py: the two pure rules on hand-made cases, and both measurements end to end (their
invariants, not the numbers): the word table and the infill measurement on the shipped zonkey-small (a
random model's level 0 does not cut at word starts), the rest on a seeded tiny model."""

import pytest
import torch

from training.headroom import (
    SAMPLE_COUNTS,
    FixedBOS,
    boundary_headroom,
    ceiling_starts,
    chance_starts,
    doc_chunks,
    headroom,
    infill_headroom,
    linear_probe_auc,
    loss_with_starts,
    mlm_prediction,
    preceding_word,
    ranking_auc,
    recon_with_starts,
    shifted_starts,
    start_pull,
    unit_features,
    within_doc_auc,
    word_table,
)
from zonkey import Zonkey, ZonkeyConfig, codec
from zonkey.inference import encode_ids

TEXTS = [
    "The cat sat on the mat. The dog ran to the park and the cat ran after it.",
    "A river flows to the sea. Rivers carry water, sand and stones to the sea.",
] * 3
SENTENCES = [
    "The river carried sand and stones to the sea.",
    "A dog ran after the cat in the park.",
    "Water flows from the hills to the sea.",
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Zonkey(ZonkeyConfig.preset("tiny")).eval()


@pytest.fixture(scope="module")
def small():
    return Zonkey.from_pretrained("assets/models/zonkey-small").eval()


def test_ranking_auc_counts_pairs_and_ties():
    assert ranking_auc([2, 3], [1]) == 1.0
    assert ranking_auc([0], [1, 2]) == 0.0
    assert ranking_auc([1], [1]) == 0.5
    assert ranking_auc([1, 3], [2]) == 0.5
    assert ranking_auc([], [1]) == 0.5


def test_ceiling_starts_take_every_sentence_start_and_the_forced_ones():
    units = [0, 4, 8, 12, 16, 20, 24, 28]  # level-0 segments every 4 characters
    # a sentence starts at 13 (one character after the unit at 12): kept; then 3 units without one force a start
    assert ceiling_starts(units, [0, 13], seg_len=3) == [0, 12, 24]
    assert ceiling_starts(units, [0], seg_len=8) == [0]
    assert ceiling_starts(units, [0], seg_len=2) == [0, 8, 16, 24]


def test_word_table_holds_single_segment_words_as_unit_vectors(small, model):
    words, V, logc = word_table(small, TEXTS, min_count=2)
    assert {"the", "sea", "cat"} <= set(words)
    assert len(words) == len(set(words)) == V.shape[0] == logc.shape[0] > 0
    torch.testing.assert_close(V.norm(dim=-1), torch.ones(len(words)))
    for w in ("the", "sea"):
        c = sum(t.split().count(w) for t in TEXTS)
        assert logc[words.index(w)].exp().round() >= c  # counted over the texts (punctuation stripped)
    with pytest.raises(ValueError, match="one level-0 segment"):
        word_table(model, TEXTS, min_count=2)  # random weights: no word is one segment


def test_mlm_prediction_is_deterministic(model):
    with torch.inference_mode():
        a = mlm_prediction(model, "The river carried ", " and stones to the sea.")
        b = mlm_prediction(model, "The river carried ", " and stones to the sea.")
    assert a.shape == (model.config.levels[1].d_model,)
    assert torch.equal(a, b)


def test_infill_headroom_rates_are_rates_and_grow_with_the_samples(small):
    h = infill_headroom(small, SENTENCES, TEXTS, seed=0, steps=2, counts=(1, 2, 4), min_count=2, mlm_starts=(0.5,))
    assert h["infill_1w_n"] == len(SENTENCES)
    assert h["infill_1w_mlm_start_0.5_exact"] <= h["infill_1w_mlm_start_0.5_among_4_samples"]
    rates = [h[f"infill_1w_among_{k}_samples"] for k in (1, 2, 4)]
    assert rates == sorted(rates)  # the first k samples are a prefix of the first 2k
    # infill ranks 8; only 4 were drawn here. A gap whose samples are not all one fill has >= 2 of them
    assert h["infill_ranked_samples"] == 4
    assert 2 - h["infill_1w_ranked_samples_all_same"] <= h["infill_ranked_samples_distinct"] <= 4
    for key, v in h.items():
        if key.startswith("infill_1w_") and key != "infill_1w_n":
            assert 0.0 <= v <= 1.0, key
    assert h["infill_1w_ngram_exact"] <= h["infill_1w_ngram_among_8"]  # the first word is among the first 8
    for k in (1, 2, 4):  # a kept fill is one of the samples, and one sample is kept by either rule
        assert h[f"infill_1w_ranked_{k}_samples"] <= h[f"infill_1w_among_{k}_samples"]
        assert h[f"infill_1w_vote_{k}_samples"] <= h[f"infill_1w_among_{k}_samples"]
    assert h["infill_1w_ranked_1_samples"] == h["infill_1w_vote_1_samples"] == h["infill_1w_among_1_samples"]


def test_vote_keeps_the_most_frequent_fill_and_breaks_ties_by_score():
    from training.headroom import voted

    assert voted(["a", "b", "a", "c"], torch.tensor([0.0, 5.0, -1.0, 9.0])) == "a"
    assert voted(["a", "b", "b", "a"], torch.tensor([0.0, -2.0, 3.0, 1.0])) == "b"  # 2 each: b's best 3 > a's 1
    assert voted(["x"], torch.tensor([0.0])) == "x"
    assert set(SAMPLE_COUNTS) == {8, 16, 32, 64}


def test_boundary_headroom_ceiling_beats_nothing_and_auc_is_a_probability(model):
    paras = ["One two three. Four five six seven. Eight nine ten eleven twelve. Thirteen."] * 2
    h = boundary_headroom(model, paras)
    assert 0.0 <= h["l1_sentence_auc"] <= 1.0
    assert h["l1_sentence_ceiling_recall"] > 0.0
    assert 0.0 < h["l1_sentence_ceiling_f1"] <= 1.0
    assert h["l1_seg_len"] == model.config.levels[1].seg_len
    assert not model.levels[1].splitter.out._forward_hooks  # the hook is removed
    assert 0.0 <= h["l1_sentence_chance_f1"] <= h["l1_sentence_ceiling_f1"]
    for k in ("own", "own_moved", "sentence", "sentence_moved"):  # 1 - CER: at most 1, below 0 when too long
        assert h[f"l1_recon_{k}_starts"] <= 1.0 and h[f"l1_segments_{k}_starts"] >= len(paras)
    assert boundary_headroom(model, paras, seed=3) == boundary_headroom(model, paras, seed=3)  # seeded
    assert h["units_per_sentence"] > 0 and h["l1_units_per_segment"] >= 1.0
    shares = [share for _, share in h["l1_starts_after"]]
    assert shares == sorted(shares, reverse=True) and 0.0 <= sum(shares) <= 1.0 + 1e-9


def test_preceding_word_names_sentence_ends_clause_marks_and_words():
    text = 'The Association of Southeast Asian Nations (ASEAN), a forum. It began "here." Then'
    assert preceding_word(text, 0) == "<start>"
    assert preceding_word(text, text.index("Asian")) == "southeast"
    assert preceding_word(text, text.index("Southeast")) == "of"
    assert preceding_word(text, text.index(" a forum")) == "<,>"  # the space before the segment's word
    assert preceding_word(text, text.index("It")) == "<.>"
    assert preceding_word(text, text.index("Then")) == "<.>"  # a closing quote after the period


def test_chance_starts_keep_the_first_unit_and_draw_the_rest_without_replacement():
    import random

    units = [0, 4, 8, 12, 16, 20]
    for n in range(1, 6):
        got = chance_starts(units, n, random.Random(n))
        assert got[0] == 0 and len(got) == len(set(got)) == n and set(got) <= set(units) and got == sorted(got)
    assert chance_starts(units, 99, random.Random(0)) == units  # more than there are: all of them
    assert chance_starts(units, 0, random.Random(0)) == [0]
    draws = {tuple(chance_starts(units, 3, random.Random(s))) for s in range(50)}
    assert len(draws) > 5  # really random among the units


def test_shifted_starts_move_every_start_but_the_first_and_drop_those_past_the_ends():
    units = [0, 4, 8, 12, 16, 20]
    assert shifted_starts(units, [0, 8, 16], 1) == [0, 12, 20]
    assert shifted_starts(units, [0, 8, 20], 1) == [0, 12]  # 20 + 1 unit is past the end
    assert shifted_starts(units, [0, 4, 12], -1) == [0, 8]  # 4 - 1 unit would be the first unit
    assert shifted_starts(units, [0], 2) == [0]


def test_recon_with_the_models_own_starts_is_the_models_reconstruction(small):
    from training.metrics import cer
    from zonkey import codec
    from zonkey.inference import encode_ids

    text = "The river carried sand and stones to the sea. It flows north through the old town of Ely."
    with torch.inference_mode():
        codes = encode_ids(small, codec.encode(text))
        units = codec.char_map(text).char_of_byte[codes[0].win.start.numpy()].tolist()
        own = [units[i] for i in codes[1].win.start.tolist()]
        acc, m1 = recon_with_starts(small, text, codes, units, own)
        assert m1 == len(own)  # the coverage rule adds nothing to the model's own starts
        assert acc == 1 - cer(small.reconstruct(text), text)  # its level-1 BOS is saturated: the same boundaries
        acc_all, m_all = recon_with_starts(small, text, codes, units, units)  # a level-1 segment per word
        assert m_all == len(units) and acc_all >= acc


def level1_batch(model, seed=0):
    """Two seeded level-1 documents (b=2, n=12 level-0 units of C0*d0 numbers), the second 9 long."""
    lc = model.config.levels[0]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 12, lc.n_latents * lc.d_model, generator=g), torch.tensor([12, 9])


def test_fixed_bos_makes_the_level_start_exactly_at_the_given_units(model):
    x, lengths = level1_batch(model)
    bos = torch.zeros(2, 12, dtype=torch.bool)
    bos[:, 0] = bos[0, 5] = bos[1, 3] = True
    lv = model.levels[1]
    with torch.inference_mode():
        win, beta = lv.split(x, lengths)  # the real splitter: its own starts
        splitter, lv.splitter = lv.splitter, FixedBOS(bos.float().clamp(1e-4, 1 - 1e-4))
        try:
            win, _ = lv.split(x, lengths, generator=torch.Generator().manual_seed(0))
        finally:
            lv.splitter = splitter
    S = model.config.levels[1].seg_len
    want = {(0, 0), (0, 5), (1, 0), (1, 3)} | {(0, 5 + k * S) for k in range(1, 3) if 5 + k * S < 12}
    assert set(zip(win.doc.tolist(), win.start.tolist())) == want


def test_loss_with_starts_is_seeded_weights_its_total_and_puts_the_splitter_back(model):
    x, lengths = level1_batch(model)
    bos = torch.zeros(2, 12, dtype=torch.bool)
    bos[:, 0] = bos[0, 6] = True
    lv = model.levels[1]
    splitter = lv.splitter
    with torch.inference_mode():
        a = loss_with_starts(model, x, lengths, bos, seed=1, repeats=2)
        assert a == loss_with_starts(model, x, lengths, bos, seed=1, repeats=2)
        other = loss_with_starts(model, x, lengths, ~bos, seed=1, repeats=2)  # many more, shorter segments
        with pytest.raises(ValueError, match=r"one flag per level-1 input: \(2, 12\)"):
            loss_with_starts(model, x, lengths, bos[:, :5], seed=1)
    assert lv.splitter is splitter
    weights = model.config.loss_weights.as_dict()
    assert {"clean_recon", "dirty_recon", "short", "total"} <= set(a)
    assert a["total"] == pytest.approx(sum(weights[k] * v for k, v in a.items() if k != "total"))
    assert other["short"] > a["short"]  # segments of one unit are what the short-segment loss punishes


def test_start_pull_gives_a_uniform_gradient_no_pull_and_puts_the_splitter_back(model):
    x, lengths = level1_batch(model)
    is_sentence = torch.zeros(2, 12, dtype=torch.bool)
    is_sentence[0, 4] = is_sentence[1, 6] = True
    splitter = model.levels[1].splitter
    pull = start_pull(model, x, lengths, is_sentence, seed=0, repeats=2)
    assert model.levels[1].splitter is splitter
    assert {"total", "total_same_beta", "clean_recon", "short"} <= set(pull)
    assert all(0.0 <= v <= 1.0 for v in pull.values())
    shares = [v for k, v in pull.items() if k.endswith("_share")]
    assert sum(shares) == pytest.approx(1.0) and "total_share" not in pull
    # the compression penalty depends on the mean BOS rate only: the same gradient at every unit
    assert pull["compression"] == pull["compression_same_beta"] == 0.5
    assert pull == start_pull(model, x, lengths, is_sentence, seed=0, repeats=2)


def test_loss_and_pull_in_chunks_of_documents_weight_each_chunk_by_its_documents(model):
    x, lengths = level1_batch(model)
    bos = torch.zeros(2, 12, dtype=torch.bool)
    bos[:, 0] = bos[0, 6] = True
    with torch.inference_mode():
        alone = [
            loss_with_starts(model, x[i : i + 1], lengths[i : i + 1], bos[i : i + 1], seed=1, repeats=2) for i in (0, 1)
        ]
        chunked = loss_with_starts(model, x, lengths, bos, seed=1, repeats=2, chunk=1)
        with pytest.raises(ValueError, match="chunk=0: need at least one document per pass"):
            loss_with_starts(model, x, lengths, bos, chunk=0)
    assert chunked == pytest.approx({k: (alone[0][k] + alone[1][k]) / 2 for k in chunked})
    is_sentence = torch.zeros(2, 12, dtype=torch.bool)
    is_sentence[0, 4] = is_sentence[1, 6] = True
    pull = start_pull(model, x, lengths, is_sentence, seed=0, repeats=2, chunk=1)
    full = start_pull(model, x, lengths, is_sentence, seed=0, repeats=2)
    assert set(full) - set(pull) == {"collapse", "collapse_same_beta", "collapse_share"}  # needs two documents
    assert [(c.start, c.stop) for c in doc_chunks(130, 64)] == [(0, 43), (43, 86), (86, 130)]
    assert [(c.start, c.stop) for c in doc_chunks(60, 64)] == [(0, 60)]
    assert sum(v for k, v in pull.items() if k.endswith("_share")) == pytest.approx(1.0)
    assert pull["compression"] == pull["compression_same_beta"] == 0.5  # still uniform within each document


def test_within_doc_auc_ranks_pairs_of_one_document_and_one_stratum_only():
    score = torch.tensor([[0.1, 0.0, 5.0], [10.0, 9.0, 0.0]])
    pos = torch.tensor([[True, False, False], [True, False, False]])
    neg = ~pos
    one = torch.zeros(2, 3, dtype=torch.long)
    # within each document the positive is above both negatives but for 5.0 in the first
    assert within_doc_auc(score, pos, neg, one) == pytest.approx(3 / 4)
    # across documents 0.1 would also lose to 9.0: not counted
    assert within_doc_auc(score, pos, neg, torch.tensor([[0, 0, 1], [0, 0, 0]])) == 1.0  # 5.0 in another stratum
    assert within_doc_auc(score, pos, neg, torch.tensor([[0, 1, 1], [0, 1, 1]])) == 0.5  # no pairs at all


def test_linear_probe_auc_finds_a_linear_signal_and_nothing_in_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    y = (x[:, 2] - 0.5 * x[:, 5] > 0.3).float()  # a linear rule
    assert linear_probe_auc(x[:400], y[:400], x[400:], y[400:]) > 0.99
    noise = (torch.rand(600, generator=g) < 0.3).float()  # labels that the features do not predict
    assert abs(linear_probe_auc(x[:400], noise[:400], x[400:], noise[400:]) - 0.5) < 0.12
    with torch.inference_mode():  # as `headroom` calls it, on features made under inference mode
        x2, y2 = x.clone(), y.clone()
        same = linear_probe_auc(x2[:400], y2[:400], x2[400:], y2[400:])
    assert same == linear_probe_auc(x[:400], y[:400], x[400:], y[400:])


def test_unit_features_pair_each_segment_with_the_one_before(model):
    paras = ["One two three. Four five six.", "Seven eight. Nine ten eleven twelve."]
    with torch.inference_mode():
        x, y = unit_features(model, paras)
        per = [encode_ids(model, codec.encode(p), top=0)[0].z.flatten(1) for p in paras]
    assert x.shape == (sum(len(z) - 1 for z in per), 2 * per[0].shape[1]) and y.shape == (x.shape[0],)
    torch.testing.assert_close(x[: len(per[0]) - 1], torch.cat([per[0][:-1], per[0][1:]], dim=1))
    assert set(y.tolist()) <= {0.0, 1.0}


def test_gaps_come_from_a_named_split_or_a_clear_error():
    with pytest.raises(ValueError, match="'heldout' or the 'train' split"):
        headroom("no-model-is-loaded-first", gap_split="test")
