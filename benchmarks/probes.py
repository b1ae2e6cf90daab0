"""Benchmark: linprobe's C sweep vs the naive CLIP-style sweep, side by side in one run.

Data: the full Fashion-MNIST train set (60k) and its 10k test set. Features are either a real
embeddings file (``--embeddings FILE.h5``, e.g. EfficientNet-Lite0 features; its train+val rows
are pooled and re-split here) or, by default, a seeded random ReLU projection of the raw 28x28
pixels to ``--dim`` (1280) dimensions, standing in for backbone features of the same shape.

Both sweeps hold out the same stratified val split of train, standardise with the fit split's
statistics, fit sklearn's L-BFGS LogisticRegression with the same tol and max_iter, and choose C
by val accuracy:

- naive: ``--naive-points`` (96) log-spaced C in [1e-6, 1e6], each fit from scratch (CLIP).
- linprobe: ``linprobe.models.selection.select`` with a coarse grid (one point per 2 decades over
  the same range) refined by log-space bisection around the best C, each fit warm-started from
  the nearest C already fitted.

``--naive-stride s`` fits only every s-th naive point and scales its time up (flagged
``seconds_is_estimate``) for machines where 96 full fits do not fit in the time at hand.
Finally linprobe's chosen C is refit on train+val and scored on test once.

    python benchmarks/probes.py                     # full size (slow on 2 cores)
    python benchmarks/probes.py --n-train 10000 --dim 512 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from linprobe.models.options import LogregOptions, resolve_options
from linprobe.models.probes import get_probe
from linprobe.models.selection import n_iterations, select
from linprobe.features.fashion_mnist import load_split

PIXEL_LOGREG_PAPER = 0.842   # Xiao et al. 2017, Table 3: LogisticRegression on raw pixels


def load(args: argparse.Namespace):
    """(X_train (n, D) float32, y_train (n,), X_test, y_test, description)."""
    if args.embeddings:
        from linprobe.features.store import read_embeddings
        es = read_embeddings(args.embeddings)
        tr = es.mask("train") | es.mask("val")
        X_te, y_te, _ = es.subset("test")
        return es.embeddings[tr], es.labels[tr], X_te, y_te, \
            f"{args.embeddings} ({es.attrs.get('backbone')})"
    Xtr, ytr = load_split("train")
    Xte, yte = load_split("test")
    Xtr, Xte = Xtr.reshape(len(Xtr), -1), Xte.reshape(len(Xte), -1)
    if args.n_train < 60000:
        Xtr, _, ytr, _ = train_test_split(Xtr, ytr, train_size=args.n_train, stratify=ytr,
                                          random_state=0)
    if args.dim == 0:
        return Xtr.astype(np.float32) / 255, ytr, Xte.astype(np.float32) / 255, yte, "raw pixels"
    W = (np.random.default_rng(0).normal(size=(784, args.dim)) / 28.0).astype(np.float32)

    def proj(X: np.ndarray) -> np.ndarray:
        return np.maximum((X.astype(np.float32) / 255) @ W, 0)
    return proj(Xtr), ytr, proj(Xte), yte, f"random ReLU projection of pixels to {args.dim}-d"


def naive_sweep(Xs, y, Xv, yv, Cs, args) -> dict:
    """Cold fits over Cs; val accuracy of the best."""
    t0, curve, iters = time.perf_counter(), [], 0
    for C in Cs:
        clf = LogisticRegression(C=C, max_iter=args.max_iter, tol=args.tol).fit(Xs, y)
        curve.append(float(np.mean(clf.predict(Xv) == yv)))
        iters += n_iterations(clf)
    best = int(np.argmax(curve))
    return {"seconds": time.perf_counter() - t0, "fits": len(Cs), "n_iter": iters,
            "best_C": float(Cs[best]), "val_accuracy": curve[best]}


def summary(sel) -> dict:
    """Time, fits, iterations, chosen C and best val accuracy of a selection."""
    return {"seconds": sel.seconds, "fits": sel.n_fits, "n_iter": sel.n_iter, "best_C": sel.value,
            "val_accuracy": max(p["score"] for p in sel.curve if p["score"] is not None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", help="real features (HDF5 with train/val/test splits)")
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--dim", type=int, default=1280, help="0 = raw pixels")
    ap.add_argument("--val-fraction", type=float, default=1 / 6)
    ap.add_argument("--naive-points", type=int, default=96)
    ap.add_argument("--naive-stride", type=int, default=1)
    ap.add_argument("--refine-steps", type=int, default=6)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    ap.add_argument("--torch", action="store_true",
                    help="also run linprobe's sweep with the torch L-BFGS solver (GPU if present)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)

    with threadpool_limits(args.threads):
        X, y, X_test, y_test, desc = load(args)
        is_val = np.zeros(len(y), bool)
        _, val_idx = train_test_split(np.arange(len(y)), test_size=args.val_fraction,
                                      stratify=y, random_state=0)
        is_val[val_idx] = True
        print(f"features: {desc}; train {int((~is_val).sum())}, val {int(is_val.sum())}, "
              f"test {len(y_test)}, D={X.shape[1]}, dtype {X.dtype}", flush=True)

        spec = get_probe("logreg")
        opts = resolve_options(LogregOptions(grid=[10.0 ** e for e in range(-6, 7, 2)],
                                             search="refine", refine_steps=args.refine_steps,
                                             max_iter=args.max_iter, tol=args.tol),
                               "multiclass", [str(c) for c in range(10)])
        sel = select(spec, opts, 0, X, y, is_val, 10)
        ours = summary(sel)
        print("linprobe sweep:", json.dumps(ours), flush=True)
        torch_sweep = None
        if args.torch:
            import torch
            if args.threads:
                torch.set_num_threads(args.threads)
            tsel = select(spec, dataclasses.replace(opts, solver="torch"), 0, X, y, is_val, 10)
            torch_sweep = {**summary(tsel), "device": "cuda" if torch.cuda.is_available() else "cpu"}
            print("linprobe sweep, torch solver:", json.dumps(torch_sweep), flush=True)

        sc = StandardScaler().fit(X[~is_val])
        Xs, Xv = sc.transform(X[~is_val]), sc.transform(X[is_val])
        Cs = np.logspace(-6, 6, args.naive_points)
        naive = naive_sweep(Xs, y[~is_val], Xv, y[is_val], Cs[::args.naive_stride], args)
        if args.naive_stride > 1:
            naive["seconds_measured"] = naive["seconds"]
            naive["seconds"] *= len(Cs) / naive["fits"]
            naive["seconds_is_estimate"] = True
        print("naive sweep:", json.dumps(naive), flush=True)
        del Xs, Xv

        t0 = time.perf_counter()
        sc = StandardScaler().fit(X)
        clf = LogisticRegression(C=sel.value, max_iter=args.max_iter, tol=args.tol)
        clf.fit(sc.transform(X), y)
        test_acc = float(np.mean(clf.predict(sc.transform(X_test)) == y_test))
        refit = time.perf_counter() - t0

    result = {"features": desc, "n_train": int((~is_val).sum()), "n_val": int(is_val.sum()),
              "dim": int(X.shape[1]), "linprobe": ours, "linprobe_torch": torch_sweep,
              "naive": naive,
              "speedup": naive["seconds"] / ours["seconds"],
              "val_accuracy_diff": ours["val_accuracy"] - naive["val_accuracy"],
              "test_accuracy": test_acc, "refit_seconds": refit,
              "paper_raw_pixel_logreg": PIXEL_LOGREG_PAPER}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
