"""Is backbone/probe A better than B? A paired bootstrap over two runs' test predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linprobe.schema import read_predictions

from .uncertainty import paired_bootstrap


def read_correct(path: str | Path) -> dict[str, int]:
    """{sample id: 1 if predicted == actual else 0} from a predictions CSV.

    For multilabel CSVs this is exact-set correctness (the per-sample form of subset accuracy).
    """
    preds = read_predictions(path)
    return {i: int(a == p) for i, a, p in zip(preds.ids, preds.actual, preds.predicted)}


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
