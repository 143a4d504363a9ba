"""Baselines that Zonkey is compared against (DESIGN §7): a character-level autoregressive transformer
(`ar`), its training loop (`train_ar`), entropy / fixed / whitespace patchers (`patchers`) and their evaluation
(`evaluate_baselines`)."""


def load_entropy_patcher(path):
    """The entropy patcher of the AR baseline checkpoint at `path` (see `training.baselines.entropy`)."""
    from training.baselines.entropy import load_entropy_patcher as _load

    return _load(path)
