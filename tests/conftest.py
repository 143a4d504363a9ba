"""Shared fixtures: a seeded tiny model (random weights) and offline settings."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from zonkey import Zonkey, ZonkeyConfig  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model() -> Zonkey:
    torch.manual_seed(0)
    return Zonkey(ZonkeyConfig.preset("tiny")).eval()


@pytest.fixture
def sentence() -> str:
    return "The zebra is an African equine with black and white stripes. It lives in herds."
