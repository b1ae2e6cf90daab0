"""Throughput on a busy machine (issue 13): extraction end-to-end, a logreg selection sweep and
a fine-tune epoch, each with linprobe's default (``threads: auto``), 1 thread and all available cores, side by
side, on a quiet machine and next to 1 and 2 busy processes that this script starts itself.

A busy process is a pure-Python spin loop (one core's worth of demand, like a single-threaded
job), bounded by its own deadline and killed in a ``finally`` and at exit. Within each load the
modes run interleaved, ``--repeats`` times, and the medians are reported; ``auto / best`` is the
default's rate over the best fixed count's under the same load, ``auto / before`` over
linprobe's speed before ``threads`` existed (the ``before`` column).

Fixed counts run under linprobe's scoping (``linprobe.threads.limit_threads``: torch, OpenMP
and numpy's BLAS on that many threads, any other BLAS pool on 1). 'before' is a sweep without
any thread control: every pool at its library default (all cores), as every fit ran before
``threads`` existed. For extraction and fine-tuning that equals the all-cores column (torch's
default, decoding on as many threads), which stands for it.

    python benchmarks/contention.py --quick            # a minute: proves the script works
    python benchmarks/contention.py                    # the issue's sizes (several minutes)
    python benchmarks/contention.py --omp-wait-policy passive   # libgomp threads sleep, not spin

Extraction: ``--images`` Fashion-MNIST PNGs (/work/data/fmnist-full, else the bundled demo
folder) through ``--backbone`` at ``--image-size`` px. Sweeps: ``select`` over a C grid for
logreg on a seeded sample of ``--rows`` x D embeddings (all classes) from ``--embeddings`` (read
only), else on synthetic class-structured data of the same shape: ``sweep`` with linprobe's
default solver (torch L-BFGS, path search over ``--grid`` values), ``sweep-sklearn`` with the
sklearn lbfgs reference (``--sklearn-grid`` values). Fine-tune: one epoch of the ``scratch``
arm of ``--backbone`` on the same folder's train split (the training batches' img/s).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from linprobe.cpus import available_cores

REPO = Path(__file__).resolve().parents[1]
# Sweep tasks -> the logreg solver they run: linprobe's default, and the sklearn reference
# (``solver: sklearn``; its BLAS pools are the ones the issue measured 11x slower when busy).
SOLVERS = {"sweep": "torch", "sweep-sklearn": "sklearn"}
SETTLE_S = 1.0   # pause between runs
SPIN = ("import time\nend = time.monotonic() + {limit}\n"
        "while time.monotonic() < end:\n    pass\n")
_CHILDREN: list[subprocess.Popen] = []


def _stop_all() -> None:
    for p in _CHILDREN:
        if p.poll() is None:
            p.kill()
            p.wait()
    _CHILDREN.clear()


atexit.register(_stop_all)


def start_busy(n: int, limit: float) -> list[subprocess.Popen]:
    """``n`` spin-loop processes, each ending itself after ``limit`` s at the latest."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN.format(limit=limit)]) for _ in range(n)]
    _CHILDREN.extend(procs)
    time.sleep(0.5)  # let the scheduler see them before anything is measured
    return procs


def image_folder(n: int, out: Path) -> Path:
    """A train/val/test folder of ``n`` images (copied: the source is never written)."""
    src = Path("/work/data/fmnist-full/train")
    if not src.is_dir():
        src = REPO / "data" / "fashion-mnist-demo" / "train"
    classes = sorted(d for d in src.iterdir() if d.is_dir())
    per = -(-n // len(classes))
    for c in classes:
        files = sorted(c.iterdir())[:per]
        for i, f in enumerate(files):
            split = "test" if i % 10 == 0 else "val" if i % 10 == 1 else "train"
            dst = out / split / c.name
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / f.name)
    return out


def embeddings(path: Path | None, rows: int, dim: int, seed: int = 0):
    """(X (rows, D) float32, y (rows,), is_val (rows,) bool, n_classes, source)."""
    if path is not None and path.is_file():
        from linprobe.features.store import read_embeddings

        es = read_embeddings(path)
        # A seeded sample of all train+val rows: files are often stored class by class, so the
        # first rows would be a problem with two classes instead of all of them.
        pool = np.flatnonzero(es.mask("train") | es.mask("val"))
        keep = np.sort(np.random.default_rng(seed).permutation(pool)[:rows])
        return (np.ascontiguousarray(es.embeddings[keep], dtype=np.float32), es.labels[keep],
                es.mask("val")[keep], len(es.class_names), str(path))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, rows)
    X = (rng.normal(size=(rows, dim)) + 0.3 * rng.normal(size=(10, dim))[y]).astype(np.float32)
    return X, y, np.arange(rows) % 10 == 0, 10, f"synthetic {rows}x{dim}"


def run_extract(folder: Path, tmp: Path, args, threads) -> dict:
    from linprobe.features.extract import extract_embeddings
    from linprobe.features.store import read_embeddings

    out = tmp / f"e-{time.monotonic_ns()}.h5"
    extract_embeddings(args.backbone, folder, out, image_size=args.image_size,
                       batch_size=args.batch_size, threads=threads, progress=False)
    a = read_embeddings(out).attrs
    out.unlink()
    return {"rate": a["images_per_s"], "unit": "img/s", "threads": a["threads"]}


def run_finetune(folder: Path, tmp: Path, args, threads) -> dict:
    """One epoch of the ``scratch`` arm of ``--backbone`` on the image folder's train split
    (one lr); the rate is the training batches' (images/s, val and test scoring left out)."""
    from linprobe.features.config import ExtractConfig
    from linprobe.finetune.config import FinetuneConfig
    from linprobe.finetune.run import finetune_arm

    cfg = FinetuneConfig(epochs=1, lrs=(1e-3,), batch_size=args.batch_size, warmup_epochs=0,
                         threads=threads)
    out = tmp / f"ft-{time.monotonic_ns()}"
    m = finetune_arm(folder, args.backbone, "scratch", out, cfg, progress=False,
                     extract=ExtractConfig(image_size=args.image_size, device="cpu"))
    shutil.rmtree(out)
    return {"rate": m["train_cost"]["images_per_s"], "unit": "img/s", "threads": m["threads"]}


def run_sweep(data, args, threads, solver: str = "torch") -> dict:
    from linprobe.models.options import LogregOptions, resolve_options
    from linprobe.models.probes import get_probe
    from linprobe.models.selection import select
    from linprobe.threads import ThreadController, fit_threads

    X, y, is_val, C, _ = data
    spec = get_probe("logreg", "multiclass")
    # sklearn's fits take seconds each: its sweep spans the C this data chooses (0.003-0.01)
    grid = (np.logspace(-3, 1, args.grid) if solver == "torch"
            else np.logspace(-3, -2, args.sklearn_grid))
    opts = resolve_options(LogregOptions(grid=tuple(grid), solver=solver,
                                         few_shot=None,
                                         threads="auto" if threads == "before" else threads),
                           "multiclass", [str(k) for k in range(C)])
    ctl = ThreadController(1 if threads == "before" else threads, unit="it")
    t0 = time.perf_counter()
    with fit_threads(ctl) if threads != "before" else nullcontext():
        sel = select(spec, opts, 0, X, y, is_val, C)
    seconds = time.perf_counter() - t0
    return {"rate": sel.n_fits / seconds, "unit": "fits/s", "seconds": seconds,
            "threads": ctl.record() if threads != "before" else {"used": "library defaults"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 repeat")
    ap.add_argument("--loads", default="0,1,2", help="busy processes per load, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backbone", default="torchvision:resnet18:none")
    ap.add_argument("--embeddings", type=Path, default=Path("/work/data/fmnist-lite0-112.h5"))
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=1280, help="synthetic data only")
    ap.add_argument("--grid", type=int, default=7, help="C values in the sweep")
    ap.add_argument("--sklearn-grid", type=int, default=2,
                    help="C values in the sklearn-solver sweep, 1e-3..1e-2 (fits take seconds)")
    ap.add_argument("--tasks", default="extract,sweep,sweep-sklearn,finetune")
    ap.add_argument("--json", type=Path, default=None,
                    help="default: benchmarks/results/contention-<date>.json")
    ap.add_argument("--omp-wait-policy", choices=("active", "passive"), default=None,
                    help="set OMP_WAIT_POLICY before torch loads (default: libgomp's own)")
    args = ap.parse_args()
    if args.omp_wait_policy:
        # Read once, when libgomp starts: torch is imported only inside the runs below.
        assert "torch" not in sys.modules
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    if args.quick:
        args.images, args.rows, args.grid, args.sklearn_grid, args.repeats = 96, 2000, 4, 2, 1
        args.batch_size, args.image_size = 16, 64
    cores = available_cores()
    # 'before': a sweep without linprobe's thread control, every pool at its library default
    # (all cores; for extraction the same as the all-cores column, so not run twice).
    modes: list = ["auto", 1] + ([cores] if cores > 1 else []) + ["before"]
    loads = [int(v) for v in args.loads.split(",")]
    tasks = args.tasks.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="contention-"))
    results: list[dict] = []
    try:
        folder = (image_folder(args.images, tmp / "images")
                  if {"extract", "finetune"} & set(tasks) else None)
        data = (embeddings(args.embeddings, args.rows, args.dim)
                if set(tasks) & set(SOLVERS) else None)
        # One unrecorded run of each first: one-off costs (oneDNN kernels, allocator, page
        # cache) would otherwise land on whichever mode runs first.
        if "extract" in tasks:
            run_extract(folder, tmp, args, 1)
        if "finetune" in tasks:
            run_finetune(folder, tmp, args, 1)
        for task in tasks:
            if task in SOLVERS:
                run_sweep(data, args, 1, SOLVERS[task])
        for load in loads:
            busy = start_busy(load, limit=3600)
            try:
                for rep in range(args.repeats):
                    for task in tasks:
                        # Rotated per repeat: no mode always runs first after a load change.
                        for mode in modes[rep % len(modes):] + modes[:rep % len(modes)]:
                            if mode == "before" and task in IMAGE_TASKS:
                                continue
                            # The last run's idle pool workers spin on for a while (library
                            # defaults: 2 OpenBLAS pools); a pause keeps them out of this run's
                            # first reading of the free cores, which would count them as ours.
                            time.sleep(SETTLE_S)
                            r = (IMAGE_TASKS[task](folder, tmp, args, mode) if task in IMAGE_TASKS
                                 else run_sweep(data, args, mode, SOLVERS[task]))
                            results.append({"load": load, "task": task, "mode": str(mode),
                                            "repeat": rep, **r})
                            print(f"busy={load} {task:7s} threads={mode!s:4s} "
                                  f"{r['rate']:8.2f} {r['unit']}  used={r['threads']['used']}",
                                  file=sys.stderr, flush=True)
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
    finally:
        _stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    table = summarise(results, loads, tasks, modes)
    out = args.json or REPO / "benchmarks" / "results" / (
        f"contention-{datetime.now(timezone.utc):%Y%m%d-%H%M}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "cores": cores, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "args": {k: str(v) for k, v in vars(args).items()},
               "sweep_data": data[4] if data else None, "table": table, "runs": results}
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(payload, indent=1))
    tmp_out.replace(out)
    print(f"written {out}", file=sys.stderr)


def summarise(results: list[dict], loads: list[int], tasks: list[str], modes: list) -> list[dict]:
    """Median rate per (task, load, mode), auto / best fixed count, auto / before, and print the
    table ('before' for extraction: the all-cores column)."""
    rows = []
    names = [str(m) for m in modes]
    fixed = [n for n in names if n not in ("auto", "before")]
    head = " ".join(f"{'threads=' + n:>15s}" for n in names)
    print(f"\n{'task':14s} {'busy':>4s} {head} {'auto/best':>10s} {'auto/before':>12s}")
    for task in tasks:
        for load in loads:
            med = {n: statistics.median(rs) for n in names
                   if (rs := [r["rate"] for r in results if r["task"] == task
                              and r["load"] == load and r["mode"] == n])}
            before = med.get("before", med[fixed[-1]])
            best = max(med[n] for n in fixed)
            ratio = med["auto"] / best if best > 0 else None
            unit = next(r["unit"] for r in results if r["task"] == task)
            rows.append({"task": task, "load": load, "unit": unit, **med, "auto_over_best": ratio,
                         "auto_over_before": med["auto"] / before if before > 0 else None})
            cells = " ".join(f"{med[n]:15.2f}" if n in med else f"{'(= ' + fixed[-1] + ')':>15s}"
                             for n in names)
            print(f"{task:14s} {load:4d} {cells} {ratio:10.2f} {rows[-1]['auto_over_before']:12.2f}"
                  f"  {unit}")
    return rows


# Tasks on the image folder; their 'before' is torch's default (all cores): the all-cores column.
IMAGE_TASKS = {"extract": run_extract, "finetune": run_finetune}

if __name__ == "__main__":
    main()
