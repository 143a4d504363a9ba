"""Character-level autoregressive baseline: a small causal transformer over UTF-8 bytes.

What it does:
- `CharLM` models text as UTF-8 bytes, the same 256-symbol alphabet as `zonkey.codec`. Every sequence starts with a
  beginning-of-sequence token (id 256, input only), so every byte of a text is predicted, the first one included,
  and unconditional sampling needs no prompt. The network is a pre-LN transformer (learned absolute positions,
  `F.scaled_dot_product_attention` with `is_causal=True`, GELU MLP, untied output head), sized by default to about
  the parameter count of `zonkey-small`.
- `bits_per_char` is the held-out score of DESIGN §7. It is measured per UTF-8 byte (the model's unit): total
  negative log2-likelihood of all bytes / number of bytes. For mostly-ASCII English the two units nearly coincide;
  `bits_per_unicode_char` divides the same total by the number of characters instead.
- `next_byte_entropy` gives the entropy of the predictive distribution at every byte, the score of the BLT-style
  entropy patchers in `training.baselines.patchers`.
- Texts longer than the context are scored with overlapping windows: every window restarts with the BOS token, and
  each byte after the first window is scored with at least `context // 2` bytes of left context.
- `sample` draws bytes with a key/value cache and a per-call `torch.Generator`; when the cache is full it restarts
  from BOS plus the last `context // 2` bytes.
- `save_pretrained` / `from_pretrained` use the checkpoint format of `zonkey.checkpoint` (config.json plus
  safetensors weights, sharded when a file would exceed 15 MB) and raise `CheckpointError` naming the bad file.

What it does not do: train itself (see `training.baselines.train_ar`), tokenize beyond bytes, or use dropout.
"""

from __future__ import annotations

import codecs
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zonkey.checkpoint import CheckpointError
from zonkey.config import JsonConfig

FORMAT = "zonkey-charlm v1"
BOS = 256  # input-only token id; outputs are the 256 byte values
LN2 = math.log(2.0)
Past = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (b, h, t_past, e)


@dataclass(frozen=True)
class CharLMConfig(JsonConfig):
    """Shape of a `CharLM`; the defaults give 6,581,248 parameters (zonkey-small: 6,684,232)."""

    vocab_size: int = 256  # UTF-8 bytes (predicted symbols); the input adds one BOS id
    d_model: int = 256
    n_layers: int = 8
    n_heads: int = 8
    mlp_ratio: int = 4
    context: int = 512  # bytes per sequence, BOS included

    def __post_init__(self):
        if self.vocab_size != 256:
            raise ValueError("CharLMConfig.vocab_size must be 256 (UTF-8 bytes)")
        for name in ("d_model", "n_layers", "n_heads", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"CharLMConfig.{name}={getattr(self, name)} must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"CharLMConfig.d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.context < 8:
            raise ValueError(f"CharLMConfig.context={self.context} must be >= 8")

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> CharLMConfig:
        d = dict(d)
        fmt = d.pop("format", None)
        if fmt != FORMAT:
            raise ValueError(f"config format is {fmt!r}; expected {FORMAT!r}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown CharLM config keys: {sorted(unknown)}")
        return cls(**d)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x)); optional key/value cache."""

    def __init__(self, cfg: CharLMConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, cfg.mlp_ratio * d)
        self.out = nn.Linear(cfg.mlp_ratio * d, d)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (b, t, d) [+ past keys/values (b, h, t_past, e)] -> (b, t, d) and keys/values (b, h, t_past + t, e)."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        t_past = 0
        if past is not None:
            t_past = past[0].shape[2]
            k = torch.cat([past[0].expand(b, -1, -1, -1), k], dim=2)  # (b, h, t_past + t, e)
            v = torch.cat([past[1].expand(b, -1, -1, -1), v], dim=2)
        if t_past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (b, h, t, e)
        elif t == 1:
            y = F.scaled_dot_product_attention(q, k, v)  # the newest query sees every cached key
        else:  # queries at positions t_past .. t_past + t - 1 see keys up to their own position
            allowed = torch.arange(t_past + t, device=x.device)[None, :] <= (
                t_past + torch.arange(t, device=x.device)[:, None]
            )  # (t, t_past + t) bool
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, (k, v)


class CharLM(nn.Module):
    """Causal byte-level transformer LM. See the module docstring for conventions (BOS, windows, units)."""

    def __init__(self, config: CharLMConfig | None = None):
        super().__init__()
        self.config = config = config or CharLMConfig()
        self.tok_emb = nn.Embedding(config.vocab_size + 1, config.d_model)  # 256 bytes + BOS
        self.pos_emb = nn.Embedding(config.context, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)
        self.apply(self._init)
        for blk in self.blocks:  # residual branches scaled down with depth (GPT-2)
            for lin in (blk.proj, blk.out):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- network --------------------------------------------------------------------------------------------------

    def _run(self, tokens: torch.Tensor, past: Past | None = None) -> tuple[torch.Tensor, Past]:
        """tokens (b, t) long in [0, 256] after `t_past` cached ones -> logits (b, t, 256) and the new cache.

        Logits at position j are the distribution of the token that follows tokens[:, j]."""
        t_past = past[0][0].shape[2] if past else 0
        t = tokens.shape[1]
        if t_past + t > self.config.context:
            raise ValueError(f"{t_past + t} positions exceed the context of {self.config.context}")
        pos = torch.arange(t_past, t_past + t, device=tokens.device)  # (t,)
        x = self.tok_emb(tokens) + self.pos_emb(pos)  # (b, t, d)
        present: Past = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, past[i] if past else None)
            present.append(kv)
        return self.head(self.ln_f(x)), present

    @staticmethod
    def _with_bos(ids: torch.Tensor) -> torch.Tensor:
        """ids (b, n) bytes -> (b, n) inputs: BOS then ids[:, :-1] (input j predicts byte j)."""
        bos = torch.full_like(ids[:, :1], BOS)
        return torch.cat([bos, ids[:, :-1]], dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (b, n) long bytes, n <= context -> logits (b, n, 256).

        logits[:, i] is the distribution of ids[:, i] given ids[:, :i] (BOS only for i = 0)."""
        return self._run(self._with_bos(ids))[0]

    def loss(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean next-byte cross-entropy in nats over the real bytes of right-padded ids (b, n) with lengths (b,).

        Divide by ln 2 for bits per byte."""
        logits = self(ids)  # (b, n, 256)
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]  # (b, n)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten(), reduction="none").view_as(ids)  # (b, n)
        return (nll * mask).sum() / mask.sum().clamp(min=1)

    # ---- scoring --------------------------------------------------------------------------------------------------

    def _windows(self, n: int) -> list[tuple[int, int, int]]:
        """Windows (start, first_scored, end) over n target bytes: window inputs are BOS + data[start:end - 1]."""
        c = self.config.context
        stride = c // 2
        out = [(0, 0, min(n, c))]
        covered = out[0][2]
        while covered < n:
            start = covered - (c - stride)
            end = min(n, start + c)
            out.append((start, covered, end))
            covered = end
        return out

    @torch.no_grad()
    def score_bytes(self, texts: list[str], batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (log2-probability of each byte (n,), entropy in bits of each byte's prediction (n,))."""
        was_training = self.training
        self.eval()
        datas = [t.encode("utf-8") for t in texts]
        logp = [np.zeros(len(d)) for d in datas]
        ent = [np.zeros(len(d)) for d in datas]
        jobs = [(i, w) for i, d in enumerate(datas) for w in self._windows(len(d)) if len(d)]
        for k in range(0, len(jobs), batch_size):
            chunk = jobs[k : k + batch_size]
            width = max(end - start for _, (start, _, end) in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)  # (b, width) right-padded
            for row, (i, (start, _, end)) in enumerate(chunk):
                ids[row, : end - start] = torch.tensor(list(datas[i][start:end]))
            ids = ids.to(self.device)
            lp = F.log_softmax(self(ids).float(), dim=-1)  # (b, width, 256)
            tgt = lp.gather(-1, ids[..., None])[..., 0] / LN2  # (b, width)
            h = -(lp.exp() * lp).sum(-1) / LN2  # (b, width)
            tgt, h = tgt.cpu().numpy(), h.cpu().numpy()
            for row, (i, (start, first, end)) in enumerate(chunk):
                logp[i][first:end] = tgt[row, first - start : end - start]
                ent[i][first:end] = h[row, first - start : end - start]
        self.train(was_training)
        return list(zip(logp, ent))

    def bits_per_char(self, texts: list[str]) -> float:
        """Bits per UTF-8 byte: -sum log2 p(byte | previous bytes) over all bytes of `texts` / number of bytes.

        Named per "char" after DESIGN §7; the unit is the byte (see `bits_per_unicode_char`)."""
        scored = self.score_bytes(texts)
        n = sum(len(lp) for lp, _ in scored)
        if n == 0:
            raise ValueError("bits_per_char needs at least one non-empty text")
        return float(-sum(lp.sum() for lp, _ in scored) / n)

    def bits_per_unicode_char(self, texts: list[str]) -> float:
        """The same total negative log2-likelihood as `bits_per_char`, divided by the number of characters."""
        scored = self.score_bytes(texts)
        n = sum(len(t) for t in texts)
        if n == 0:
            raise ValueError("bits_per_unicode_char needs at least one non-empty text")
        return float(-sum(lp.sum() for lp, _ in scored) / n)

    def next_byte_entropy(self, text: str) -> np.ndarray:
        """(n_bytes,) entropy in bits of the predictive distribution of byte i given bytes < i (BOS before byte 0)."""
        return self.score_bytes([text])[0][1]

    @torch.no_grad()
    def continuation_log2prob(self, prefix: str, continuations: list[str]) -> np.ndarray:
        """(k,) log2 p(continuation | BOS + prefix) for each continuation, the prefix encoded once (cached).

        The prefix is cut on the left (whole bytes) when prefix + the longest continuation exceed the context."""
        was_training = self.training
        self.eval()
        conts = [c.encode("utf-8") for c in continuations]
        longest = max((len(c) for c in conts), default=0)
        if longest == 0:
            return np.zeros(len(conts))
        if longest > self.config.context - 1:
            raise ValueError(f"a continuation of {longest} bytes does not fit the context of {self.config.context}")
        pre = prefix.encode("utf-8")[-(self.config.context - longest) :]
        tokens = torch.tensor([[BOS, *pre]], device=self.device)  # (1, 1 + p)
        logits, past = self._run(tokens)
        first = F.log_softmax(logits[:, -1].float(), dim=-1)  # (1, 256): the first continuation byte
        ids = torch.zeros(len(conts), longest, dtype=torch.long, device=self.device)  # (k, L) right-padded
        for row, c in enumerate(conts):
            if c:
                ids[row, : len(c)] = torch.tensor(list(c))
        lens = torch.tensor([len(c) for c in conts], device=self.device)  # (k,)
        lp = first.expand(len(conts), -1).gather(-1, ids[:, :1])[:, 0]  # (k,)
        if longest > 1:
            rest = F.log_softmax(self._run(ids[:, :-1], past)[0].float(), dim=-1)  # (k, L - 1, 256)
            tok = rest.gather(-1, ids[:, 1:, None])[..., 0]  # (k, L - 1)
            mask = torch.arange(1, longest, device=self.device)[None, :] < lens[:, None]  # (k, L - 1)
            lp = lp + (tok * mask).sum(-1)
        lp = torch.where(lens > 0, lp, torch.zeros_like(lp))
        self.train(was_training)
        return (lp / LN2).cpu().numpy()

    # ---- sampling -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_bytes(
        self,
        prompt: bytes,
        n_samples: int,
        max_new: int,
        generator: torch.Generator,
        temperature: float = 1.0,
        stop: Callable[[bytes], bool] | None = None,
    ) -> list[bytes]:
        """Sample n_samples byte continuations of `prompt` in parallel, each up to max_new bytes.

        A row ends when `stop(row_bytes)` is true after a new byte (that byte is kept in the row) or at max_new.
        temperature <= 0 takes the most likely byte. The prompt is cut to its last `context - 1` bytes."""
        was_training = self.training
        self.eval()
        c = self.config.context
        history = list(prompt[-(c - 1) :])
        rows = [bytearray() for _ in range(n_samples)]
        done = [False] * n_samples
        logits, past = self._run(torch.tensor([[BOS, *history]], device=self.device))
        last = logits[:, -1].expand(n_samples, -1)  # (k, 256)
        length = 1 + len(history)
        for _ in range(max_new):
            if temperature <= 0:
                nxt = last.argmax(-1)  # (k,)
            else:
                probs = F.softmax(last.float() / temperature, dim=-1).cpu()  # (k, 256)
                nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]  # (k,)
            for r in range(n_samples):
                if not done[r]:
                    rows[r].append(int(nxt[r]))
                    done[r] = stop is not None and stop(bytes(rows[r]))
            if all(done):
                break
            if length == c:  # cache full: restart from BOS + the recent half of every row
                keep = c // 2
                streams = [(bytes(history) + bytes(row))[-keep:] for row in rows]
                # rows that ended keep sampling into a throwaway tail so that the batch stays rectangular
                streams = [s + bytes(keep - len(s)) for s in streams]
                tokens = torch.tensor([[BOS, *s] for s in streams], device=self.device)  # (k, 1 + keep)
                logits, past = self._run(tokens)
                length = 1 + keep
            else:
                logits, past = self._run(nxt.to(self.device)[:, None], past)
                length += 1
            last = logits[:, -1]
        self.train(was_training)
        return [bytes(r) for r in rows]

    def sample(self, n_chars: int, seed: int = 0, prompt: str = "", temperature: float = 1.0) -> str:
        """Sample a continuation of `prompt` of exactly n_chars characters (invalid UTF-8 becomes U+FFFD).

        Deterministic for a given seed (a per-call torch.Generator); the prompt is not included in the result."""
        if n_chars <= 0:
            return ""
        generator = torch.Generator().manual_seed(seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        count = 0

        def stop(row: bytes) -> bool:
            nonlocal count
            piece = decoder.decode(row[-1:])
            pieces.append(piece)
            count += len(piece)
            return count >= n_chars

        self.sample_bytes(prompt.encode("utf-8"), 1, 4 * n_chars + 4, generator, temperature, stop)
        text = "".join(pieces) + decoder.decode(b"", final=True)
        return text[:n_chars]

    # ---- checkpoints ----------------------------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path) -> None:
        """Write config.json and safetensors weights (sharded above 15 MB per file) into directory `path`."""
        from zonkey.checkpoint import save_pretrained

        save_pretrained(self, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> CharLM:
        """Load a directory written by `save_pretrained`; strict names and shapes, errors name the bad file."""
        from zonkey.checkpoint import load_weights, read_config

        d = Path(path)
        if not d.is_dir():
            raise CheckpointError(f"{d}: checkpoint directory does not exist.")
        model = cls(read_config(d, CharLMConfig.from_dict, "CharLM config"))
        return load_weights(model, d).to(device).eval()


def train_throughput(config: CharLMConfig, steps: int = 5, batch_size: int = 8) -> float:
    """Median training characters (bytes) per second of forward + backward + AdamW on batch_size x context batches.

    A freshly initialised model on real training batches; two warm-up steps are not timed. Uses the caller's torch
    thread setting."""
    from training.data import PackedBatches, local_split

    torch.manual_seed(0)
    model = CharLM(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    texts = [x for _, x in local_split("train")][:400]
    data = PackedBatches(texts, batch_size, config.context, seed=0)
    rates = []
    for i in range(steps + 2):
        ids, lengths = next(data)
        t0 = time.perf_counter()
        model.loss(ids, lengths).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            rates.append(int(lengths.sum()) / (time.perf_counter() - t0))
    return statistics.median(rates)
