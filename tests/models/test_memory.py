"""Embeddings stay float32: train_probe never makes a float64 copy of the matrix."""

from __future__ import annotations

import tracemalloc

import pytest
from sklearn.preprocessing import StandardScaler

from linprobe.models import probes
from linprobe.models.train import train_probe

from .conftest import blobs, split_names, write_h5

OPTS = {"n_boot": 20, "few_shot": False, "grid": [0.01], "max_iter": 50}
# Budget in units of the (N, D) float32 matrix: the loaded file (1) + the train+val copy (0.8)
# + the selection's fit/val copies (0.8) + solver and chunk temporaries. A float64 copy of the
# 0.6-sized fit split alone would add 1.2.
BUDGET = 3.6


def peak_ratio(path, X, out, solver: str = "sklearn") -> float:
    tracemalloc.start()
    try:
        train_probe(path, "logreg", out, options={**OPTS, "solver": solver})
        return tracemalloc.get_traced_memory()[1] / X.nbytes
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    X, y = blobs(4000, 10, 256, sep=0.1)                     # 40000 x 256 float32 = 41 MB
    path = tmp_path_factory.mktemp("mem") / "big.h5"
    return write_h5(path, X, y, split_names(y), [str(i) for i in range(10)]), X


# tracemalloc sees numpy's allocations, not torch's: with the torch solver (the default) it
# checks the numpy side (loading, normalising, scoring); torch.from_numpy shares the float32
# arrays it is given.
@pytest.mark.parametrize("solver", ["sklearn", "torch"])
def test_peak_memory_has_no_float64_copy(big, tmp_path, solver):
    path, X = big
    assert peak_ratio(path, X, tmp_path, solver) < BUDGET


def test_the_budget_catches_a_float64_copy(big, tmp_path, monkeypatch):
    """Control: sklearn's own StandardScaler.fit (float64 temporaries) breaks the budget."""
    path, X = big
    monkeypatch.setattr(probes, "fit_scaler", lambda X, chunk_rows=None: StandardScaler().fit(X))
    assert peak_ratio(path, X, tmp_path) > BUDGET
