"""Shared check: the embedding times the head's weights gives the model's own logits."""

from __future__ import annotations

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
