"""The thread controller: threads per unit from the free cores, scoped and restored, and the
progress note when the rate drops (real busy processes, recorded /proc/stat and rates)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info

from linprobe.cpus import CpuMonitor
from linprobe.threads import (ThreadController, describe, fit_scope, fit_threads,
                              limit_threads, secondary_blas)
from tests.test_cpus import STAT_A, STAT_B, Clock

REPO = Path(__file__).resolve().parents[1]


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info()]


def test_limit_threads_scopes_torch_and_blas_and_restores_them():
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with limit_threads(1):
        assert torch.get_num_threads() == 1
        assert set(_blas_threads()) == {1}
    assert torch.get_num_threads() == torch_before and _blas_threads() == blas_before
    try:
        with limit_threads(1):
            raise KeyError("x")
    except KeyError:
        pass
    assert torch.get_num_threads() == torch_before and _blas_threads() == blas_before


def test_only_numpys_blas_pool_runs_threaded_and_all_are_restored():
    importlib.import_module("scipy.optimize")   # loads scipy's own OpenBLAS (pip: two copies)

    def counts() -> dict[str, int]:
        return {p["filepath"]: p["num_threads"] for p in threadpool_info()
                if p["user_api"] == "blas"}

    before = counts()
    numpy_dir = str(Path(np.__file__).resolve().parent)
    with limit_threads(2):
        inside = counts()
        for path, n in inside.items():
            mine = str(Path(path).resolve()).startswith((numpy_dir + "/", numpy_dir + ".libs/"))
            # two pools: numpy's threaded, the other on 1 (their idle workers spin otherwise)
            assert n == (2 if mine or len(inside) == 1 else 1), (path, inside)
    assert counts() == before


def test_secondary_blas_is_every_pool_but_numpys_and_none_when_shared():
    numpy_dir = Path(np.__file__).resolve().parent
    numpy_lib = SimpleNamespace(user_api="blas", filepath=f"{numpy_dir}.libs/libopenblas64_.so")
    scipy_lib = SimpleNamespace(user_api="blas", filepath="/x/scipy.libs/libopenblas.so")
    gomp = SimpleNamespace(user_api="openmp", filepath="/x/torch/lib/libgomp.so.1")
    assert secondary_blas([numpy_lib, gomp, scipy_lib]) == [scipy_lib]
    assert secondary_blas([numpy_lib, gomp]) == []
    shared = SimpleNamespace(user_api="blas", filepath="/opt/conda/lib/libopenblas.so")
    assert secondary_blas([shared, gomp]) == []          # conda: numpy and scipy share it


def _recorded_controller(tmp_path: Path) -> tuple[ThreadController, Path]:
    stat = tmp_path / "stat"
    stat.write_text(STAT_A)
    monitor = CpuMonitor(stat, clock=Clock(), cpus={0, 1})
    return ThreadController("auto", available=2, monitor=monitor, recheck=0.0), stat


def test_busy_machine_note_says_threads_went_down(tmp_path):
    c, stat = _recorded_controller(tmp_path)
    assert c.choose() == 2                 # no other load between the readings
    # The measured extraction rates: 17.4 img/s quiet, 6.4 img/s next to 2 busy jobs.
    for rate in (9.0, 17.4, 17.1, 17.6):   # the first batch carries one-off costs
        c.observe(17.4, 17.4 / rate)
    assert c.reference == 17.4 and c.busy_note() is None
    assert c.postfix() == "2 threads"
    stat.write_text(STAT_B)                # 2.04 cores busy on ours in 1 s: others took them
    assert c.choose() == 1
    for rate in (6.4, 6.5, 6.3):
        c.observe(17.4, 17.4 / rate)
    assert c.postfix() == "machine appears busy (37% of the first rate): 2->1 threads"
    rec = c.record()
    assert rec["setting"] == "auto" and rec["available"] == 2
    assert rec["used"] == {"1": 3, "2": 4} and rec["unit"] == "img/s"
    assert describe(rec).startswith("auto of 2 cores: 1 thread x 3, 2 threads x 4; ")


def test_unit_done_records_the_unit_and_applies_the_next_count(tmp_path):
    # The per-batch step extraction and fine-tuning share: time the unit, re-choose, apply.
    c, stat = _recorded_controller(tmp_path)
    before = torch.get_num_threads()
    try:
        k = c.choose()
        c.start_units()
        assert c.unit_done(8, k) == 2 and c.used == {2: 1} and c.rates[0] > 0
        stat.write_text(STAT_B)            # others took a core
        assert c.unit_done(8, 2) == 1      # recorded with the 2 it ran on; the next gets 1
        assert c.used == {2: 2} and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_one_slow_unit_is_not_a_busy_machine(tmp_path):
    c, _ = _recorded_controller(tmp_path)
    c.choose()
    for amount, seconds in ((32, 4.0), (32, 1.0), (32, 1.0), (32, 1.0), (32, 1.0), (32, 1.0)):
        c.observe(amount, seconds)
    c.observe(4, 0.5)                      # the last, partial batch: fixed costs, few images
    assert c.busy_note() is None


def test_fixed_threads_are_kept_and_the_note_says_so():
    c = ThreadController(2, available=2)
    assert c.monitor is None and c.choose() == 2
    for rate in (10, 20, 20, 20, 5, 5, 5):
        c.observe(rate, 1.0)
    assert c.busy_note() == "machine appears busy (25% of the first rate): threads fixed at 2"
    assert c.record()["used"] == {"2": 7}


def test_fit_scope_is_a_no_op_outside_a_controller_and_counts_fits_inside():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    before = torch.get_num_threads()
    with fit_scope(None) as n:
        assert n is None
    c = ThreadController(1, available=2, unit="it")
    with fit_threads(c):
        for C in (0.1, 1.0):
            clf = LogisticRegression(C=C)
            with fit_scope(clf) as n:
                assert n == 1 and torch.get_num_threads() == 1
                clf.fit(X, y)
    assert torch.get_num_threads() == before
    assert c.record()["used"] == {"1": 2} and c.amount >= 2  # solver iterations, all fits
    with fit_scope(None) as n:              # the context ended with the block
        assert n is None


# Runs under `taskset -c 0`: one core, then two busy processes on that core (children inherit
# the mask). A unit is a fixed amount of real work; its rate falls to about a third.
BUSY_RUN = r"""
import subprocess, sys, time
import numpy as np
from linprobe.threads import ThreadController
c = ThreadController("auto", unit="it")
a = np.random.default_rng(0).normal(size=(160, 160))
def unit():
    with c.scope():
        t = time.perf_counter()
        for _ in range(60):
            a @ a
        c.observe(60, time.perf_counter() - t)
for _ in range(6):
    unit()
print("quiet:", c.postfix())
spin = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass"
busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
try:
    time.sleep(0.3)
    for _ in range(6):
        unit()
    print("busy:", c.postfix())
finally:
    for p in busy:
        p.kill()
"""


def test_progress_note_appears_when_real_busy_processes_take_the_core():
    env = {"PYTHONPATH": f"{REPO / 'src'}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", BUSY_RUN], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    quiet, busy = out.strip().splitlines()
    assert quiet == "quiet: 1 thread"
    assert busy.startswith("busy: machine appears busy (") and busy.endswith("kept 1 thread")


def test_fits_without_iterations_never_read_as_a_busy_machine():
    # k-NN "fits" report no solver iterations; their cost varies with k, so fits/s says
    # nothing about the machine (the demo's knn bar once claimed a busy machine on a quiet one).
    import time as _time

    from sklearn.neighbors import KNeighborsClassifier

    X, y = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2
    c = ThreadController(1)
    with fit_threads(c):
        for i in range(8):
            clf = KNeighborsClassifier(n_neighbors=3)
            with fit_scope(clf):
                clf.fit(X, y)
                _time.sleep(0.001 if i < 4 else 0.05)   # later fits 50x slower
    assert c.used == {1: 8}
    assert c.busy_note() is None
