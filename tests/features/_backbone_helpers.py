"""Shared test helpers for the backbone tests: the logits identity check and a one-thread fixture."""

from __future__ import annotations

import pytest
import torch


def assert_head_reproduces(embedding: torch.Tensor, head: torch.nn.Module, logits: torch.Tensor) -> None:
    """``head(embedding)`` == ``logits``, with a tolerance relative to the logits' scale.

    For a Linear head this is literally ``embedding @ W.T + b``.
    """
    if isinstance(head, torch.nn.Linear):
        recon = embedding @ head.weight.T
        if head.bias is not None:  # maxvit's final Linear has no bias
            recon = recon + head.bias
    else:
        recon = head(embedding)
    assert recon.shape == logits.shape
    assert torch.isfinite(logits).all()
    scale = float(logits.abs().max()) + 1e-6
    assert torch.allclose(recon, logits, rtol=1e-4, atol=1e-4 * scale), float((recon - logits).abs().max())


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny test tensors gain nothing from intra-op threads, and on a loaded 2-core machine the
    OpenMP threads stall each other (regnet_y_400mf at 32 px: 6 s with 2 threads vs 0.03 s with
    1, measured under load average 9). Restored afterwards so other tests are unaffected."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
