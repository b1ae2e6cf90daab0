"""Training one learning rate of a fine-tune arm: epochs, per-epoch val scoring and atomic
checkpoints that a killed run resumes from.

Per lr ``i`` of the grid the checkpoint folder holds ``lr<i>.pt`` while it trains (model,
optimiser, schedule, grad scaler, history and the best epoch so far, with its weights and val
scores: written after every epoch, temp file + rename) and ``lr<i>.done.pt`` once it finished
(the best epoch only). The order, augmentation and dropout of an epoch come from
:func:`~linprobe.finetune.data.epoch_seed`, so a resumed run continues exactly as an
uninterrupted one would (bitwise on CPU with the same thread count: set ``finetune.threads``
to a count for that; ``auto`` may pick another on a busier machine). Checkpoints are loaded with
``weights_only=True``. Threads follow ``Setup.controller`` (:mod:`linprobe.threads`): chosen per
training batch, and the epoch bar shows the rate and what a busy machine made linprobe do.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.forward import DTYPES, normaliser
from linprobe.finetune.config import FinetuneConfig
from linprobe.finetune.data import Augment, TrainBatches, epoch_seed, loader
from linprobe.finetune.model import FinetuneNet, param_groups, train_mode
from linprobe.models import persist
from linprobe.schema import EpochRecord
from linprobe.threads import ThreadController, limit_threads


@dataclass
class Split:
    """One split's images: paths (n,) and labels (n,) int64 or (n, C) uint8."""

    paths: list[Path]
    labels: np.ndarray


@dataclass
class Setup:
    """What every lr of one run shares. ``make_net``: a fresh network (same init every call);
    ``score``: (labels, (n, C) scores) -> the val metric; ``batches``: (paths) -> eval batches;
    ``key``: the run's identity (a checkpoint of another configuration is not resumed);
    ``threads``: the decoding pool's width, ``controller``: the threads of each batch."""

    make_net: Callable[[], FinetuneNet]
    config: FinetuneConfig
    train: Split
    val: Split
    pre: Preprocess
    task: str
    n_classes: int
    device: torch.device
    precision: str
    seed: int
    checkpoints: Path
    key: str
    score: Callable[[np.ndarray, np.ndarray], float]
    batches: Callable[[list[Path]], Iterable[torch.Tensor]]
    pool: Any = None
    threads: int = 1
    workers: int = 0
    progress: bool = True
    controller: ThreadController = field(default_factory=lambda: ThreadController(1))


@dataclass
class LrResult:
    """The best epoch of one lr: its val metric, weights and val scores (n_val, C)."""

    lr: float
    epoch: int
    val: float
    state: dict[str, torch.Tensor]
    val_scores: np.ndarray
    history: list[EpochRecord] = field(default_factory=list)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up from 1/100 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return 0.01 + 0.99 * step / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_loss(s: Setup) -> torch.nn.Module:
    """Cross-entropy (multiclass) or per-class BCE (multilabel), weighted for 'balanced'."""
    y, C, cfg = s.train.labels, s.n_classes, s.config
    if s.task == "multilabel":
        pos = None
        if cfg.class_weight == "balanced":  # each class its own binary problem
            n_pos = y.sum(axis=0).astype(np.float64)
            pos = torch.tensor((len(y) - n_pos) / np.maximum(n_pos, 1), dtype=torch.float32)
        return torch.nn.BCEWithLogitsLoss(pos_weight=pos).to(s.device)
    weight = None
    if cfg.class_weight == "balanced":  # n / (C * n_c), as scikit-learn's; absent classes 0
        counts = np.bincount(y, minlength=C).astype(np.float64)
        w = np.where(counts > 0, len(y) / (C * np.maximum(counts, 1)), 0.0)
        weight = torch.tensor(w, dtype=torch.float32)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing
                                     ).to(s.device)


def _inputs(x: torch.Tensor, s: Setup, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    # (B, H, W, 3) uint8 -> normalised (B, 3, H, W) float, channels_last (the permute is a view).
    x = x.to(s.device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().mul_(scale).add_(shift)


@torch.inference_mode()
def predict(net: FinetuneNet, batches: Iterable[torch.Tensor], s: Setup) -> np.ndarray:
    """(n, C) float32 probabilities (softmax; sigmoid for multilabel) in eval mode."""
    net.eval()
    scale, shift = normaliser(s.pre.mean, s.pre.std, s.device)
    out = []
    for x in batches:
        with torch.autocast(s.device.type, dtype=DTYPES[s.precision],
                            enabled=s.precision != "float32"):
            logits = net(_inputs(x, s, scale, shift)).float()
        probs = torch.sigmoid(logits) if s.task == "multilabel" else logits.softmax(1)
        out.append(probs.cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, s.n_classes), np.float32)


def _optimizer(s: Setup, net: FinetuneNet, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(net, s.config.weight_decay)
    if s.config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=s.config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: start this lr over
        print(f"linprobe: warning: ignoring unreadable checkpoint {path} ({exc})", file=sys.stderr)
        return None


def _save(path: Path, data: dict[str, Any]) -> None:
    persist.write_all({path: ((lambda f: torch.save(data, f)), "wb")})


def _cpu_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def train_lr(s: Setup, index: int, lr: float) -> LrResult:
    """Train every epoch at peak ``lr`` (grid position ``index``), resuming from its checkpoint;
    returns the best epoch by the val metric (the first of equals)."""
    done, ckpt = s.checkpoints / f"lr{index}.done.pt", s.checkpoints / f"lr{index}.pt"
    for path in (done, ckpt):
        state = _load(path) if path.is_file() else None
        if state is not None and state.get("key") != s.key:
            state = None  # another configuration's: start over
        if state is not None and path == done:
            return LrResult(lr, state["best_epoch"], state["best_val"], state["best_state"],
                            state["best_val_scores"].numpy(), state["history"])
        if state is not None:
            break
    cfg, dev = s.config, s.device
    net = s.make_net().to(dev, memory_format=torch.channels_last)
    opt = _optimizer(s, net, lr)
    steps = len(s.train.paths) // cfg.batch_size
    total, warm = steps * cfg.epochs, round(cfg.warmup_epochs * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, total, warm))
    scaler = torch.amp.GradScaler(dev.type, enabled=s.precision == "float16")
    history: list[EpochRecord] = []
    best: dict[str, Any] = {"best_val": -math.inf, "best_epoch": 0, "best_state": None,
                            "best_val_scores": None}
    first = 1
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, first = state["history"], state["epoch"] + 1
        best = {k: state[k] for k in best}
        print(f"linprobe: resuming lr {lr:g} at epoch {first} from {ckpt}", file=sys.stderr)
    loss_fn = make_loss(s)
    for epoch in range(first, cfg.epochs + 1):
        t0 = time.perf_counter()
        loss, seen = _epoch(s, net, opt, sched, scaler, loss_fn, index, lr, epoch)
        train_s = time.perf_counter() - t0
        with s.controller.scope():
            val_scores = predict(net, s.batches(s.val.paths), s)
        val = float(s.score(s.val.labels, val_scores))
        history.append({"lr": lr, "epoch": epoch, "lr_end": float(sched.get_last_lr()[0]),
                        "train_loss": loss, "val": val if math.isfinite(val) else None,
                        "seconds": round(time.perf_counter() - t0, 3),
                        "images_per_s": round(seen / train_s, 2) if train_s > 0 else 0.0})
        if val > best["best_val"] or best["best_state"] is None:
            best = {"best_val": val, "best_epoch": epoch, "best_state": _cpu_state(net),
                    "best_val_scores": torch.from_numpy(val_scores)}
        _save(ckpt, {"key": s.key, "epoch": epoch, "model": _cpu_state(net),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict(), "history": history, **best})
    _save(done, {"key": s.key, "history": history, **best})
    ckpt.unlink(missing_ok=True)
    return LrResult(lr, best["best_epoch"], best["best_val"], best["best_state"],
                    best["best_val_scores"].numpy(), history)


def _step(s: Setup, net: FinetuneNet, opt: torch.optim.Optimizer,
          sched: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
          loss_fn: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor,
          shift: torch.Tensor) -> float:
    """One optimiser step on the batch x (B, H, W, 3) uint8, y (B,) or (B, C); its loss."""
    y = y.to(s.device, non_blocking=True)
    y = y.float() if s.task == "multilabel" else y
    with torch.autocast(s.device.type, dtype=DTYPES[s.precision],
                        enabled=s.precision != "float32"):
        loss = loss_fn(net(_inputs(x, s, scale, shift)).float(), y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    sched.step()
    return float(loss.detach())


def _epoch(s: Setup, net: FinetuneNet, opt: torch.optim.Optimizer,
           sched: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
           loss_fn: torch.nn.Module, index: int, lr: float, epoch: int) -> tuple[float, int]:
    """One pass over train in this epoch's seeded order: (mean loss, images trained on)."""
    cfg = s.config
    seed = epoch_seed(s.seed, index, epoch)
    torch.manual_seed(seed)  # dropout / drop-path draws of this epoch
    order = np.random.default_rng(seed).permutation(len(s.train.paths))
    aug = Augment(cfg.random_resized_crop, cfg.crop_scale, cfg.hflip)
    ctl = s.controller
    k = ctl.choose()
    batches = TrainBatches(s.train.paths, s.train.labels, order, cfg.batch_size, s.pre, aug,
                           seed, s.pool, min(k, s.threads))
    scale, shift = normaliser(s.pre.mean, s.pre.std, s.device)
    train_mode(net)
    total_loss, seen = 0.0, 0
    bar = tqdm(total=len(batches) * cfg.batch_size, unit="img", dynamic_ncols=True,
               desc=f"lr {lr:g} epoch {epoch}/{cfg.epochs}", disable=not s.progress,
               file=sys.stderr)
    try:
        with limit_threads(k):
            ctl.start_units()
            for x, y in loader(batches, s.device, s.workers):
                loss = _step(s, net, opt, sched, scaler, loss_fn, x, y, scale, shift)
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {loss} at lr {lr:g}, epoch {epoch}; lower the "
                        "learning rates (finetune.lrs) or use precision float32")
                total_loss += loss * len(x)
                seen += len(x)
                k = ctl.unit_done(len(x), k)   # decoding + forward + backward + step
                batches.threads = min(k, s.threads)
                bar.set_postfix_str(f"loss {total_loss / seen:.4f}, {ctl.postfix()}",
                                    refresh=False)
                bar.update(len(x))
    finally:
        bar.close()
    return total_loss / max(seen, 1), seen
