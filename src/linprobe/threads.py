"""Thread counts that follow the free cores: the controller behind ``threads: auto``.

:class:`ThreadController` picks the threads for each unit of work (an extraction batch, a probe
fit) from the cores other processes leave free (:class:`linprobe.cpus.CpuMonitor`), re-checked
at most every ``recheck`` seconds, and keeps the throughput of each unit, so that progress bars
can show the current rate and say when it fell well below what the first units achieved (the
machine appears busy) and what was done about it. :func:`limit_threads` scopes a count to torch
and to the BLAS/OpenMP pools (threadpoolctl) and restores the previous counts on exit.

Only one BLAS pool runs threaded: numpy's. A pip install loads two OpenBLAS copies (numpy's and
scipy's), and the idle workers of each spin while the other's work, so the two pools compete for
the same cores. Measured on 2 quiet cores, sklearn's lbfgs on 10k x 1280 (60 iterations): 1.26 s
with scipy's pool on 1 thread and the rest on 2, 1.9 s with everything on 1, 5.0 s with
everything on 2 (what every fit did before ``threads``); the same order at 2k and 54k rows.
scipy's BLAS serves L-BFGS-B's small vector and matrix steps, which gain nothing from threads.

A fit run inside :func:`fit_threads` (``train``) consults the active controller through
:func:`fit_scope`, which is a no-op outside one, so library code stays usable on its own.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, ContextManager

from linprobe.cpus import CpuMonitor, thread_budget, threads_for

# The rate counts as dropped below this share of the reference (the first units' rate).
BUSY_RATIO = 0.6
REFERENCE_UNITS = 3  # units after the first (warm-up) one that set the reference rate
RECENT_UNITS = 3     # the current rate: over this many last units (one short unit, such as
                     # the last partial batch, is not a slowdown)


def _limit_pools(n: int) -> Any:
    """Set the OpenMP pools and numpy's BLAS pool to ``n`` threads and every other BLAS pool to
    1 (module docstring); returns threadpoolctl's limiter, whose ``restore_original_limits``
    (or context exit) puts back the counts from before."""
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    limiter = controller.limit(limits=n)
    for lib in secondary_blas(controller.lib_controllers):
        lib.set_num_threads(1)
    return limiter


def secondary_blas(libs: list) -> list:
    """The BLAS pools (threadpoolctl lib controllers) that are not numpy's, when numpy's is
    among them (a wheel's, under ``numpy/`` or ``numpy.libs/``); none otherwise (one BLAS
    shared by numpy and scipy, as conda and distributions link them, or an unknown layout)."""
    import numpy

    root = os.path.dirname(os.path.realpath(numpy.__file__))
    homes = (root + os.sep, root + ".libs" + os.sep)
    blas = [lib for lib in libs if lib.user_api == "blas"]
    numpys = [lib for lib in blas if os.path.realpath(lib.filepath).startswith(homes)]
    return [lib for lib in blas if lib not in numpys] if numpys else []


@contextmanager
def limit_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (when torch is loaded), ``n`` OpenMP and
    numpy BLAS threads and 1 thread in other BLAS pools (threadpoolctl); the previous counts are
    restored on exit."""
    torch = sys.modules.get("torch")
    saved = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None and saved != n:
            torch.set_num_threads(n)
        with _limit_pools(n):
            yield
    finally:
        if torch is not None and torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


def apply_threads(n: int) -> None:
    """Set ``n`` threads now as :func:`limit_threads` does, inside a :func:`limit_threads` block
    (which restores the counts from before it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _limit_pools(n)


class ThreadController:
    """Threads for each unit of work, and what the progress bar says about them.

    ``setting``: 'auto' (follow the free cores) or a fixed int. ``monitor``: where the cores
    others use are read (None: a :class:`CpuMonitor` on /proc/stat). ``recheck``: seconds
    between readings; ``unit``: what a rate counts ('img', 'it')."""

    def __init__(self, setting: int | str = "auto", *, available: int | None = None,
                 monitor: CpuMonitor | None = None, recheck: float = 1.0,
                 unit: str = "img") -> None:
        self.setting, self.unit, self.recheck = setting, unit, recheck
        self.available = available or thread_budget()
        self.auto = setting == "auto"
        self.monitor = (monitor or CpuMonitor()) if self.auto else None
        self.threads = self.available if self.auto else int(setting)
        self.start_threads: int | None = None
        self.used: Counter[int] = Counter()     # threads -> units run with that many
        self.amount = 0.0                       # units' amount (images, iterations) in total
        self.seconds = 0.0                      # ... and the seconds they took
        self.rates: list[float] = []            # per unit, amount / s
        self._recent: list[tuple[float, float]] = []   # (amount, seconds) of the last units
        self.reference: float | None = None
        self.others: float | None = None        # the last reading of cores used by others
        self._last_check = -float("inf")
        self._unit_start = time.perf_counter()  # see start_units
        self.bar: Any = None                    # a tqdm bar each fit unit advances (train)

    def choose(self) -> int:
        """The threads for the next unit: re-read the free cores when ``recheck`` s passed."""
        now = time.perf_counter()
        if self.auto and now - self._last_check >= self.recheck:
            self._last_check = now
            others = self.monitor.others()
            if others is not None:
                self.others = others
                self.threads = threads_for(self.available, others)
        if self.start_threads is None:
            self.start_threads = self.threads
        return self.threads

    def observe(self, amount: float, seconds: float, threads: int | None = None) -> None:
        """Record a unit: ``amount`` (images, solver iterations) done in ``seconds``."""
        self.used[self.threads if threads is None else threads] += 1
        self.amount += amount
        self.seconds += seconds
        if seconds > 0:
            self.rates.append(amount / seconds)
            self._recent = (self._recent + [(amount, seconds)])[-RECENT_UNITS:]
        # The first unit carries one-off costs (allocations, kernel choice): not a reference.
        if self.reference is None and len(self.rates) > REFERENCE_UNITS:
            ref = self.rates[1:REFERENCE_UNITS + 1]
            self.reference = sorted(ref)[len(ref) // 2]

    def start_units(self) -> None:
        """Start the clock of a loop of units, each closed by :meth:`unit_done`."""
        self._unit_start = time.perf_counter()

    def unit_done(self, amount: float, threads: int) -> int:
        """Record the unit just run with ``threads`` (timed since the last call, or since
        :meth:`start_units`) and return the threads for the next one: re-chosen, and applied
        to torch and the pools (:func:`apply_threads`) when they changed."""
        now = time.perf_counter()
        self.observe(amount, now - self._unit_start, threads)
        self._unit_start = now
        if self.choose() != threads:
            threads = self.threads
            apply_threads(threads)
        return threads

    def count(self, threads: int) -> None:
        """Record a unit run with ``threads`` whose rate says nothing about the machine."""
        self.used[threads] += 1

    @contextmanager
    def scope(self) -> Iterator[int]:
        """Run one unit with the chosen threads (yields the count); the caller observes it."""
        n = self.choose()
        with limit_threads(n):
            yield n

    @property
    def rate(self) -> float | None:
        """The current rate: amount / s over the last RECENT_UNITS units."""
        seconds = sum(s for _, s in self._recent)
        return sum(a for a, _ in self._recent) / seconds if seconds > 0 else None

    def busy_note(self) -> str | None:
        """When the current rate is well below the first units': what linprobe did about it."""
        rate = self.rate
        if self.reference is None or rate is None or rate >= BUSY_RATIO * self.reference:
            return None
        share = round(100 * rate / self.reference)
        if not self.auto:
            did = f"threads fixed at {self.threads}"
        elif self.threads != self.start_threads:
            did = f"{self.start_threads}->{self.threads} threads"
        else:
            did = f"kept {self.threads} thread{'s' * (self.threads > 1)}"
        return f"machine appears busy ({share}% of the first rate): {did}"

    def postfix(self) -> str:
        """The progress bar's postfix: threads, and the busy note when there is one."""
        note = self.busy_note()
        return note if note else f"{self.threads} thread{'s' * (self.threads > 1)}"

    def record(self) -> dict[str, Any]:
        """What the run chose and achieved, for HDF5 attrs, metrics JSON and the report."""
        return {
            "setting": self.setting,
            "available": self.available,
            "used": {str(k): v for k, v in sorted(self.used.items())},
            "rate": round(self.amount / self.seconds, 3) if self.seconds > 0 else None,
            "unit": f"{self.unit}/s",
        }


def describe(record: Any) -> str | None:
    """One line for the report from a :meth:`ThreadController.record` (None if not one):
    'auto of 2 cores: 1 thread x 100, 2 threads x 13; 57.8 img/s'."""
    if not isinstance(record, dict) or not isinstance(record.get("used"), dict):
        return None
    used = ", ".join(f"{k} thread{'s' * (str(k) != '1')} x {v}" for k, v in record["used"].items())
    rate = record.get("rate")
    rate = f"; {rate:.1f} {record.get('unit', '')}" if isinstance(rate, (int, float)) else ""
    return f"{record.get('setting')} of {record.get('available')} cores: {used or 'none run'}{rate}"


_ACTIVE: ContextVar[ThreadController | None] = ContextVar("linprobe_threads", default=None)


@contextmanager
def fit_threads(controller: ThreadController) -> Iterator[ThreadController]:
    """Make ``controller`` the one :func:`fit_scope` consults in this context."""
    token = _ACTIVE.set(controller)
    try:
        yield controller
    finally:
        _ACTIVE.reset(token)


class _FitUnit:
    """One fit under the active controller: threads chosen on entry, rate observed on exit
    (solver iterations per second when the estimator reports them; a fit without iterations,
    such as k-NN, is only counted)."""

    def __init__(self, controller: ThreadController, estimator: Any) -> None:
        self.c, self.estimator = controller, estimator

    def __enter__(self) -> int:
        self.scope = self.c.scope()
        self.n = self.scope.__enter__()
        self.t0 = time.perf_counter()
        return self.n

    def __exit__(self, *exc: Any) -> None:
        seconds = time.perf_counter() - self.t0
        self.scope.__exit__(*exc)
        if exc[0] is None:
            est = getattr(self.estimator, "estimators_", [self.estimator])
            iters = sum(int(max(_flat(getattr(e, "n_iter_", 0)))) for e in est)
            if iters:
                self.c.observe(iters, seconds, self.n)
            else:  # no solver iterations (k-NN): fits/s varies with the fit, not the machine
                self.c.count(self.n)
            bar = self.c.bar
            if bar is not None:
                bar.update(1)
                rate = self.c.rate
                bar.set_postfix_str(f"{rate:.1f} {self.c.unit}/s, {self.c.postfix()}"
                                    if rate is not None else self.c.postfix())


def _flat(v: Any) -> list:
    try:
        return [int(x) for x in v.ravel()] or [0]
    except AttributeError:
        return [int(v)]


def fit_scope(estimator: Any = None) -> ContextManager[Any]:
    """The threads for one fit of ``estimator`` under the active controller (no-op without)."""
    c = _ACTIVE.get()
    return nullcontext() if c is None else _FitUnit(c, estimator)
