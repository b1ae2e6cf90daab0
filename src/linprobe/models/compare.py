"""Is backbone/probe A better than B? A paired bootstrap over two runs' test predictions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .uncertainty import paired_bootstrap


def read_correct(path: str | Path) -> dict[str, int]:
    """{sample id: 1 if predicted == actual else 0} from a predictions CSV.

    For multilabel CSVs this is exact-set correctness (the per-sample form of subset accuracy).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist; run `linprobe train` first")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"id", "actual", "predicted"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} lacks column(s) {sorted(missing)}; expected id,actual,predicted,score")
        return {r["id"]: int(r["actual"] == r["predicted"]) for r in reader}


def compare_runs(predictions_a: str | Path, predictions_b: str | Path, *, n_boot: int = 2000,
                 seed: int = 0, alpha: float = 0.05) -> dict:
    """Paired bootstrap of per-sample correctness of run A minus run B.

    Both CSVs must cover the same test ids (any order). Returns :func:`paired_bootstrap`'s dict
    plus "accuracy_a", "accuracy_b".
    """
    a, b = read_correct(predictions_a), read_correct(predictions_b)
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys())[:3], sorted(b.keys() - a.keys())[:3]
        raise ValueError(f"{predictions_a} and {predictions_b} are not on the same test set "
                         f"(ids only in A e.g. {only_a}, only in B e.g. {only_b}); a paired "
                         "comparison needs both runs on the same embeddings' test split")
    ids = sorted(a)
    ca = np.array([a[i] for i in ids])
    cb = np.array([b[i] for i in ids])
    out = paired_bootstrap(ca, cb, n_boot=n_boot, seed=seed, alpha=alpha)
    return {**out, "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean())}
