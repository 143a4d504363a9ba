"""How far a checkpoint could go on two goals of `training/evaluate.py`, measured rather than assumed:
exact single-word infill and level-1 boundaries at sentence starts.

  python -m training.headroom --model assets/models/zonkey-small [--sentences 100] [--paragraphs 60]
      [--gap-split heldout|train] [--out F]

Single-word infill, on the gaps of `training.evaluate` (same held-out sentences, seed and masked words):
- samples: how often the original word is among the first N fills the level-1 sampler draws for the
  gap in one batch (`infill` ranks 8), so no ranking of those samples can do better; and how many
  different fills the first 8 hold (the mean per gap, and how often they are all one fill);
- ranking more samples: the exact rate when the first N samples are kept by `infill`'s own rule
  (as many words as the gap had, then the decoder's confidence) and by a vote (the fill drawn most
  often, ties to the better score): whether drawing more than infill's 8 would pay;
- starting from the MLM head (not in the method): `infill`'s 8 fills and ranking when each gap slot
  starts as the MLM head's reading of the canvas and the sampler starts at t = 0.7 instead of from
  pure noise (`_fill_level1(t_start=...)`): the kept fill's exact and valid-word rates, and the
  original word among the 8;
- the level-1 MLM head as a classifier: the gap is one mask slot in a level-1 window of the
  context's word vectors (as in training's MLM term), and the compressor's output at the slot is
  scored, as its InfoNCE scores it (2 atanh cos, or `mlm_logit_scale` * cos), against the word
  vector of every training word (case kept, at least `min_count` occurrences) that level 0 reads
  as one segment. Top-1 exact alone and with the log unigram count added: InfoNCE with negatives
  drawn from the data learns p(word | context) / p(word), so adding log p(word) gives the
  posterior. The unigram prior alone (always the most frequent word) is the floor;
- what the training text alone supports: a word trigram with Kneser-Ney smoothing fit on the same training
  split (`training.baselines.ngram`) fills the same gaps with its most probable word, from both sides, from the
  left only, and with the gap's length in characters given; and how often the word is among its first 8.
  Its vocabulary is every training word, so it is not a bound on what a model can do, but a measure of
  how much the data says about the masked words. `--gap-split train` draws the gaps from sentences of the
  training split instead (the same rule and seed): a model that does no better there than on held-out
  gaps has not learned its training text (underfitting) rather than failed to generalise from it;
Level-1 boundaries, on the held-out paragraphs of `training.evaluate`:
- AUC: how well the level-1 splitter's score (before the sigmoid, which saturates) ranks the level-0
  segments that begin a sentence (+-1 character) above the other level-0 segments;
- probe: the same AUC for a logistic regression on level 1's inputs (the flattened latents of the
  level-0 segment and of the one before it), fit on the level-0 segments of 400 training
  paragraphs: whether level 1 is given what it needs to find sentence starts;
- ceiling: the F1 (+-1, as in evaluate) of the best segmentation a level-1 splitter can make on
  this level 0: a start at every level-0 segment that begins a sentence, plus the starts the
  coverage rule forces after S level-0 segments without one;
- chance: the F1 of as many level-1 starts as the model makes in each paragraph, drawn at random
  among its level-0 segment starts (the first kept; the mean of 20 seeded draws), so the model's
  own F1 (`training.evaluate`) reads between chance and the ceiling;
- where level 1 starts: level-0 segments per level-1 segment against per sentence, and what the
  model's level-1 starts follow most often (`preceding_word`: a sentence end, a clause mark, or
  the previous word);
- alignment and reconstruction: 1 - CER through both levels when level 1 is made to start its
  segments (hard boundaries, plus the coverage rule's forced starts) at the model's own starts,
  at the ceiling's sentence starts, and at each of those moved by the same 1-2 level-0 segments
  (one draw per paragraph): if the reconstruction loss rewarded sentence-aligned segments, the
  moved copy of the sentence starts would reconstruct worse at the same segment lengths;
- alignment and the training loss: every term of level 1's training loss (`loss_with_starts`, the
  level's own training pass on the paragraphs, 4 seeded passes) with its starts forced to those
  four sets, and the pull of each term toward sentence starts (`start_pull`): the ranking AUC of
  -d term / d beta at the level-0 units that begin a sentence against the other units of the same
  paragraph, and against only those with the same BOS probability (unit-wide logit bins), since a
  term's gradient also depends on where the splitter already starts segments (0.5 is no pull),
  with the term's share of the weighted gradient's size.
Prints the figures as tables and writes JSON with --out.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from training.baselines.ngram import WORD, WordTrigram, exact_rates
from training.data import heldout_sentences, local_split, training_vocabulary
from training.evaluate import mask_words, paragraphs
from training.metrics import boundary_prf, cer, is_single_valid_word, sentence_starts
from zonkey import Zonkey, codec
from zonkey._utils import rho, to_sphere
from zonkey.inference import decode_down, decode_windows, encode_ids
from zonkey.infill import SAMPLES, _fill_level1, _word_vectors
from zonkey.losses import similarity_logits
from zonkey.splitter import force_coverage, make_windows

SAMPLE_COUNTS = (8, 16, 32, 64)
MLM_STARTS = (0.7,)  # t_start of the MLM-start fills (`zonkey.infill._fill_level1`)
GAP_SPLITS = ("heldout", "train")  # the splits whose sentences the infill gaps may come from
STARTS_AFTER_TOP = 6  # the most frequent things a level-1 start follows (`preceding_word`), reported
EDGE_PUNCT = " ,.;:!?"  # stripped from a fill before comparing it with the masked word


def ranking_auc(pos: Iterable[float], neg: Iterable[float]) -> float:
    """P(a positive scores above a negative), ties counting one half; 0.5 when a side is empty."""
    pos, neg = np.asarray(list(pos), float), np.asarray(list(neg), float)
    if len(pos) == 0 or len(neg) == 0:
        return 0.5
    above = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(above / (len(pos) * len(neg)))


def covered_bos(flags: list[bool], seg_len: int, device=None) -> torch.Tensor:
    """Per-level-0-unit start flags -> (1, n) bool BOS row with the starts the splitter's coverage
    rule (`force_coverage`) adds after `seg_len` units without one."""
    n = torch.tensor([len(flags)], device=device)
    return force_coverage(torch.tensor([flags], device=device), n, seg_len)


def preceding_word(text: str, char: int) -> str:
    """What a segment starting at `char` follows: "<.>" after a sentence end (.!?), "<,>" after a
    clause mark (,;:), "<start>" at the beginning of `text`, else the previous word, lower-cased."""
    before = text[:char].split()
    if not before:
        return "<start>"
    last = before[-1].rstrip(")]'\"")
    if last[-1:] in ".!?":
        return "<.>"
    if last[-1:] in ",;:":
        return "<,>"
    return before[-1].lower()


def within_one(chars: Iterable[int]) -> set[int]:
    """Every character offset within +-1 of one of `chars` (the boundary tolerance of evaluate)."""
    return {c + d for c in chars for d in (-1, 0, 1)}


def unit_chars(codes, text: str) -> list[int]:
    """The character offset in `text` of each level-0 segment of `codes` (from `encode_ids`)."""
    return codec.char_map(text).char_of_byte[codes[0].win.start.cpu().numpy()].tolist()


def sentence_flags(units: list[int], near: set[int]) -> torch.Tensor:
    """(m0,) bool: whether each level-0 segment but the first begins within `near` (`within_one` of
    the sentence starts); the first segment of a paragraph is never counted."""
    return torch.tensor([j > 0 and c in near for j, c in enumerate(units)], dtype=torch.bool)


def add_counts(total: collections.Counter, prf: dict, per: int = 1) -> None:
    """Add the true positives and both counts of a `boundary_prf` result to `total`, divided by `per`
    (the number of draws they are averaged over)."""
    for key in ("tp", "n_pred", "n_ref"):
        total[key] += prf[key] / per


def ceiling_starts(unit_chars: list[int], sentence_chars: Iterable[int], seg_len: int) -> list[int]:
    """The best level-1 starts on a given level 0: unit 0, every unit that begins within +-1 character
    of a sentence start, and the starts the splitter's coverage rule (`force_coverage`) adds after
    `seg_len` units without one. unit_chars: the character offset of each level-0 segment."""
    near = within_one(sentence_chars)
    starts = covered_bos([j == 0 or c in near for j, c in enumerate(unit_chars)], seg_len)[0]  # (n,)
    return [c for c, start in zip(unit_chars, starts.tolist()) if start]


def word_table(model, texts: Iterable[str], min_count: int = 3, chunk: int = 300):
    """Training words (case kept, >= min_count times) that level 0 reads as one segment ->
    (words, unit word vectors (n, d1), log counts (n,)). Words are encoded in chunks as " w1 w2 ...":
    a level-0 segment begins at the space before a word."""
    counts = collections.Counter(w for t in texts for w in WORD.findall(t))
    cands = sorted(w for w, c in counts.items() if c >= min_count)
    words, vecs = [], []
    for i in range(0, len(cands), chunk):
        part = cands[i : i + chunk]
        text = " " + " ".join(part)
        code = encode_ids(model, codec.encode(text), top=0)[0]
        index = {b: j for j, b in enumerate(code.win.start.tolist())}  # byte offset -> segment
        z = code.z.flatten(1)  # (m, d1)
        pos = 0
        for w in part:
            end = pos + 1 + len(w)  # the segment " w" (ASCII: one byte per character)
            one = pos in index and not any(b in index for b in range(pos + 1, end))
            if one and (end in index or end == len(text)):
                words.append(w)
                vecs.append(z[index[pos]])
            pos = end
    if not words:
        raise ValueError(
            f"no training word (of {len(cands)} seen >= {min_count} times) is read as one level-0 segment: "
            "this model's level 0 does not cut at word starts, so the MLM classifier has nothing to rank"
        )
    logc = torch.tensor([float(counts[w]) for w in words]).log()
    return words, F.normalize(torch.stack(vecs).float(), dim=-1), logc


def mlm_prediction(model, left: str, right: str) -> torch.Tensor:
    """The level-1 compressor's output (d1,) at one mask slot between the word vectors of `left`
    and `right` (at most half the window after it, the rest before)."""
    lv, lc = model.levels[1], model.config.levels[1]
    S, d = lc.seg_len, lc.d_model
    wl, wr = _word_vectors(model, left.rstrip()), _word_vectors(model, right)
    b = min(wr.shape[0], (S - 1) // 2)
    a = min(wl.shape[0], S - 1 - b)
    x = torch.cat([wl[wl.shape[0] - a :], wl.new_zeros(1, d), wr[:b]])  # the slot at a: the mask vector
    xs = torch.zeros(1, S, d, device=x.device)
    xs[0, : x.shape[0]] = to_sphere(x, rho(d))
    valid = torch.arange(S, device=x.device)[None] < x.shape[0]
    logp = torch.where(valid, 0.0, -20.0)
    masked = torch.zeros_like(valid)
    masked[0, a] = True
    return lv.mlm_outputs(xs, masked, logp, valid)[0, a].float()


def voted(fills: list[str], scores: torch.Tensor) -> str:
    """The fill drawn most often among `fills`; a tie goes to the fill with the best score (k,)."""
    count, best = collections.Counter(fills), {}
    for f, sc in zip(fills, scores.tolist()):
        best[f] = max(best.get(f, -float("inf")), sc)
    return max(count, key=lambda f: (count[f], best[f]))


@torch.inference_mode()
def infill_headroom(
    model, sentences, train_texts, seed=0, steps=20, counts=SAMPLE_COUNTS, min_count=3, mlm_starts=MLM_STARTS
):
    words, V, logc = word_table(model, train_texts, min_count)
    vocab = training_vocabulary(train_texts)
    scale = model.config.levels[1].mlm_logit_scale  # the MLM term's logits (0: 2 atanh cos)
    rng = random.Random(seed)
    ranked = min(SAMPLES, max(counts))  # the samples `infill` draws and ranks
    hits = collections.Counter()
    n, distinct, gaps = 0, 0, []
    for i, s in enumerate(tqdm(sentences, desc="infill headroom", leave=False)):
        span = mask_words(s, rng, 1)
        if span is None:
            continue
        a, b = span
        ref, left, right = s[a:b], s[:a], s[b:]
        gaps.append((left, ref, right))
        g = torch.Generator().manual_seed(seed + i)
        res = _fill_level1(model, left, right, "auto", b - a, steps, g, 1.0, 1, samples=max(counts))
        fills = [f.strip(EDGE_PUNCT) for f in res.fills]
        for k in counts:
            hits[f"among_{k}_samples"] += ref in fills[:k]
            hits[f"ranked_{k}_samples"] += fills[int(res.scores[:k].argmax())] == ref
            hits[f"vote_{k}_samples"] += voted(fills[:k], res.scores[:k]) == ref
        for t0 in mlm_starts:  # `infill`'s fills and ranking, started at t0 from the MLM head's reading
            g = torch.Generator().manual_seed(seed + i)
            res = _fill_level1(model, left, right, "auto", b - a, steps, g, 1.0, 1, samples=ranked, t_start=t0)
            kept = res.fills[int(res.scores.argmax())].strip()
            hits[f"mlm_start_{t0:g}_exact"] += kept.strip(EDGE_PUNCT) == ref
            hits[f"mlm_start_{t0:g}_valid"] += is_single_valid_word(kept, vocab)
            hits[f"mlm_start_{t0:g}_among_{ranked}_samples"] += ref in {f.strip(EDGE_PUNCT) for f in res.fills}
        different = len(set(fills[:ranked]))
        distinct += different
        hits["ranked_samples_all_same"] += different == 1
        logits = similarity_logits(V @ F.normalize(mlm_prediction(model, left, right), dim=0), scale)
        hits["mlm_classifier"] += words[int(logits.argmax())] == ref
        hits["mlm_classifier_with_prior"] += words[int((logits + logc).argmax())] == ref
        hits["prior_alone"] += words[int(logc.argmax())] == ref
        hits["word_in_table"] += ref in set(words)
        n += 1
    out = {f"infill_1w_{k}": v / max(n, 1) for k, v in sorted(hits.items())}
    out.update({f"infill_1w_ngram_{k}": v for k, v in exact_rates(WordTrigram.fit(train_texts), gaps).items()})
    out.update({"infill_1w_n": n, "word_table_size": len(words), "word_table_min_count": min_count})
    out.update({"infill_ranked_samples": ranked, "infill_ranked_samples_distinct": distinct / max(n, 1)})
    return out


def chance_starts(unit_chars: list[int], n_starts: int, rng: random.Random) -> list[int]:
    """n_starts level-1 starts at random among the level-0 segment starts unit_chars: the first
    unit, and n_starts - 1 of the others drawn without replacement (all of them if fewer), sorted."""
    rest = unit_chars[1:]
    return sorted([unit_chars[0], *rng.sample(rest, min(max(n_starts - 1, 0), len(rest)))])


def shifted_starts(unit_chars: list[int], starts: list[int], d: int) -> list[int]:
    """The level-1 starts `starts` (character offsets, each one of unit_chars) moved by d level-0
    units; the first unit stays a start, and a start moved past either end is dropped."""
    idx = {c: j for j, c in enumerate(unit_chars)}
    moved = {idx[c] + d for c in starts if idx[c] > 0 and 0 < idx[c] + d < len(unit_chars)}
    return [unit_chars[j] for j in sorted({0} | moved)]


def start_row(unit_chars: list[int], starts: list[int], seg_len: int, device=None) -> torch.Tensor:
    """Level-1 starts given as character offsets of level-0 units -> (1, m0) bool BOS row, with the
    coverage rule's forced starts."""
    want = set(starts)
    return covered_bos([c in want for c in unit_chars], seg_len, device)


def recon_with_starts(model, text: str, codes, unit_chars: list[int], starts: list[int]) -> tuple[float, int]:
    """1 - CER of `text` through both levels when level 1 starts its segments at `starts`
    (character offsets of level-0 units; hard boundaries, then the coverage rule) instead of where
    its splitter would; `codes` from `encode_ids`. Returns (accuracy, level-1 segments)."""
    S = model.config.levels[1].seg_len
    x = codes[0].z.flatten(1)[None]  # (1, m0, C0*d0): level 1's inputs
    bos = start_row(unit_chars, starts, S, x.device)  # (1, m0)
    n = torch.tensor([len(unit_chars)], device=x.device)
    win = make_windows(x, hard_beta(bos), bos, n, S)
    z = model.levels[1].compressor(win.x, win.logp, win.valid)  # (m1, C1, d1)
    return 1 - cer(decode_down(model, 1, decode_windows(model, 1, z)), text), int(bos.sum())


ALIGNMENTS = ("own", "own_moved", "sentence", "sentence_moved")


@contextlib.contextmanager
def level1_splitter(model, splitter: nn.Module):
    """Level 1 runs with `splitter` in place of its own inside the block; its own is put back after."""
    lv = model.levels[1]
    own, lv.splitter = lv.splitter, splitter
    try:
        yield
    finally:
        lv.splitter = own


def hard_beta(bos: torch.Tensor) -> torch.Tensor:
    """BOS flags -> the probabilities of a sure splitter (1e-4 / 1 - 1e-4)."""
    return bos.float().clamp(1e-4, 1 - 1e-4)


class FixedBOS(nn.Module):
    """A stand-in for a level's splitter that returns given BOS probabilities (b, n) whatever its input."""

    def __init__(self, beta: torch.Tensor):
        super().__init__()
        self.beta = beta

    def forward(self, x, lengths):
        return self.beta


def seeded_terms(model, x, lengths, seed: int, repeats: int):
    """Level 1's training loss terms of `repeats` passes on (x, lengths), pass r seeded with seed + r."""
    for r in range(repeats):
        torch.manual_seed(seed + r)
        yield model.levels[1](x, lengths).terms


def doc_chunks(n_docs: int, size: int) -> list[slice]:
    """Consecutive slices covering range(n_docs), as few as hold at most `size` documents each and
    of sizes differing by at most one (no chunk of one document beside full ones: level 1's
    collapse term compares documents of a batch)."""
    if size < 1:
        raise ValueError(f"chunk={size}: need at least one document per pass")
    k = -(-n_docs // size)
    return [slice(i * n_docs // k, (i + 1) * n_docs // k) for i in range(k)]


PASS_DOCS = 64  # documents per training pass of `loss_with_starts` / `start_pull`: bounds their memory


def doc_passes(lengths: torch.Tensor, chunk: int):
    """Per chunk of `doc_chunks`: (slice of the documents, the longest one's length, the width their
    passes need; the chunk's share of the documents, what its figures are weighted by)."""
    for sl in doc_chunks(len(lengths), chunk):
        yield sl, int(lengths[sl].max()), (sl.stop - sl.start) / len(lengths)


def loss_with_starts(
    model, x, lengths, bos, seed: int = 0, repeats: int = 4, chunk: int = PASS_DOCS
) -> dict[str, float]:
    """Level 1's training loss terms when its splitter starts segments exactly at `bos` (hard
    probabilities 1e-4 / 1 - 1e-4, so the windows' existence and shares are those of a sure splitter).
    x: (b, n, C0*d0) level-1 inputs, lengths: (b,), bos: (b, n) bool. Each term (unweighted) and
    `total` (weighted as in training) are averaged over `repeats` seeded passes (noise levels,
    masks and negatives are drawn as in training). The passes take `chunk` documents at a time
    (each chunk's passes seeded alike), and the chunks' figures are averaged weighted by their
    documents: 300 paragraphs in one pass of a deeper level 1 would not fit in 24 GB."""
    if bos.shape != x.shape[:2]:
        raise ValueError(f"bos has shape {tuple(bos.shape)}; it needs one flag per level-1 input: {tuple(x.shape[:2])}")
    weights = model.config.loss_weights.as_dict()
    sums = collections.Counter()
    for sl, n, share in doc_passes(lengths, chunk):
        with level1_splitter(model, FixedBOS(hard_beta(bos[sl, :n]))):
            for terms in seeded_terms(model, x[sl, :n], lengths[sl], seed, repeats):
                for k, v in terms.items():
                    sums[k] += share * float(v) / repeats
                    sums["total"] += share * weights[k] * float(v) / repeats
    return dict(sums)


class GradBOS(nn.Module):
    """Wraps a level's splitter so its BOS probabilities (b, n) become a leaf that gradients reach."""

    def __init__(self, splitter: nn.Module):
        super().__init__()
        self.splitter, self.beta = splitter, None

    def forward(self, x, lengths):
        self.beta = self.splitter(x, lengths).detach().requires_grad_()
        return self.beta


def start_pull(
    model, x, lengths, is_sentence, seed: int = 0, repeats: int = 4, chunk: int = PASS_DOCS
) -> dict[str, float]:
    """Which of level 1's training loss terms pull its starts toward sentence starts: for each term,
    the ranking AUC of -d term / d beta (summed over `repeats` seeded passes, the splitter's own
    probabilities, boundaries sampled as in training) at the level-0 units that begin a sentence
    against the other units (unit 0 excluded). 0.5: no pull; above: the term raises the start
    probability more at sentence starts. `total` is the weighted sum as in training. `<term>_share`:
    the term's part of the weighted gradient's size (mean |weight * gradient| over the units,
    as a fraction of the sum over the terms), so a term with a strong pull but a small share
    hardly moves the splitter.
    x: (b, n, C0*d0), lengths: (b,), is_sentence: (b, n) bool. The passes take `chunk` documents
    at a time (as `loss_with_starts`); a chunk's gradients are scaled by its share of the documents,
    as they would be in one pass over all of them, where each term is a mean over the batch."""
    lv, weights = model.levels[1], model.config.loss_weights.as_dict()
    parts, betas = [], []  # per chunk: term -> (b_c, n) d term / d beta summed over the passes; (b_c, n) beta
    for sl, n, share in doc_passes(lengths, chunk):
        wrapped, part = GradBOS(lv.splitter), {}
        with level1_splitter(model, wrapped), torch.enable_grad():
            for terms in seeded_terms(model, x[sl, :n], lengths[sl], seed, repeats):
                terms["total"] = sum(weights[k] * v for k, v in terms.items())
                for k, v in terms.items():
                    if v.requires_grad:
                        part[k] = part.get(k, 0) + torch.autograd.grad(v, wrapped.beta, retain_graph=True)[0]
        pad = (0, x.shape[1] - n)
        parts.append({k: F.pad(share * g, pad) for k, g in part.items()})
        betas.append(F.pad(wrapped.beta.detach(), pad, value=0.5))
    zeros = [torch.zeros_like(b) for b in betas]  # a term with no gradient in a chunk pulls nowhere there
    grads = {
        k: torch.cat([p.get(k, z) for p, z in zip(parts, zeros)]) for k in dict.fromkeys(k for p in parts for k in p)
    }
    real = torch.arange(x.shape[1])[None] < lengths[:, None]
    real[:, 0] = False
    pos, neg = is_sentence & real, ~is_sentence & real
    # (b, n) unit-wide logit bins of beta (the same in every pass: the splitter is deterministic)
    beta_bins = torch.logit(torch.cat(betas).clamp(1e-6, 1 - 1e-6)).round().long()
    size = {k: float((weights[k] * g)[real].abs().mean()) for k, g in grads.items() if k != "total"}
    out = {}
    for k, g in grads.items():
        out[k] = within_doc_auc(-g, pos, neg, torch.zeros_like(real, dtype=torch.long))
        out[f"{k}_same_beta"] = within_doc_auc(-g, pos, neg, beta_bins)
        if k != "total":
            out[f"{k}_share"] = size[k] / max(sum(size.values()), 1e-30)
    return out


def within_doc_auc(score: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, strata: torch.Tensor) -> float:
    """`ranking_auc` over the (positive, negative) pairs of the same row and the same stratum only,
    so that neither what differs between documents (a per-document mean, its length) nor what the
    strata hold fixed can rank. score, pos, neg: (b, n); strata: (b, n) long."""
    above = pairs = 0.0
    for s, p, q, k in zip(score.tolist(), pos.tolist(), neg.tolist(), strata.tolist()):
        for g in set(k):
            a = [v for v, f, kk in zip(s, p, k) if f and kk == g]
            b = [v for v, f, kk in zip(s, q, k) if f and kk == g]
            above += ranking_auc(a, b) * len(a) * len(b)
            pairs += len(a) * len(b)
    return above / pairs if pairs else 0.5


def probe_rows(xs: list[torch.Tensor], starts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per paragraph, level 1's inputs (m0, C0*d0) and whether each level-0 segment begins a sentence
    (m0,) -> one row per segment but the first of its paragraph: its flattened latents and those
    of the segment before, (u, 2*C0*d0), and its label (u,)."""
    feats = [torch.cat([x[:-1], x[1:]], dim=1).float() for x in xs]
    return torch.cat(feats), torch.cat([f[1:] for f in starts]).float()


@torch.inference_mode()
def unit_features(model, paras) -> tuple[torch.Tensor, torch.Tensor]:
    """`probe_rows` of the paragraphs `paras`: level 1's inputs around each level-0 segment but the
    first of each paragraph, (u, 2*C0*d0), and whether the segment begins a sentence (+-1
    character), (u,)."""
    xs, starts = [], []
    for p in paras:
        codes = encode_ids(model, codec.encode(p), top=0)
        xs.append(codes[0].z.flatten(1))  # (m0, C0*d0)
        starts.append(sentence_flags(unit_chars(codes, p), within_one(sentence_starts(p))))
    return probe_rows(xs, starts)


def linear_probe_auc(x_train, y_train, x_test, y_test, l2: float = 1e-3) -> float:
    """Fit a logistic regression (standardised features, L2 penalty, L-BFGS from zero: deterministic)
    on (x_train, y_train) and return the ranking AUC of its scores on (x_test, y_test)."""
    with torch.inference_mode(False), torch.enable_grad():  # also when called under inference mode
        x_train, y_train, x_test = x_train.clone(), y_train.clone(), x_test.clone()  # normal tensors
        mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
        a, b = (x_train - mu) / sd, (x_test - mu) / sd
        w = torch.zeros(a.shape[1], requires_grad=True)
        c = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([w, c], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(a @ w + c, y_train) + l2 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        score = (b @ w + c).detach()
    return ranking_auc(score[y_test == 1].tolist(), score[y_test == 0].tolist())


@torch.inference_mode()
def boundary_headroom(model, paras, draws: int = 20, seed: int = 0, probe_train=None):
    """The level-1 boundary figures of the module docstring on the paragraphs `paras`; the probe's
    when `probe_train` holds its training rows (`unit_features` of other paragraphs)."""
    S = model.config.levels[1].seg_len
    seen = {}
    hook = model.levels[1].splitter.out.register_forward_hook(lambda m, i, o: seen.__setitem__("u", o))
    pos, neg, agg, chance = [], [], collections.Counter(), collections.Counter()
    rec, rows = {k: [] for k in ALIGNMENTS}, {k: [] for k in ALIGNMENTS}
    xs, sentence, segs, after = [], [], collections.Counter(), collections.Counter()
    n_units = n_sentences = n_l1 = 0
    rng, move_rng = random.Random(seed), random.Random(seed + 1)
    try:
        for p in tqdm(paras, desc="boundary headroom", leave=False):
            codes = encode_ids(model, codec.encode(p))
            score = seen["u"].reshape(-1).float().cpu().numpy()  # (m0,) one per level-0 segment
            units, ref = unit_chars(codes, p), sentence_starts(p)
            flags = sentence_flags(units, within_one(ref))
            for j in range(1, len(units)):
                (pos if flags[j] else neg).append(float(score[j]))
            sent = ceiling_starts(units, ref, S)
            add_counts(agg, boundary_prf(sent, ref, tolerance=1))
            n_starts = codes[1].win.start.numel()
            for _ in range(draws):
                add_counts(chance, boundary_prf(chance_starts(units, n_starts, rng), ref, tolerance=1), draws)
            own = [units[i] for i in codes[1].win.start.tolist()]
            after.update(preceding_word(p, c) for c in own[1:])
            n_units, n_sentences, n_l1 = n_units + len(units), n_sentences + len(ref), n_l1 + len(own)
            d = move_rng.choice((-2, -1, 1, 2))
            cands = (own, shifted_starts(units, own, d), sent, shifted_starts(units, sent, d))
            xs.append(codes[0].z.flatten(1))  # (m0, C0*d0)
            sentence.append(flags)
            for k, starts in zip(ALIGNMENTS, cands):
                acc, m1 = recon_with_starts(model, p, codes, units, starts)
                rec[k].append(acc)
                rows[k].append(start_row(units, starts, S)[0])
                segs[k] += m1
    finally:
        hook.remove()
    cap = model.config.levels[1].doc_len  # level 1 trains on the first doc_len units of a document
    lengths = torch.tensor([min(len(x), cap) for x in xs])
    X = pad_sequence([x[:cap] for x in xs], batch_first=True)  # (b, n, C0*d0)
    losses = {
        k: loss_with_starts(model, X, lengths, pad_sequence([r[:cap] for r in rows[k]], True), seed) for k in ALIGNMENTS
    }
    with torch.inference_mode(False):  # the gradients need tensors made outside inference mode
        X = X.clone()
        pull = start_pull(model, X, lengths, pad_sequence([f[:cap] for f in sentence], True), seed)
    out = {"l1_sentence_auc": ranking_auc(pos, neg)}
    n_after = max(sum(after.values()), 1)
    out["l1_units_per_segment"] = n_units / max(n_l1, 1)
    out["units_per_sentence"] = n_units / max(n_sentences, 1)
    out["l1_starts_after"] = [[w, c / n_after] for w, c in after.most_common(STARTS_AFTER_TOP)]
    for tag, c in (("ceiling", agg), ("chance", chance)):
        pr, rc = c["tp"] / max(c["n_pred"], 1), c["tp"] / max(c["n_ref"], 1)
        out[f"l1_sentence_{tag}_precision"] = pr
        out[f"l1_sentence_{tag}_recall"] = rc
        out[f"l1_sentence_{tag}_f1"] = 2 * pr * rc / max(pr + rc, 1e-12)
    for k in ALIGNMENTS:
        out[f"l1_recon_{k}_starts"] = sum(rec[k]) / max(len(rec[k]), 1)
        out[f"l1_segments_{k}_starts"] = segs[k]
        out.update({f"l1_loss_{k}_starts_{t}": v for t, v in losses[k].items()})
    out.update({f"l1_pull_auc_{t}": v for t, v in pull.items()})
    if probe_train is not None:
        out["l1_sentence_probe_auc"] = linear_probe_auc(*probe_train, *probe_rows(xs, sentence))
        out["l1_sentence_probe_train_units"] = len(probe_train[1])
    return {**out, "l1_seg_len": S, "n_paragraphs": len(paras)}


def headroom(
    model_dir: str, n_sentences=100, n_paragraphs=60, seed=0, min_count=3, n_probe=400, gap_split="heldout"
) -> dict:
    if gap_split not in GAP_SPLITS:
        raise ValueError(f"gap_split={gap_split!r}: the gaps come from the 'heldout' or the 'train' split")
    torch.manual_seed(seed)
    model = Zonkey.from_pretrained(model_dir)
    model.eval()
    if model.num_levels < 2:
        raise SystemExit(f"{model_dir}: headroom measures level 1; this model has one level")
    held = [x for _, x in local_split("heldout")]
    train = [x for _, x in local_split("train")]
    out = {"model": model_dir, "seed": seed, "n_sentences": n_sentences, "gap_split": gap_split}
    sentences = heldout_sentences(held if gap_split == "heldout" else train, n_sentences, seed=seed)
    out.update(infill_headroom(model, sentences, train, seed, min_count=min_count))
    probe_train = unit_features(model, paragraphs(train, n_probe))
    out.update(boundary_headroom(model, paragraphs(held, n_paragraphs), seed=seed, probe_train=probe_train))
    return out


def print_tables(h: dict) -> None:
    print(
        f"\nsingle-word infill, {h['infill_1w_n']} gaps in {h['gap_split']} sentences: exact match of the original word"
    )
    for k in SAMPLE_COUNTS:
        print(f"  among the first {k:2d} samples       {h[f'infill_1w_among_{k}_samples']:.3f}")
    print("  kept among the first k samples (k = " + " / ".join(map(str, SAMPLE_COUNTS)) + "):")
    for rule, name in (("ranked", "infill's ranking"), ("vote", "the fill drawn most often")):
        rates = " / ".join(f"{h[f'infill_1w_{rule}_{k}_samples']:.3f}" for k in SAMPLE_COUNTS)
        print(f"    by {name:28s} {rates}")
    for key in sorted(k for k in h if k.startswith("infill_1w_mlm_start_") and k.endswith("_exact")):
        t0 = key[len("infill_1w_mlm_start_") : -len("_exact")]
        among = next(v for k, v in h.items() if k.startswith(f"infill_1w_mlm_start_{t0}_among_"))
        valid = h[f"infill_1w_mlm_start_{t0}_valid"]
        print(f"  MLM start at t = {t0:4s}: kept {h[key]:.3f} (valid {valid:.3f}), among the samples {among:.3f}")
    print(f"  MLM classifier                   {h['infill_1w_mlm_classifier']:.3f}")
    print(f"  MLM classifier + unigram prior   {h['infill_1w_mlm_classifier_with_prior']:.3f}")
    print(f"  unigram prior alone              {h['infill_1w_prior_alone']:.3f}")
    k = h["infill_ranked_samples"]
    print(f"  different fills among the first {k} (what infill ranks): {h['infill_ranked_samples_distinct']:.2f}")
    print(f"  gaps where those {k} are one and the same fill: {h['infill_1w_ranked_samples_all_same']:.3f}")
    table = f"{h['word_table_size']:,} words"
    print(f"  (original word among the table's {table}: {h['infill_1w_word_in_table']:.3f})")
    print("  the training text alone, a word trigram (Kneser-Ney) fit on the training split:")
    print(f"    its first word                 {h['infill_1w_ngram_exact']:.3f}")
    print(f"    its first word, left context   {h['infill_1w_ngram_exact_left_only']:.3f}")
    print(f"    its first word of the length   {h['infill_1w_ngram_exact_length_known']:.3f}")
    print(f"    among its first 8              {h['infill_1w_ngram_among_8']:.3f}")
    print(f"    (original word seen in training: {h['infill_1w_ngram_word_seen']:.3f})")
    print(f"\nlevel-1 starts against sentence starts, {h['n_paragraphs']} paragraphs, S = {h['l1_seg_len']}")
    print(f"  ranking AUC of the splitter's score   {h['l1_sentence_auc']:.3f}")
    if "l1_sentence_probe_auc" in h:
        n, auc = f"{h['l1_sentence_probe_train_units']:,}", h["l1_sentence_probe_auc"]
        print(f"  the same, linear probe on its inputs  {auc:.3f} (fit on {n} training segments)")
    print(
        f"  F1 ceiling on this level 0 (+-1)      {h['l1_sentence_ceiling_f1']:.3f}"
        f" (precision {h['l1_sentence_ceiling_precision']:.3f}, recall {h['l1_sentence_ceiling_recall']:.3f})"
    )
    print(
        f"  F1 of as many random starts (chance)  {h['l1_sentence_chance_f1']:.3f}"
        f" (precision {h['l1_sentence_chance_precision']:.3f}, recall {h['l1_sentence_chance_recall']:.3f})"
    )
    print(
        f"  level-0 segments per level-1 segment  {h['l1_units_per_segment']:.2f}"
        f" (per sentence {h['units_per_sentence']:.2f})"
    )
    after = ", ".join(f"{w} {share:.3f}" for w, share in h["l1_starts_after"])
    print(f"  level-1 starts follow                 {after}")
    print("reconstruction through both levels with level-1 starts forced to (level-1 segments):")
    names = ("the model's own", "  the same, moved 1-2 units", "sentence starts", "  the same, moved 1-2 units")
    for k, name in zip(ALIGNMENTS, names):
        print(f"  {name:36s} {h[f'l1_recon_{k}_starts']:.4f} ({h[f'l1_segments_{k}_starts']})")
    terms = sorted(k[len("l1_loss_own_starts_") :] for k in h if k.startswith("l1_loss_own_starts_"))
    print("level 1's training loss terms (unweighted; total weighted as in training) with its starts forced to:")
    print(f"  {'term':14s}" + "".join(f"{k:>16s}" for k in ALIGNMENTS))
    for t in terms:
        print(f"  {t:14s}" + "".join(f"{h[f'l1_loss_{k}_starts_{t}']:16.4f}" for k in ALIGNMENTS))
    print("pull of each term toward sentence starts: AUC of -d term / d beta, sentence-start units against the")
    print("others of the same paragraph, then only against those whose beta is in the same unit-wide logit bin;")
    print("and the term's share of the size of the weighted gradient:")
    for t in terms:
        a, b, c = (h.get(f"l1_pull_auc_{t}{x}", float("nan")) for x in ("", "_same_beta", "_share"))
        print(f"  {t:14s} {a:.3f}   same beta {b:.3f}   share {c:.3f}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="assets/models/zonkey-small")
    ap.add_argument("--sentences", type=int, default=100)
    ap.add_argument("--paragraphs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--probe-paragraphs", type=int, default=400, help="training paragraphs the probe is fit on")
    ap.add_argument(
        "--gap-split",
        choices=GAP_SPLITS,
        default="heldout",
        help="the split whose sentences the infill gaps are drawn from: 'train' tells underfitting from not "
        "generalising (the trigram has counted those very sentences there)",
    )
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    h = headroom(a.model, a.sentences, a.paragraphs, a.seed, a.min_count, a.probe_paragraphs, a.gap_split)
    print_tables(h)
    if a.out:
        Path(a.out).write_text(json.dumps(h, indent=2) + "\n")
        print(f"wrote {a.out}")
    return h


if __name__ == "__main__":
    main()
