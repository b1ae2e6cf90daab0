"""Deterministic, seeded, stratified train/val/test assignment.

Each stratum (a class, or for multi-label data the rarest label a sample carries) is shuffled with
its own seeded generator and cut by the fractions, so every class keeps at least one training
sample and the result depends only on (ids order, labels, fractions, split_seed). Sklearn's
``train_test_split(stratify=...)`` refuses classes with fewer than two samples; this does not.
"""

from __future__ import annotations

import numpy as np

from linprobe.features.config import SplitConfig
from linprobe.features.store import SPLIT_CODES


def strata(labels: np.ndarray) -> np.ndarray:
    """(N,) int stratum per sample: the class, or the rarest positive label (-1 for none)."""
    if labels.ndim == 1:
        return labels.astype(np.int64)
    counts = labels.sum(axis=0).astype(np.float64)
    # Rarest label first: stratifying on it keeps rare classes represented in every split.
    rank = np.where(labels > 0, counts[None, :], np.inf)
    key = np.argmin(rank, axis=1).astype(np.int64)
    key[~(labels > 0).any(axis=1)] = -1
    return key


def stratified_split(
    labels: np.ndarray, *, val_fraction: float, test_fraction: float, split_seed: int
) -> np.ndarray:
    """(N,) uint8 split codes (index into store.SPLITS) for (N,) or (N, C) ``labels``."""
    SplitConfig(val_fraction, test_fraction, split_seed)  # validates
    key = strata(labels)
    out = np.full(len(key), SPLIT_CODES["train"], np.uint8)
    for offset, value in enumerate(np.unique(key)):
        members = np.flatnonzero(key == value)
        rng = np.random.default_rng([split_seed, offset])
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        # Never leave a class without training data: shrink test, then val.
        while n - n_test - n_val < 1 and (n_test or n_val):
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        out[members[:n_test]] = SPLIT_CODES["test"]
        out[members[n_test : n_test + n_val]] = SPLIT_CODES["val"]
    return out


def carve_missing(
    split: np.ndarray, labels: np.ndarray, *, val_fraction: float, test_fraction: float,
    split_seed: int,
) -> np.ndarray:
    """Copy of ``split`` where an empty val (or test) split is carved from the train rows.

    A split that already has rows is kept as given; only absent ones take their fraction.
    """
    has_val = (split == SPLIT_CODES["val"]).any()
    has_test = (split == SPLIT_CODES["test"]).any()
    out = split.copy()
    train = np.flatnonzero(split == SPLIT_CODES["train"])
    sub = stratified_split(
        labels[train],
        val_fraction=0.0 if has_val else val_fraction,
        test_fraction=0.0 if has_test else test_fraction,
        split_seed=split_seed,
    )
    out[train] = sub
    return out
