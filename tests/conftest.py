"""Fixtures shared by more than one test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for the test, restored afterwards. Tiny test tensors gain
    nothing from threads, and on a loaded 2-core machine OpenMP workers stall each other
    (regnet_y_400mf at 32 px: 6 s with 2 threads vs 0.03 s with 1, under load average 9)."""
    import torch  # here, not at import: the report tests run without torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
