"""Fixtures of the feature-extraction tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_torch_rng() -> Iterator[None]:
    """Every test starts from torch seed 0 and leaves the global generator as it found it, so a
    test's random inputs do not depend on which tests ran before it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
