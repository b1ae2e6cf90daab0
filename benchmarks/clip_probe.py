"""CLIP_benchmark's own linear probe on linprobe's cached features, on the CPU.

The ``clip-benchmark`` package (extra ``clipbench``) trains its linear head with
``clip_benchmark.metrics.linear_probe.train`` (AdamW, cosine schedule, batch 64, lr 0.1,
10 epochs by default), chooses the weight decay with ``find_peak`` on val and predicts with
``infer``. Those functions are called here unmodified. Two things stand in the way on a CPU:

- ``evaluate`` (its driver) asserts ``device == 'cuda'`` and featurises images; so the
  driver's few lines are mirrored in :func:`run` (the weight-decay list, the coarse 7-point
  scan, the three bisection rounds, the final fit on train+val), with the features read from
  the embeddings file and L2-normalised as its ``Featurizer(normalize=True)`` does;
- ``train`` calls ``model.cuda()`` and ``x.cuda()`` unconditionally and wraps the model in
  ``DataParallel`` over ``torch.cuda.device_count()`` devices: :func:`on_cpu` makes
  ``Tensor.cuda`` / ``Module.cuda`` return their argument unchanged and reports no CUDA
  device while its functions run, then restores torch.

Runs with one torch thread (with two its fits slowed 10x the moment another process ran).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def on_cpu() -> Iterator[None]:
    """torch as CLIP_benchmark's train/infer need it to run on the CPU (see module doc)."""
    import torch
    saved = [(torch.Tensor, "cuda", torch.Tensor.cuda), (torch.nn.Module, "cuda", torch.nn.Module.cuda),
             (torch.cuda, "device_count", torch.cuda.device_count),
             (torch.cuda, "is_available", torch.cuda.is_available)]
    threads = torch.get_num_threads()
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.device_count = lambda: 0
    torch.cuda.is_available = lambda: False
    torch.set_num_threads(1)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        torch.set_num_threads(threads)


def run(splits: dict, *, search: bool, epochs: int = 10, lr: float = 0.1, batch_size: int = 64,
        seed: int = 0) -> dict:
    """Train CLIP_benchmark's head on splits {"train"|"val"|"test": (X (n, D) float32, y (n,))};
    with ``search`` its weight-decay sweep on val, else weight decay 0 on train (its default
    when no val loader is given). Returns seconds, weight decay, val/test accuracy, passes."""
    import torch
    from clip_benchmark.metrics import linear_probe as lp
    from torch.utils.data import DataLoader

    def loader(*names: str) -> DataLoader:
        X = np.concatenate([splits[s][0] for s in names])
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        y = np.concatenate([splits[s][1] for s in names])
        return DataLoader(lp.FeatureDataset(torch.from_numpy(X.astype(np.float32)),
                                            torch.from_numpy(y.astype(np.int64))),
                          batch_size=batch_size, shuffle=True, num_workers=0)

    D, C = splits["train"][0].shape[1], int(splits["train"][1].max()) + 1
    args = dict(input_shape=D, output_shape=C, lr=lr, epochs=epochs, amp=False, device="cpu")
    val_acc: list[float] = []
    its_accuracy = lp.accuracy

    def top1(logits, target) -> float:
        return float((logits.argmax(dim=1) == target).float().mean().item())

    def recorded_accuracy(logits, target, topk=(1,)):
        # find_peak's val scores, recorded. Its own accuracy() ends in float() of a one-element
        # 1-d array, which numpy >= 2.4 refuses; this is the same top-1 fraction.
        val_acc.append(top1(logits, target))
        return [val_acc[-1]]
    train_l, val_l, test_l = loader("train"), loader("val"), loader("test")
    n_trainings = 1
    # Its per-20-batch progress (stdout) and infer's tqdm bars (stderr) would flood the log.
    with on_cpu(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        lp.accuracy = recorded_accuracy
        try:
            t0 = time.perf_counter()
            if search:       # = clip_benchmark.metrics.linear_probe.evaluate, lines after "sweep"
                wd_list = np.logspace(-6, 2, num=97).tolist()
                wd_init = np.logspace(-6, 2, num=7).tolist()
                idxs = [i for i, v in enumerate(wd_list) if v in wd_init]
                peak = lp.find_peak(wd_list, idxs, train_l, val_l, verbose=False, seed=seed, **args)
                n_trainings += len(idxs)
                span = 8
                while span > 0:
                    left, right = max(peak - span, 0), min(peak + span, len(wd_list) - 1)
                    peak = lp.find_peak(wd_list, [left, peak, right], train_l, val_l,
                                        verbose=False, seed=seed, **args)
                    n_trainings += 3
                    span //= 2
                wd, final_l = wd_list[peak], loader("train", "val")
            else:
                wd, final_l = 0.0, train_l
            model = lp.train(final_l, D, C, wd, lr, epochs, False, "cpu", seed)
            logits, target = lp.infer(model, test_l, False, "cpu")
            seconds = time.perf_counter() - t0
            test_acc = top1(logits, target)
            if not search:      # outside the timing: val accuracy of the train-only head
                logits, target = lp.infer(model, val_l, False, "cpu")
                val_acc.append(top1(logits, target))
        finally:
            lp.accuracy = its_accuracy
    n_tr, n_va = len(splits["train"][1]), len(splits["val"][1])
    # Each epoch streams its training rows once (forward and weight gradient on the same batch).
    rows = (n_trainings - 1) * (epochs * n_tr + n_va) + epochs * len(final_l.dataset)
    return {"seconds": seconds, "weight_decay": wd, "trainings": n_trainings,
            "val_accuracy": max(val_acc) if search else val_acc[-1], "test_accuracy": test_acc,
            "rows_streamed": rows, "flop": rows * 4.0 * D * C}
