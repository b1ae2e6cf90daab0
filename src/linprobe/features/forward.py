"""Running a backbone on batches: the model as the engine runs it, and the sliced forward pass."""

from __future__ import annotations

import numpy as np
import torch

# The torch dtype of each resolved precision (features.config.PRECISIONS less "auto").
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# On CPU the forward runs on slices of the batch whose largest activation fits in about this
# many bytes: past the last-level cache every layer streams from memory, so a whole large batch
# is slower than cache-sized slices of it, and very small slices lose to per-call overhead.
# The size was chosen from measured slice sweeps (resnet18 and EfficientNet-Lite0 at 64-224 px,
# benchmarks/results/README.md).
CPU_SLICE_BYTES = 24 * 2**20


def prepare_model(model: torch.nn.Module, dev: torch.device, crop: int) -> torch.nn.Module:
    """The model as the engine runs it: eval, on ``dev``, channels_last, and BatchNorm folded
    into the preceding convolutions where torch.fx can trace the model (fewer passes over
    memory on CPU). The folded model is kept only if it reproduces the original on a random
    batch; any model fx cannot trace runs unchanged."""
    model = model.eval().to(dev, memory_format=torch.channels_last)
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    from torch.fx.experimental.optimization import fuse

    x = torch.randn(2, 3, crop, crop, device=dev).contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            fused = fuse(model, inplace=False)
            ref, out = model(x), fused(x)
    except Exception:  # noqa: BLE001 - untraceable models (dynamic control flow) run unfused
        return model
    ok = out.shape == ref.shape and torch.allclose(out, ref, rtol=1e-3, atol=1e-4 * ref.abs().max())
    return fused if ok else model


def peak_activation_bytes(model: torch.nn.Module, crop: int, dev: torch.device) -> int:
    """Bytes of the largest output of any leaf module for one (1, 3, crop, crop) image."""
    peak = 0

    def record(_module, _inputs, output) -> None:
        nonlocal peak
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for t in outs:
            if isinstance(t, torch.Tensor):
                peak = max(peak, t.numel() * t.element_size())

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        x = torch.zeros(1, 3, crop, crop, device=dev).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return peak


def forward_rows(model: torch.nn.Module, dev: torch.device, crop: int, batch: int) -> int:
    """Images per forward call: the whole batch on CUDA; on CPU as many as keep the largest
    activation within ``CPU_SLICE_BYTES`` (at least 1, at most ``batch``)."""
    if dev.type == "cuda":
        return batch
    per_image = max(1, peak_activation_bytes(model, crop, dev))
    return max(1, min(batch, CPU_SLICE_BYTES // per_image))


def normaliser(
    mean: tuple[float, ...], std: tuple[float, ...], dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (1, 3, 1, 1), with ``x * scale + shift == (x / 255 - mean) / std``:
    normalisation of uint8 input as one multiply-add."""
    std_t = torch.tensor(std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def embed(
    model: torch.nn.Module,
    x: torch.Tensor,
    rows: int,
    dev: torch.device,
    prec: str,
    scale: torch.Tensor,
    shift: torch.Tensor,
) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, D) float32 embeddings, ``rows`` images per forward call.

    ``scale``/``shift``: from :func:`normaliser`.
    """
    x = x.to(dev, non_blocking=True)
    out = []
    for part in x.split(rows):
        # The NHWC -> NCHW permute is a channels_last view; .float() keeps that memory format.
        part = part.permute(0, 3, 1, 2).float().mul_(scale).add_(shift)
        with torch.autocast(dev.type, dtype=DTYPES[prec], enabled=prec != "float32"):
            emb = model(part)
        if emb.ndim != 2:
            raise RuntimeError(
                f"backbone returned shape {tuple(emb.shape)}, expected (batch, dim)"
            )
        out.append(emb.float().cpu().numpy())
    return np.concatenate(out) if len(out) > 1 else out[0]
