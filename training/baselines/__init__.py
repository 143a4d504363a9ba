"""Baselines that Zonkey is compared against (DESIGN §7): a character-level autoregressive transformer
(`ar`), its training loop (`train_ar`), entropy / fixed / whitespace patchers (`patchers`) and their evaluation
(`evaluate_baselines`); and a count-based word trigram (`ngram`) that `training.headroom` fills the infill gaps
with, to measure what the training text alone says about a masked word."""


def load_entropy_patcher(path):
    """The entropy patcher of the AR baseline checkpoint at `path` (see `training.baselines.entropy`)."""
    from training.baselines.entropy import load_entropy_patcher as _load

    return _load(path)
