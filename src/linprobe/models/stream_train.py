"""The ``train`` protocol for ``logreg`` with ``chunk_mb``: the file is streamed, never loaded.

Same protocol and artifacts as :func:`.train.train_probe` (which hands over to
:func:`train_streamed` when the option is set): C is searched as ``search`` says (the
``path`` by default, else the grid, refined or not; :func:`.selection.run_search`) with fits on
the train split scored on the val split, warm-starting from the nearest fitted C; the chosen C
is refit on train+val at the full tol (warm-started from its selection fit) and test is scored
once.
Every fit and every scoring pass reads the embeddings ``chunk_mb`` MiB at a time
(:mod:`.streaming`); what stays in memory is one value per row (ids, labels, split) and the
(n_val or n_test, C) scores, not the (N, D) matrix. Differences from the in-memory path: the
selection needs a val split (no holdout, no kfold) and there is no few-shot curve (both refused
by the option's checks), and the in-memory file checks that need the whole matrix (no NaN/inf)
are left out.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from linprobe.features.store import EmbeddingSet, read_embeddings
from linprobe.schema import ArtifactPaths, RunMetrics
from linprobe.threads import fit_scope, fit_threads

from . import persist
from .blocks import H5Blocks, rows_for_mb, torchrun_world
from .options import LogregOptions, resolve_options
from .probes import ProbeSpec, get_probe
from .selection import SCORERS, Selection, choose, fit_settings, run_search
from .streaming import fit_normalizer, fit_streamed, score_streamed
from .torch_lbfgs import TorchLogisticRegression, torch_device
from .runfiles import score_run, write_run


def train_streamed(path: Path, probe: str, out_dir: str | Path, given: LogregOptions,
                   seed: int, name: str) -> RunMetrics | None:
    """:func:`.train.train_probe` for options with ``chunk_mb`` set; same artifacts. Under
    torchrun (``torchrun --nproc-per-node N -m linprobe train ...``) each rank streams its
    share of the train rows, loss and gradient are all-reduced, rank 0 writes the artifacts
    and returns the metrics, the other ranks return None."""
    from .train import _controller, run_metrics

    if getattr(given, "chunk_mb", None) is None:
        raise ValueError(f"`linprobe train` under torchrun (WORLD_SIZE={torchrun_world()}) "
                         f"shares one fit's rows among the ranks, which only the streamed "
                         f"logreg does; give probe {name!r} the options solver: torch and "
                         "chunk_mb, or run train without torchrun.")
    es = read_embeddings(path, load_embeddings=False)   # ids, labels, split: not the matrix
    spec = get_probe(probe, es.task)
    opts = resolve_options(given, es.task, es.class_names)
    _check(es, path)
    d = _dim(path)
    rows = rows_for_mb(opts.chunk_mb, d)
    C = len(es.class_names)
    with _torchrun_group(opts.device) as (rank, world, device):
        # Fits stream this rank's share of train (+val); every rank scores all of val and test
        # with the same model, and rank 0 writes the artifacts.
        blocks = {s: H5Blocks(path, rows, s.split("+"), *((rank, world) if "train" in s
                                                           else (0, 1)))
                  for s in ("train", "val", "train+val", "test")}
        ranks = f" on {world} ranks" if world > 1 else ""
        print(f"linprobe: {name} on {path.name}: streaming {rows}-row blocks "
              f"({opts.chunk_mb:g} MiB) of {d} dims{ranks}; selecting C over {len(opts.grid)} "
              "values", file=sys.stderr, flush=True)
        threads = _controller(opts, name)
        try:
            with fit_threads(threads):   # each fit's threads from the free cores, as train_probe
                sel, fitted = _select(spec, opts, device, blocks, C)
                t0 = time.perf_counter()
                model = _fit(opts, device, blocks["train+val"], sel.value, fitted[sel.value])
                fit_seconds = time.perf_counter() - t0
            with threads.scope():
                scores, y_te = score_streamed(model, blocks["test"], C)
        finally:
            threads.bar.close()
        if rank != 0:
            return None
        test, val, pred, test_ci = score_run(es.task, es.class_names, y_te, scores, "probability",
                                             sel.eval_y, sel.eval_scores, n_boot=opts.n_boot,
                                             alpha=opts.alpha, seed=seed)
        result = run_metrics(path, es, spec, opts, given, name, sel, test, val, test_ci,
                             "probability", model, fit_seconds, threads, seed, d)
        write_run(ArtifactPaths(out_dir).run(path.stem, name), persist.model(model), result,
                  es.class_names, es.task, es.ids[es.mask("test")], y_te, pred, scores)
    return result


def _fit(opts: LogregOptions, device: str, blocks: H5Blocks, C: float, init=None,
         normalizer=None, loose: bool = False):
    """One streamed fit under the active thread controller (its progress bar counts it);
    ``loose``: at the path search's loose tolerance."""
    unit = SimpleNamespace(n_iter_=0)    # what fit_scope reads the solver's iterations from
    with fit_scope(unit):
        model = fit_streamed(blocks, C, normalize=opts.normalize, max_iter=opts.max_iter,
                             class_weight=opts.class_weight, device=device, init=init,
                             normalizer=normalizer,
                             **fit_settings(opts.tol, loose, TorchLogisticRegression))
        unit.n_iter_ = model.named_steps["probe"].n_iter_
    return model


def _select(spec: ProbeSpec, opts: LogregOptions, device: str, blocks: dict, n_classes: int
            ) -> tuple[Selection, dict]:
    """The val-split search of :func:`.selection.select` (its :func:`.selection.run_search`),
    each fit and score streamed; also returns the fitted pipelines by C (the refit
    warm-starts from the chosen one)."""
    t0 = time.perf_counter()
    norm = fit_normalizer(opts.normalize, blocks["train"])   # one pass, shared by every C
    score_fn = SCORERS[opts.selection_metric]
    fitted, results, n_iter = {}, {}, 0

    def evaluate(values: list, loose: bool = False) -> None:
        nonlocal n_iter
        for v in values:
            near = min(fitted, key=lambda u: abs(np.log(u) - np.log(v))) if fitted else None
            fitted[v] = _fit(opts, device, blocks["train"], v, fitted.get(near), norm, loose)
            n_iter += int(np.max(fitted[v].named_steps["probe"].n_iter_))
            s, y_va = score_streamed(fitted[v], blocks["val"], n_classes)
            results[v] = (score_fn(y_va, s), s, y_va)

    search = run_search(opts, spec.log_scale, evaluate, results)
    best, curve = choose(results, spec.param)
    sel = Selection("val", search, spec.param, best, curve, results[best][2], results[best][1],
                    len(results), n_iter, time.perf_counter() - t0)
    return sel, fitted


@contextmanager
def _torchrun_group(device: str) -> Iterator[tuple[int, int, str]]:
    """(rank, world, device): under torchrun (WORLD_SIZE >= 2) a process group for the
    all-reduces of the streamed fits, gloo for CPU tensors (nccl for CUDA ones, each rank on
    cuda:LOCAL_RANK), destroyed on exit; (0, 1, device) otherwise."""
    world = torchrun_world()
    if world < 2:
        yield 0, 1, device
        return
    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    backend = "gloo"
    if torch_device(device).type == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        yield rank, world, device
        dist.barrier()           # rank 0's artifacts are written before any rank returns
    finally:
        dist.destroy_process_group()


def _dim(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["embeddings"].shape[1])


def _check(es: EmbeddingSet, path: Path) -> None:
    """The file checks of the in-memory path that need no matrix, and a val split."""
    C = len(es.class_names)
    if es.task != "multiclass" or C < 2:
        raise ValueError(f"{path}: a streamed logreg needs a multiclass file with 2 or more "
                         f"class_names; got task {es.task!r} with {C} classes")
    if es.labels.ndim != 1 or (len(es.labels) and (es.labels.min() < 0 or es.labels.max() >= C)):
        raise ValueError(f"{path}: 'labels' must be (N,) class indices in [0, {C - 1}]")
    for split in ("train", "val", "test"):
        if not es.mask(split).any():
            fix = ("chunk_mb selects C on the val split: extract with a val split, or remove "
                   "chunk_mb to hold out part of train in memory") if split == "val" else \
                "a probe needs train and test splits"
            raise ValueError(f"{path} has no '{split}' samples; {fix}")
