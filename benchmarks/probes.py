"""Benchmark: every linprobe probe protocol, its few-shot curves and test intervals, and
CLIP_benchmark's linear probe, side by side in one run, each next to its hardware floor.

Rows (``--rows``; all by default):

- ``logreg-sklearn`` / ``logreg-torch`` / ``linear_svm`` / ``ovr_logreg``: ``train_probe`` with
  the probe's defaults (``logreg`` once per solver): selection on val + refit on train+val,
  test scored once. seconds = selection + refit, as the metrics record them.
- ``few-shot``: the train stage's few-shot curves (default k and seeds) for ``logreg`` at the C
  the default-solver logreg row chose; ``few-shot-per-model`` scores each fit separately (the
  previous way; same numbers).
- ``bootstrap``: the train stage's test intervals (accuracy, balanced accuracy, macro F1,
  1000 resamples) of that row's predictions, vectorised; ``bootstrap-loop``: one metric call
  per resample (the previous way; same intervals).
- ``clip-default`` / ``clip-search``: CLIP_benchmark's own training code (``clip_probe.py``)
  on the same features, one torch thread: its default head (10 epochs, no weight decay) and its
  weight-decay sweep (20 trainings). Skipped with a note when ``clip-benchmark`` is missing.

Next to each time: the passes over the train+val embeddings its solvers made (``roofline.py``:
torch solvers' ``n_passes_``, sklearn lbfgs' loss-and-gradient calls, CLIP's epochs) and the
floor for those passes on this machine, max(bytes / measured bandwidth, FLOP / measured
matmul rate), measured in the same run under the same thread limit.

    python benchmarks/probes.py --quick --out /tmp/probes-quick.json         # seconds
    python benchmarks/probes.py --threads 2 --embeddings /work/data/fmnist-lite0-112.h5 \\
        --out benchmarks/results/probes-60k-lite0-roofline.json              # ~30 min
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import roofline  # noqa: E402

from linprobe.features.store import read_embeddings  # noqa: E402
from linprobe.models import metrics as M  # noqa: E402
from linprobe.models.fewshot import few_shot_curve  # noqa: E402
from linprobe.models.options import LogregOptions, resolve_options  # noqa: E402
from linprobe.models.probes import assemble, get_probe, make_normalizer  # noqa: E402
from linprobe.models.selection import SCORERS  # noqa: E402
from linprobe.models.runfiles import CI_METRICS  # noqa: E402
from linprobe.models.train import train_probe  # noqa: E402
from linprobe.models.uncertainty import bootstrap_ci, bootstrap_cis_weighted  # noqa: E402
from linprobe.schema import ArtifactPaths  # noqa: E402

PROBE_ROWS = {"logreg-sklearn": ("logreg", {"solver": "sklearn"}),
              "logreg-torch": ("logreg", {"solver": "torch"}),
              "linear_svm": ("linear_svm", {}), "ovr_logreg": ("ovr_logreg", {})}
ROWS = [*PROBE_ROWS, "few-shot", "few-shot-per-model", "bootstrap", "bootstrap-loop",
        "clip-default", "clip-search"]
QUICK = {"train": 3000, "val": 600, "test": 1000}
ROW_METRICS = {"accuracy": lambda y, p: float(np.mean(y == p)),      # the per-resample metrics
               "balanced_accuracy": M.balanced_accuracy, "macro_f1": M.macro_f1}


def subsample(src: Path, dst: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """Copy of the embeddings file src with a seeded random ``sizes[split]`` rows per split."""
    es = read_embeddings(src, load_embeddings=False)
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(es.mask(s)))[:n]
                                   for s, n in sizes.items()]))
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for name in ("embeddings", "ids", "labels", "split"):
            g.create_dataset(name, data=f[name][keep])
        g.attrs.update(dict(f.attrs))
    return dst


def probe_row(path: Path, probe: str, options: dict, out_dir: Path, hw: dict, full_bytes: float):
    with roofline.count_passes() as passes:
        t0 = time.perf_counter()
        m = train_probe(path, probe, out_dir, options={**options, "few_shot": False}, name=probe
                        + "-" + options.get("solver", "default"))
        wall = time.perf_counter() - t0
    return {"seconds": m["selection"]["seconds"] + m["fit_seconds"],
            "selection_s": m["selection"]["seconds"], "refit_s": m["fit_seconds"], "wall_s": wall,
            **passes.row(full_bytes, hw), "val_accuracy": m["val"]["accuracy"],
            "test_accuracy": m["test"]["accuracy"], "C": m["selection"]["params"]["C"],
            "solver": m["solver"], "n_fits": m["selection"]["n_fits"], "metrics": m}


def few_shot_row(es, C: float, batched: bool, hw: dict, full_bytes: float) -> dict:
    """The train stage's few-shot call (models/train.py), timed."""
    spec, opts = get_probe("logreg"), resolve_options(LogregOptions(), "multiclass", es.class_names)
    tr = es.mask("train")
    X_te, y_te, _ = es.subset("test")
    n_classes = len(es.class_names)
    with roofline.count_passes() as passes:
        t0 = time.perf_counter()
        fs = few_shot_curve(
            lambda: assemble(make_normalizer(opts.normalize), spec.build(C, opts, 0)),
            es.embeddings, es.labels[tr], X_te, y_te, train_rows=np.flatnonzero(tr),
            ks=list(opts.few_shot.k), seeds=opts.few_shot.seeds,
            score=lambda m, X, y: SCORERS["accuracy"](y, M.full_scores(m, X, n_classes)[0]),
            metric="accuracy", batched=batched)
        seconds = time.perf_counter() - t0
    n_models = len(fs["k"]) * fs["seeds"]
    # Test scoring: one pass over X_te for all models (batched), else one per model.
    passes.add(1 if batched else n_models, X_te, n_classes * (n_models if batched else 1))
    return {"seconds": seconds, **passes.row(full_bytes, hw), "fits": n_models,
            "test_accuracy": fs["mean"][-1], "curve": {"k": fs["k"], "mean": fs["mean"]}}


def bootstrap_row(y: np.ndarray, pred: np.ndarray, loop: bool, n_boot: int = 1000) -> dict:
    t0 = time.perf_counter()
    if loop:
        ci = {k: bootstrap_ci(f, y, pred, n_boot=n_boot, seed=0) for k, f in ROW_METRICS.items()}
    else:
        ci = bootstrap_cis_weighted({k: f(y, pred) for k, f in CI_METRICS["multiclass"].items()},
                                    len(y), n_boot=n_boot, seed=0)     # as models/train.py
    return {"seconds": time.perf_counter() - t0, "passes": 0.0, "floor_s": 0.0, "ci": ci}


def clip_row(es, search: bool, hw: dict, full_bytes: float, epochs: int) -> dict:
    try:
        import clip_probe
        import clip_benchmark  # noqa: F401
    except ImportError as e:
        return {"skipped": f"clip-benchmark not installed ({e}); pip install 'linprobe[clipbench]'"}
    splits = {s: es.subset(s)[:2] for s in ("train", "val", "test")}
    r = clip_probe.run(splits, search=search, epochs=epochs)
    nbytes = r["rows_streamed"] * es.embeddings.shape[1] * es.embeddings.dtype.itemsize
    floor = max(nbytes / (hw["bandwidth_GBps"] * 1e9), r["flop"] / (hw["matmul_GFLOPs"] * 1e9))
    return {**r, "passes": nbytes / full_bytes, "floor_s": floor, "threads": 1}


def fmt(v, spec: str) -> str:
    """format(v, spec), or a right-aligned '-' of the same width for a missing value."""
    return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", default="/work/data/fmnist-lite0-112.h5")
    ap.add_argument("--quick", action="store_true",
                    help=f"a seeded subsample {QUICK} of the file (proves the script works)")
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=ROWS)
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS and torch threads of the linprobe rows (CLIP rows: always 1)")
    ap.add_argument("--clip-epochs", type=int, default=10, help="CLIP_benchmark's default: 10")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="linprobe-bench-"))
    path = Path(args.embeddings)
    if args.quick:
        path = subsample(path, tmp / path.name, QUICK)
    rows: dict[str, dict] = {}
    with threadpool_limits(args.threads):
        es = read_embeddings(path)
        tv = es.mask("train") | es.mask("val")
        X_tv = es.embeddings[tv]
        hw = roofline.measure(X_tv)
        full_bytes = float(X_tv.nbytes)
        del X_tv
        print(f"{path} ({es.attrs.get('backbone')}): {int(tv.sum())} train+val x "
              f"{es.embeddings.shape[1]}, {full_bytes / 1e6:.0f} MB; bandwidth "
              f"{hw['bandwidth_GBps']:.1f} GB/s, matmul {hw['matmul_GFLOPs']:.0f} GFLOP/s, "
              f"threads {args.threads or os.cpu_count()}", flush=True)

        def report(name: str, row: dict) -> None:
            rows[name] = row
            print(f"{name}: " + json.dumps({k: v for k, v in row.items()
                                            if k not in ("metrics", "curve", "ci")}), flush=True)

        for name, (probe, options) in PROBE_ROWS.items():
            if name in args.rows:
                report(name, probe_row(path, probe, options, tmp / "out", hw, full_bytes))
        main_row = next((rows[n] for n in ("logreg-torch", "logreg-sklearn") if n in rows), None)
        default_solver = LogregOptions().solver
        main_row = rows.get(f"logreg-{default_solver}", main_row)
        if main_row is None and ({"few-shot", "few-shot-per-model", "bootstrap",
                                  "bootstrap-loop"} & set(args.rows)):
            sys.exit("few-shot and bootstrap rows need a logreg row (its C and predictions)")
        for name, batched in (("few-shot", True), ("few-shot-per-model", False)):
            if name in args.rows:
                report(name, few_shot_row(es, main_row["C"], batched, hw, full_bytes))
        if {"bootstrap", "bootstrap-loop"} & set(args.rows):
            m = main_row["metrics"]
            scores = np.load(ArtifactPaths(tmp / "out").run(path.stem, m["probe"])["scores"])
            y_te = es.labels[es.mask("test")]
            for name, loop in (("bootstrap", False), ("bootstrap-loop", True)):
                if name in args.rows:
                    report(name, bootstrap_row(y_te, np.argmax(scores, axis=1), loop))
    for name, search in (("clip-default", False), ("clip-search", True)):
        if name in args.rows:
            report(name, clip_row(es, search, hw, full_bytes, args.clip_epochs))

    if main_row is not None:
        extra = sum(rows[n]["seconds"] for n in ("few-shot", "bootstrap") if n in rows)
        main_row["few_shot_and_bootstrap_fraction"] = extra / main_row["seconds"]
    if "bootstrap" in rows and "bootstrap-loop" in rows:
        rows["bootstrap"]["same_as_loop"] = bool(all(
            np.allclose(rows["bootstrap"]["ci"][k], rows["bootstrap-loop"]["ci"][k], rtol=0,
                        atol=1e-12) for k in ROW_METRICS))
    print(f"\n{'row':<20}{'seconds':>9}{'passes':>9}{'floor s':>9}{'x floor':>9}"
          f"{'val':>8}{'test':>8}")
    for name, r in rows.items():
        if "skipped" in r:
            print(f"{name:<20}  skipped: {r['skipped']}")
            continue
        ratio = r["seconds"] / r["floor_s"] if r.get("floor_s") else None
        print(f"{name:<20}{r['seconds']:9.2f}{fmt(r.get('passes'), '9.1f')}"
              f"{fmt(r.get('floor_s'), '9.3f')}{fmt(ratio, '9.0f')}"
              f"{fmt(r.get('val_accuracy'), '8.4f')}{fmt(r.get('test_accuracy'), '8.4f')}")
    if main_row is not None and "few_shot_and_bootstrap_fraction" in main_row:
        print(f"few-shot + bootstrap = {100 * main_row['few_shot_and_bootstrap_fraction']:.1f}% "
              f"of the main logreg fit ({main_row['solver']})")
    for r in rows.values():
        r.pop("metrics", None)
    result = {"embeddings": str(args.embeddings), "quick": args.quick,
              "backbone": es.attrs.get("backbone"), "n": {s: int(es.mask(s).sum())
                                                         for s in ("train", "val", "test")},
              "dim": int(es.embeddings.shape[1]), "threads": args.threads or os.cpu_count(),
              "hardware": hw, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
