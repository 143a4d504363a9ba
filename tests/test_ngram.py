import numpy as np
import pytest

from training.baselines.ngram import START, WordTrigram, exact_rates, tokens

TEXTS = [
    "The cat sat on the mat. The dog sat on the rug.",
    "A cat sat on a chair, and the cat slept.",
    "The bird sang on the roof. The dog slept on the rug.",
    "In 1990 the dog ran.",
]


@pytest.fixture(scope="module")
def lm():
    return WordTrigram.fit(TEXTS)


def test_tokens_are_words_numbers_and_single_punctuation():
    assert tokens("In 1990, the cat's mat.") == ["In", "1990", ",", "the", "cat", "'", "s", "mat", "."]


def test_every_distribution_sums_to_one(lm):
    i = lm.index
    contexts = [
        (i["sat"], i["on"]),  # a seen trigram context
        (i["bird"], i["on"]),  # seen bigram (on .), unseen trigram context
        (i["roof"], i["rug"]),  # "rug" never precedes anything but "."
        (-1, -1),  # nothing seen: the unigram alone
    ]
    for u, v in contexts:
        p = lm._next_all(u, v)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert (p > 0).all()
        assert p[lm.words].max() < 1


def test_vectorised_scores_equal_the_one_word_formula(lm):
    ids = range(len(lm.vocab))
    for u, x in [("the", "sat"), ("sat", "on"), ("dog", "."), ("the", "zebra")]:
        ui, xi = lm.index.get(u, -1), lm.index.get(x, -1)
        np.testing.assert_allclose(lm._after_all(ui, xi), [lm._p3(xi, ui, w) for w in ids], rtol=1e-12)
        np.testing.assert_allclose(lm._two_after_all(ui, xi), [lm._p3(xi, w, ui) for w in ids], rtol=1e-12)
    np.testing.assert_allclose(
        lm._next_all(lm.index["the"], lm.index["cat"]), [lm._p3(w, lm.index["the"], lm.index["cat"]) for w in ids]
    )


def test_fill_finds_the_word_the_counts_point_to(lm):
    assert lm.fill_ranking("A ", " sat on a chair.")[0] == "cat"  # "A cat sat on a chair" only
    # "The dog sat on the rug" and "The dog slept on the rug" once each: the length decides
    assert set(lm.fill_ranking("The dog ", " on the rug.", top=2)) == {"sat", "slept"}
    assert lm.fill_ranking("The dog ", " on the rug.", length=5, top=1) == ["slept"]
    assert lm.fill_ranking("The dog ", " on the rug.", length=3, top=1) == ["sat"]
    ranked = lm.fill_ranking("The ", " sat", top=100)
    assert len(ranked) == len(set(ranked)) == len(lm.words)  # every training word, each once
    assert START not in ranked and "." not in ranked and "1990" not in ranked


def test_unseen_context_falls_back_to_word_frequency(lm):
    ranked = lm.fill_ranking("Zebras ", " quickly", top=3)
    assert ranked[0] in {"the", "cat", "dog", "sat", "on"}  # the words with most different predecessors
    assert lm.fill_ranking("", "", length=99) == []  # no training word of 99 letters


def test_exact_rates_count_hits_on_hand_made_gaps(lm):
    gaps = [("A ", "cat", " sat on a chair."), ("The bird ", "sang", " on the roof."), ("", "Zebra", " ran.")]
    r = exact_rates(lm, gaps, top=8)
    assert r["exact"] == pytest.approx(2 / 3)  # "cat", "sang"; "Zebra" was never seen
    assert r["exact_length_known"] == pytest.approx(2 / 3)
    assert r["word_seen"] == pytest.approx(2 / 3)
    assert r["among_8"] == pytest.approx(2 / 3)
    assert r["exact_left_only"] == pytest.approx(2 / 3)


def test_no_text_is_a_clear_error():
    with pytest.raises(ValueError, match="no trigram"):
        WordTrigram.fit(["", "one"])
