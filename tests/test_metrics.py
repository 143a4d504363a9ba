"""Tests for training/metrics.py on hand-made cases whose answers are known."""

from __future__ import annotations

import random

import pytest

from training.metrics import (
    bootstrap_ratio_interval,
    boundary_prf,
    cer,
    chars_per_segment,
    distinct_n,
    is_single_valid_word,
    levenshtein,
    match_boundaries,
    sentence_starts,
    valid_word_rate,
    wilson_interval,
    word_starts,
)


def _reference_levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        ("same", "same", 0),
        ("café", "cafe", 1),
        ("🙂a", "a🙂", 2),
    ],
)
def test_levenshtein_known_values(a, b, d):
    assert levenshtein(a, b) == d and levenshtein(b, a) == d


def test_levenshtein_matches_plain_dp_on_random_strings():
    rng = random.Random(0)
    for _ in range(50):
        a = "".join(rng.choice("abé ") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("abé ") for _ in range(rng.randint(0, 30)))
        assert levenshtein(a, b) == _reference_levenshtein(a, b)


def test_levenshtein_long_strings():
    rng = random.Random(1)
    a = "".join(rng.choice("abcdefgh ") for _ in range(2000))
    b = a[:500] + "XYZ" + a[503:1500] + a[1510:]
    assert levenshtein(a, b) == 3 + 10


def test_cer():
    assert cer("hello world", "hello world") == 0.0
    assert cer("hallo", "hello") == pytest.approx(0.2)
    assert cer("abc", "") == 3.0  # divided by max(1, len(ref))
    assert cer("", "") == 0.0


def test_word_starts():
    assert word_starts("The cat  sat.") == [0, 4, 9]
    assert word_starts("  lead\tand\nnew") == [2, 7, 11]
    assert word_starts("") == [] and word_starts("   ") == []


def test_sentence_starts():
    text = 'He left. "Why?" she asked.\n(It was late.) Then "Go!" Now.'
    starts = sentence_starts(text)
    assert [text[i : i + 3] for i in starts] == ["He ", '"Wh', "she", "(It", "The", "Now"]
    assert set(starts) <= set(word_starts(text))
    assert sentence_starts("  Lead. Next") == [2, 8]
    assert sentence_starts("no end") == [0] and sentence_starts("") == []
    assert sentence_starts("3.14 is pi.") == [0]  # a period needs whitespace after it


def test_boundary_perfect_segmentation():
    text = "the quick brown fox jumps"
    ref = word_starts(text)
    scores = boundary_prf(ref, ref)
    assert scores["precision"] == scores["recall"] == scores["f1"] == 1.0
    assert scores["n_ref"] == len(ref) - 1  # position 0 is excluded


def test_boundary_off_by_one():
    ref = [0, 4, 10, 16]
    pred = [0, 5, 11, 17]
    assert boundary_prf(pred, ref, tolerance=0)["f1"] == 0.0
    assert boundary_prf(pred, ref, tolerance=1)["f1"] == 1.0
    early = [0, 3, 9, 15]
    assert boundary_prf(early, ref, tolerance=1)["f1"] == 1.0


def test_boundary_one_to_one_matching_does_not_double_count():
    scores = boundary_prf([4, 5, 6], [5], tolerance=1)
    assert scores["tp"] == 1 and scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == 1.0
    scores = boundary_prf([5], [4, 5, 6], tolerance=1)
    assert scores["tp"] == 1 and scores["precision"] == 1.0 and scores["recall"] == pytest.approx(1 / 3)
    # greedy by distance: the exact pair is taken first, so both predictions find a partner
    assert sorted(match_boundaries([5, 6], [5, 7], tolerance=1)) == [(5, 5), (6, 7)]


def test_boundary_duplicates_and_position_zero():
    scores = boundary_prf([0, 3, 3, 3], [0, 3])
    assert scores == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 1, "n_pred": 1, "n_ref": 1}


def test_boundary_empty_cases():
    assert boundary_prf([], [])["f1"] == 1.0
    assert boundary_prf([0], [0])["f1"] == 1.0  # only the always-present start
    none_found = boundary_prf([0], [0, 4, 8])
    assert none_found["precision"] == none_found["recall"] == none_found["f1"] == 0.0
    spurious = boundary_prf([0, 4], [0])
    assert spurious["precision"] == spurious["recall"] == spurious["f1"] == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        boundary_prf([1], [1], tolerance=-1)


def test_chars_per_segment():
    assert chars_per_segment([0, 4, 8], 12) == 4.0
    assert chars_per_segment([4, 8], 12) == 4.0  # leading text counts as a segment
    assert chars_per_segment([0, 0, 4, 99], 8) == 4.0  # duplicates and out-of-range starts ignored
    assert chars_per_segment([], 10) == 10.0 and chars_per_segment([0], 0) == 0.0


def test_valid_word_rate():
    vocab = {"the", "cat", "sat"}
    assert valid_word_rate("The cat sat", vocab) == 1.0
    assert valid_word_rate("The cat zzq", vocab) == pytest.approx(2 / 3)
    assert valid_word_rate("", vocab) == 0.0 and valid_word_rate("123 !!", vocab) == 0.0
    # every letter is in a real vocabulary (initials); only "a" and "i" count as words
    vocab |= {"a", "i", "r", "s"}
    assert valid_word_rate("a cat r s", vocab) == 0.5 and valid_word_rate("I sat", vocab) == 1.0
    assert is_single_valid_word(" cat ", vocab) and is_single_valid_word("A", vocab)
    assert not is_single_valid_word("r", vocab) and not is_single_valid_word("the cat", vocab)


def test_distinct_n():
    assert distinct_n("a b c d", 2) == 1.0
    assert distinct_n("a b a b a b", 2) == pytest.approx(2 / 5)
    assert distinct_n("a a a", 1) == pytest.approx(1 / 3)
    assert distinct_n("single", 2) == 0.0 and distinct_n("", 2) == 0.0
    with pytest.raises(ValueError):
        distinct_n("a b", 0)


def test_reconstruction_is_split_into_ascii_and_other_paragraphs():
    from training.evaluate import eval_reconstruction

    class AsciiOnlyAtLevel0:  # hand-made: level 0 turns every non-ASCII character into "?"
        def reconstruct(self, text, level=None):
            return text.encode("ascii", "replace").decode() if level == 0 else text

    m = eval_reconstruction(AsciiOnlyAtLevel0(), ["abcd", "ab", "Córdoba", "ʿAbd"])
    assert m["recon_acc_all"] == 1.0
    assert m["recon_acc_l0_ascii"] == 1.0 and m["n_paragraphs_ascii"] == 2
    assert m["recon_acc_l0_non_ascii"] == pytest.approx((6 / 7 + 3 / 4) / 2) and m["n_paragraphs_non_ascii"] == 2
    assert m["recon_acc_l0"] == pytest.approx((2 + 6 / 7 + 3 / 4) / 4)
    assert "recon_acc_l0_non_ascii" not in eval_reconstruction(AsciiOnlyAtLevel0(), ["plain"])


def test_mask_inside_word_keeps_one_or_two_letters_at_each_end():
    import random

    from training.evaluate import mask_inside_word

    rng = random.Random(0)
    sentence = "The river carried sand and stones to the ocean."
    for _ in range(50):
        (ws, we), (a, b) = mask_inside_word(sentence, rng)
        word = sentence[ws:we]
        assert word.isalpha() and len(word) >= 5 and sentence[ws - 1] == " "
        assert 1 <= a - ws <= 2 and 1 <= we - b <= 2 and a < b
    assert mask_inside_word("Only tiny bits.", rng) is None  # no word of five letters


def test_inword_infill_scores_hand_made_fillers():
    from types import SimpleNamespace

    from training.evaluate import eval_infill_inword

    class Original:  # puts the masked letters back
        def infill(self, text, spans, level, length, steps, seed, temperature=1.0):
            return SimpleNamespace(text=text, filled=[spans[0]])

    class Xs:  # fills every gap with "xx"
        def infill(self, text, spans, level, length, steps, seed, temperature=1.0):
            (a, b) = spans[0]
            return SimpleNamespace(text=text[:a] + "xx" + text[b:], filled=[(a, a + 2)])

    sentences = ["The river carried sand to the ocean.", "Stones roll.", "No long word."]
    vocab = {"river", "carried", "ocean", "stones"}
    m = eval_infill_inword(Original(), sentences, vocab, steps=1, seed=0)
    assert m["infill_inword_n"] == 2  # the third sentence has no word of five letters
    assert m["infill_inword_exact"] == 1.0 and m["infill_inword_valid_word_rate"] == 1.0
    assert m["infill_inword_cer"] == 0.0
    assert m["infill_inword_exact_ci95"] == list(wilson_interval(2, 2))
    assert m["infill_inword_valid_word_rate_ci95"] == list(wilson_interval(2, 2))
    m = eval_infill_inword(Xs(), sentences, vocab, steps=1, seed=0)
    assert m["infill_inword_exact"] == 0.0 and m["infill_inword_valid_word_rate"] == 0.0
    assert m["infill_inword_cer"] > 0.0
    assert m["infill_inword_exact_ci95"] == list(wilson_interval(0, 2))


def test_wilson_interval_known_values_and_properties():
    assert wilson_interval(0, 100) == (0.0, pytest.approx(0.036994, abs=1e-6))
    assert wilson_interval(4, 100) == (pytest.approx(0.015663, abs=1e-6), pytest.approx(0.098372, abs=1e-6))
    assert wilson_interval(50, 100) == (pytest.approx(0.403829, abs=1e-6), pytest.approx(0.596171, abs=1e-6))
    lo, hi = wilson_interval(100, 100)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.036994, abs=1e-6)
    for k in range(0, 31):  # inside [0, 1], around the rate, narrower with more trials at the same rate
        lo, hi = wilson_interval(k, 30)
        assert 0.0 <= lo <= k / 30 <= hi <= 1.0
        lo3, hi3 = wilson_interval(3 * k, 90)
        assert hi3 - lo3 < hi - lo
    for k, n in ((1, 0), (-1, 5), (6, 5), (1.5, 4), (True, 4)):
        with pytest.raises(ValueError, match="n"):
            wilson_interval(k, n)


def test_infill_rates_give_an_interval_for_every_rate_counted_per_gap():
    from types import SimpleNamespace

    from training.evaluate import eval_infill

    class FirstWordEverywhere:  # fills every gap with "river"
        def infill(self, text, spans, level, length, steps, seed, temperature=1.0):
            (a, b) = spans[0]
            return SimpleNamespace(text=text[:a] + "river" + text[b:], filled=[(a, a + 5)])

    sentences = ["The river carried sand to the ocean.", "A river and a sea meet here.", "Old river banks."]
    vocab = {"river", "carried", "ocean", "the", "sand", "sea", "meet", "here", "old", "banks", "and"}
    one = eval_infill(FirstWordEverywhere(), sentences, vocab, 1, steps=1, seed=0)
    k = round(one["infill_1w_exact"] * one["infill_1w_n"])
    assert one["infill_1w_n"] == 3 and one["infill_1w_exact_ci95"] == list(wilson_interval(k, 3))
    assert one["infill_1w_valid_word_rate"] == 1.0
    assert one["infill_1w_valid_word_rate_ci95"] == list(wilson_interval(3, 3))
    three = eval_infill(FirstWordEverywhere(), sentences, vocab, 3, steps=1, seed=0)
    assert three["infill_3w_n"] >= 1 and "infill_3w_exact_ci95" in three
    # a three-word fill's validity is a fraction of its words, so its interval is a bootstrap over the gaps
    assert three["infill_3w_valid_word_rate"] == 1.0 and three["infill_3w_valid_word_rate_ci95"] == [1.0, 1.0]


def test_bootstrap_ratio_interval_properties_and_errors():
    assert bootstrap_ratio_interval([0.5] * 10, [1] * 10) == (0.5, 0.5)  # nothing varies: no spread
    rng = random.Random(0)
    vals = [rng.random() for _ in range(50)]
    lo, hi = bootstrap_ratio_interval(vals, [1] * 50)
    assert lo < sum(vals) / 50 < hi
    assert bootstrap_ratio_interval(vals, [1] * 50) == (lo, hi)  # seeded
    assert bootstrap_ratio_interval(vals, [1] * 50, seed=1) != (lo, hi)
    lo4, hi4 = bootstrap_ratio_interval(vals * 4, [1] * 200)  # four times the items: about half as wide
    assert 0.35 < (hi4 - lo4) / (hi - lo) < 0.65
    # a micro F1 over paragraphs: num = 2 tp, den = n_pred + n_ref
    assert bootstrap_ratio_interval([2 * 3, 2 * 5], [3 + 3, 5 + 5]) == (1.0, 1.0)
    lo, hi = bootstrap_ratio_interval([0, 2, 0, 0], [0, 2, 0, 0])  # resamples without the one item are skipped
    assert lo == hi == 1.0
    for num, den, match in (([1, 2], [1], "equally long"), ([], [], "non-empty"), ([0, 0], [0, 0], "zero")):
        with pytest.raises(ValueError, match=match):
            bootstrap_ratio_interval(num, den)
    with pytest.raises(ValueError, match="draws"):
        bootstrap_ratio_interval([1], [1], draws=0)


def test_boundaries_and_reconstruction_carry_intervals_over_paragraphs():
    from types import SimpleNamespace

    from training.evaluate import eval_boundaries, eval_reconstruction

    class WordsAndSentences:  # starts exactly at the reference word and sentence starts
        def segment(self, text):
            levels = [
                SimpleNamespace(starts=[0, *word_starts(text)]),
                SimpleNamespace(starts=[0, *sentence_starts(text)]),
            ]
            return SimpleNamespace(levels=levels)

        def reconstruct(self, text, level=None):
            return text if level == 0 else text[:-1] + "?"  # the last character wrong through both levels

    paras = ["The cat sat. It ran off.", "A dog barked at night. The owl flew by. Rain fell.", "One more line here."]
    m = eval_boundaries(WordsAndSentences(), paras)
    assert m["l0_word_tol1_f1"] == 1.0 and m["l0_word_tol1_f1_ci95"] == [1.0, 1.0]
    assert m["l1_sentence_strict_f1"] == 1.0 and m["l1_sentence_strict_f1_ci95"] == [1.0, 1.0]
    r = eval_reconstruction(WordsAndSentences(), paras)
    assert r["recon_acc_l0_ci95"] == [1.0, 1.0]
    lo, hi = r["recon_acc_all_ci95"]
    # 3 paragraphs: a resample of the shortest one alone (1 in 27) is below the 2.5 % point, so the
    # interval runs from its accuracy to that of the longest
    assert lo <= r["recon_acc_all"] <= hi
    assert lo == pytest.approx(1 - 1 / min(map(len, paras))) and hi == pytest.approx(1 - 1 / max(map(len, paras)))
