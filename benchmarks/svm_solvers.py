"""Benchmark: the ``linear_svm`` probe with solver sklearn (liblinear) vs torch (L-BFGS, warm
starts along the C path), side by side in one run, with ``logreg`` (sklearn lbfgs) for reference.

Each row is a full ``linprobe.models.train.train_probe`` run on an embeddings file (default
grid, selection on val, refit on train+val, test once; no few-shot curve, 100 bootstrap
resamples) and reports the sweep and refit seconds, the chosen C and val/test accuracy, so a
solver that changes the result shows it next to its time.

    python benchmarks/svm_solvers.py /tmp/svm-lite0.h5 /tmp/svm-r18.h5 --threads 2 \\
        --out benchmarks/results/svm-solvers-demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from threadpoolctl import threadpool_limits

RUNS = [("logreg", {"solver": "sklearn"}), ("logreg", {"solver": "torch", "device": "cpu"}),
        ("linear_svm", {"solver": "sklearn"}),
        ("linear_svm", {"solver": "torch", "device": "cpu"})]


def run(path: Path, probe: str, options: dict) -> dict:
    from linprobe.models.train import train_probe

    with tempfile.TemporaryDirectory() as out:
        r = train_probe(path, probe, out, options={**options, "few_shot": False, "n_boot": 100})
    sel = r["selection"]
    return {"embeddings": str(path), "probe": probe, "solver": options["solver"],
            "sweep_seconds": sel["seconds"], "refit_seconds": r["fit_seconds"],
            "total_seconds": round(sel["seconds"] + r["fit_seconds"], 3),
            "n_fits": sel["n_fits"], "n_iter": sel["n_iter"], "C": sel["params"]["C"],
            "val_accuracy": r["val"]["accuracy"], "test_accuracy": r["test"]["accuracy"],
            "converged": r["converged"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("embeddings", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(limits=args.threads):
        for path in args.embeddings:
            for probe, options in RUNS:
                rows.append(run(path, probe, options))
                print(json.dumps(rows[-1]), flush=True)
    result = {"threads": args.threads, "cpu_count": os.cpu_count(), "machine": platform.node(),
              "torch": torch.__version__, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
