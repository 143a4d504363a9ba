"""What a level-1-sized model learns of a masked word under each MLM objective, with level 0 frozen
(the model card's MLM probe):

  python -m training.probe --model assets/models/zonkey-small [--paragraphs 3000] [--minutes 8 | --steps N]
      [--objective release wide softmax] [--out F]

Data: the first `--paragraphs` training paragraphs (`training.evaluate.paragraphs`, at most 480
characters) read by the model's level 0: per level-0 segment, its text and its unit word vector
(level 1's input). Each paragraph's segments are cut into runs of S (level 1's window; a shorter
tail is dropped) and each position of a run is masked with probability 0.2 (at least one per run),
with a fixed seed. The runs of every tenth paragraph are held out.

Score (top-1): the masked segment's text must come first among every distinct segment text of the
paragraphs, ranked by the cosine of the prediction to the text's mean unit vector (for the head
"with prior": by the logit the model's MLM term gives that cosine, plus the log of the text's count
in the training paragraphs, plus one).

Predictors:
- head: the model's own level-1 compressor at the mask slots (its MLM head), every position existing;
- frequent: always the most frequent text;
- a fresh probe of level 1's width (2 pre-norm transformer blocks, 4 heads, learned positions and
  mask vector), 64 training runs per step, AdamW at lr 1e-3, trained with one objective:
  - release: level 1's InfoNCE as the release sets it (32 negatives drawn from the batch's word
    vectors, 2 atanh(cos) logits; `zonkey.losses.info_nce`);
  - wide: 512 negatives, negatives within cosine 0.95 of the target counted as the target, logits
    16 cos (`LevelConfig.mlm_negatives`, `mlm_same_cos`, `mlm_logit_scale`; stages 28 and 29);
  - softmax: a softmax over every segment text at 16 cos to its mean vector (a bound for
    comparison: Zonkey has no word list to take it over).
Every probe is scored on the held-out runs every `--check-every` steps and at the end. Prints a
table; writes JSON with --out.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.data import local_split
from training.evaluate import paragraphs
from zonkey import Zonkey, codec
from zonkey._utils import rho, to_sphere
from zonkey.config import SAME_COS
from zonkey.inference import encode_ids
from zonkey.losses import info_nce, similarity_logits

MASK_RATE = 0.2
HELDOUT_EVERY = 10  # every tenth paragraph's runs are held out
OBJECTIVES = {  # name -> (negatives, same_cos, logit scale); softmax: over every segment text
    "release": (32, SAME_COS, 0.0),
    "wide": (512, 0.95, 16.0),
    "softmax": (0, SAME_COS, 16.0),
}


@dataclass
class ProbeData:
    """Runs of S level-0 word vectors with their masks and segment-text classes.

    texts: the c distinct segment texts (of all paragraphs); class_vecs: (c, d) their unit mean
    vectors; counts: (c,) occurrences in the training paragraphs plus one (the prior's counts);
    n_segments: all level-0 segments read; x_*: (r, S, d) unit word vectors; y_*: (r, S) class ids;
    mask_*: (r, S) bool."""

    texts: list[str]
    class_vecs: torch.Tensor
    counts: torch.Tensor
    n_segments: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    mask_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mask_test: torch.Tensor


def segment_vectors(model, text: str) -> tuple[list[str], torch.Tensor]:
    """Level 0's segments of `text` -> (their texts, (n, d1) unit word vectors)."""
    ids = codec.encode(text)
    code = encode_ids(model, ids, top=0)[0]
    starts = code.win.start.tolist() + [len(ids)]
    texts = [codec.decode(ids[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    return texts, F.normalize(code.z.flatten(1).float(), dim=-1)


def run_masks(n_runs: int, seg_len: int, seed: int) -> torch.Tensor:
    """(n_runs, seg_len) bool: each position masked with probability MASK_RATE, at least one per run."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_runs, seg_len, generator=g) < MASK_RATE
    one = torch.randint(0, seg_len, (n_runs,), generator=g)
    mask[torch.arange(n_runs), one] |= ~mask.any(1)
    return mask


@torch.no_grad()  # not inference mode: the probes train on these tensors
def build_data(model, texts: list[str], seed: int = 0) -> ProbeData:
    """`texts` (paragraphs) read by level 0 and cut into masked runs of level 1's window."""
    S = model.config.levels[1].seg_len
    read = [segment_vectors(model, t) for t in tqdm(texts, desc="level-0 word vectors", leave=False)]
    index, sums, counts = {}, [], collections.Counter()
    for p, (segs, vecs) in enumerate(read):
        for s, v in zip(segs, vecs):
            if s not in index:
                index[s] = len(index)
                sums.append(torch.zeros_like(v))
            sums[index[s]] += v
            counts[s] += p % HELDOUT_EVERY != HELDOUT_EVERY - 1  # the prior: training paragraphs only
    names = list(index)
    parts = {True: ([], []), False: ([], [])}  # held out -> (vectors, ids)
    for p, (segs, vecs) in enumerate(read):
        for a in range(0, len(segs) - S + 1, S):
            xs, ys = parts[p % HELDOUT_EVERY == HELDOUT_EVERY - 1]
            xs.append(vecs[a : a + S])
            ys.append(torch.tensor([index[s] for s in segs[a : a + S]]))
    if not parts[True][0] or not parts[False][0]:
        raise ValueError(
            f"{len(texts)} paragraphs give no run of {S} level-0 segments on one side of the split; "
            f"pass more paragraphs (every {HELDOUT_EVERY}th one is held out)"
        )
    (xtr, ytr), (xte, yte) = ((torch.stack(xs), torch.stack(ys)) for xs, ys in (parts[False], parts[True]))
    return ProbeData(
        texts=names,
        class_vecs=F.normalize(torch.stack(sums), dim=-1),
        counts=torch.tensor([counts[s] + 1.0 for s in names]),
        n_segments=sum(len(segs) for segs, _ in read),
        x_train=xtr,
        y_train=ytr,
        mask_train=run_masks(len(xtr), S, seed),
        x_test=xte,
        y_test=yte,
        mask_test=run_masks(len(xte), S, seed + 1),
    )


def top1(
    pred: torch.Tensor, y: torch.Tensor, data: ProbeData, prior_scale: float | None = None, chunk: int = 512
) -> float:
    """(n, d) predictions of masked positions whose classes are y (n,) -> the share whose class ranks
    first by cosine to the class mean vectors. With `prior_scale`, by the InfoNCE logit of that
    cosine (`similarity_logits`: 0 = 2 atanh cos, else scale * cos) plus the log count: InfoNCE
    against negatives drawn from the data learns p(text | context) / p(text)."""
    hits = 0
    for i in range(0, len(pred), chunk):
        scores = F.normalize(pred[i : i + chunk].float(), dim=-1) @ data.class_vecs.t()
        if prior_scale is not None:
            scores = similarity_logits(scores, prior_scale) + data.counts.log()
        hits += int((scores.argmax(1) == y[i : i + chunk]).sum())
    return hits / max(len(pred), 1)


def frequent_top1(data: ProbeData) -> float:
    """Always the most frequent text (of the training paragraphs), scored on the held-out masked positions."""
    return float((data.y_test[data.mask_test] == int(data.counts.argmax())).float().mean())


@torch.inference_mode()
def head_predictions(model, x: torch.Tensor, mask: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """The level-1 compressor's MLM outputs at the masked positions of the runs x (r, S, d) -> (n, d),
    every position existing."""
    lv, d = model.levels[1], model.config.levels[1].d_model
    out = []
    for i in range(0, len(x), chunk):
        xs, m = to_sphere(x[i : i + chunk].to(model.device), rho(d)), mask[i : i + chunk].to(model.device)
        h = lv.mlm_outputs(xs, m, torch.zeros(m.shape, device=model.device), torch.ones_like(m))
        out.append(h[m].float().cpu())
    return torch.cat(out)


class Probe(nn.Module):
    """A fresh masked-vector predictor of level 1's width: (r, S, d) unit vectors, (r, S) mask -> (r, S, d)."""

    def __init__(self, d: int, seg_len: int, layers: int = 2, heads: int = 4):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(seg_len, d) * 0.02)
        self.mask = nn.Parameter(torch.randn(d) / math.sqrt(d))
        block = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.where(mask[..., None], self.mask, x) + self.pos
        return self.out(self.blocks(h))


def probe_loss(probe: Probe, x, y, mask, objective: str, data: ProbeData, generator) -> torch.Tensor:
    k, same_cos, scale = OBJECTIVES[objective]
    pred = probe(x, mask)
    if objective == "softmax":
        logits = scale * F.normalize(pred[mask], dim=-1) @ data.class_vecs.t()
        return F.cross_entropy(logits, y[mask])
    return info_nce(pred, x, x.flatten(0, 1), mask.float(), k, generator=generator, same_cos=same_cos, scale=scale)


def evaluate_probe(probe: Probe, data: ProbeData) -> float:
    with torch.inference_mode():
        pred = probe(data.x_test, data.mask_test)[data.mask_test]
    return top1(pred, data.y_test[data.mask_test], data)


def train_probe(
    data: ProbeData,
    objective: str,
    steps: int = 0,
    minutes: float = 8.0,
    batch: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    check_every: int = 250,
) -> dict:
    """A fresh `Probe` trained with `objective` for `steps` (or, with steps 0, `minutes`) -> its
    held-out top-1 at the end and at every check, and its training loss (mean of the first and
    of the last 50 steps, or of a quarter of them when fewer than 200)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown probe objective {objective!r}; choose from {sorted(OBJECTIVES)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    probe = Probe(data.x_train.shape[2], data.x_train.shape[1])
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    losses, checks, t0, step = [], [], time.time(), 0
    bar = tqdm(desc=f"probe ({objective})", total=steps or None, leave=False)
    while (step < steps) if steps else (time.time() - t0 < 60 * minutes):
        pick = torch.randint(0, len(data.x_train), (batch,), generator=g)
        loss = probe_loss(probe, data.x_train[pick], data.y_train[pick], data.mask_train[pick], objective, data, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if step % check_every == 0:
            checks.append({"step": step, "minutes": (time.time() - t0) / 60, "top1": evaluate_probe(probe, data)})
    bar.close()
    final = evaluate_probe(probe, data)
    w = max(1, min(50, len(losses) // 4))  # steps averaged for the first and the last loss
    return {
        "objective": objective,
        "steps": step,
        "minutes": (time.time() - t0) / 60,
        "top1": final,
        "best_top1": max([final] + [c["top1"] for c in checks]),
        "loss_first": sum(losses[:w]) / w,
        "loss_last": sum(losses[-w:]) / w,
        "checks": checks,
    }


def probe(model_dir: str, n_paragraphs: int = 3000, objectives=("release", "wide", "softmax"), **train) -> dict:
    model = Zonkey.from_pretrained(model_dir)
    if model.num_levels < 2 or model.levels[1].mask_vector is None:
        raise ValueError(
            f"{model_dir} has no level-1 MLM head (one level, or level 1 without mlm): "
            "the probe measures level 1's MLM objective; give a release with two levels"
        )
    texts = paragraphs([t for _, t in local_split("train")], n_paragraphs)
    data = build_data(model, texts)
    head = head_predictions(model, data.x_test, data.mask_test)
    y = data.y_test[data.mask_test]
    out = {
        "model": str(model_dir),
        "paragraphs": len(texts),
        "segments": data.n_segments,
        "classes": len(data.texts),
        "runs_train": len(data.x_train),
        "runs_test": len(data.x_test),
        "masked_test": int(data.mask_test.sum()),
        "head_top1": top1(head, y, data),
        "head_top1_with_prior": top1(head, y, data, prior_scale=model.config.levels[1].mlm_logit_scale),
        "frequent_top1": frequent_top1(data),
        "probes": [train_probe(data, o, **train) for o in objectives],
    }
    return out


def print_table(r: dict) -> None:
    print(
        f"{r['paragraphs']} paragraphs, {r['segments']:,} level-0 segments, {r['classes']:,} distinct texts; "
        f"{r['runs_train']:,} training runs, {r['runs_test']:,} held-out runs ({r['masked_test']:,} masked)"
    )
    print(f"{'predictor':<34} {'top-1':>7}")
    print(f"{'level-1 MLM head':<34} {r['head_top1']:>7.1%}")
    print(f"{'level-1 MLM head + log prior':<34} {r['head_top1_with_prior']:>7.1%}")
    print(f"{'most frequent text':<34} {r['frequent_top1']:>7.1%}")
    for p in r["probes"]:
        name = f"fresh probe, {p['objective']} ({p['steps']} steps, {p['minutes']:.1f} min)"
        loss = f"loss {p['loss_first']:.2f} -> {p['loss_last']:.2f}"
        print(f"{name:<34} {p['top1']:>7.1%}  best {p['best_top1']:.1%}, {loss}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="release directory with at least two levels")
    ap.add_argument("--paragraphs", type=int, default=3000)
    ap.add_argument("--objective", nargs="*", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    ap.add_argument("--minutes", type=float, default=8.0, help="training time per probe (when --steps is 0)")
    ap.add_argument("--steps", type=int, default=0, help="training steps per probe (deterministic); 0 = --minutes")
    ap.add_argument("--check-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the result as JSON")
    a = ap.parse_args(argv)
    r = probe(
        a.model, a.paragraphs, a.objective, steps=a.steps, minutes=a.minutes, check_every=a.check_every, seed=a.seed
    )
    print_table(r)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(r, f, indent=1)
    return r


if __name__ == "__main__":
    main()
