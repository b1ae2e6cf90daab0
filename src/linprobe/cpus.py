"""How many cores this process really has, and how many of them other processes leave free.

``available_cores``: the CPU affinity mask (``taskset``, ``docker --cpuset-cpus``) capped by a
cgroup v2 quota (``/sys/fs/cgroup/cpu.max``, ``docker --cpus``), never the host's core count.

``CpuMonitor``: the cores that other processes use, from ``/proc/stat`` deltas over the cores
in our affinity mask, less this process's own CPU time. Thread counts follow from it
(:func:`threads_for`): an OpenMP team or OpenBLAS pool wider than the free cores spin-waits at
every barrier for the thread that was pre-empted, which measured 2.7x slower for extraction and
11x slower for a logistic-regression fit on 2 cores next to 2 busy processes. The reading costs
no exploration (unlike trying fewer threads and timing them), so it can run before every fit.
No torch here: ``linprobe --help`` imports this module.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
PROC_STAT = Path("/proc/stat")
# A core counts as free if other processes leave at least this share of it (the free cores,
# rounded): a thread that gets only part of a core holds the rest of its team at every
# barrier, but background noise (a few % of a core) must not cost a quiet machine a core. One
# busy process next to our N threads takes about N/(N+1) of a core, so it always costs one.
FREE_SHARE = 0.5


def affinity_cores() -> int:
    """Cores in this process's affinity mask (``os.cpu_count()`` where there is no mask)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def quota_cores(cpu_max: str | Path = CPU_MAX) -> int | None:
    """Cores a cgroup v2 ``cpu.max`` file ('<quota> <period>' or 'max <period>') allows, rounded
    up; None when there is no quota, no such file, or it cannot be read."""
    try:
        parts = Path(cpu_max).read_text().split()
    except OSError:
        return None
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def available_cores(cpu_max: str | Path = CPU_MAX) -> int:
    """The cores this process may use: its affinity mask, capped by a cgroup v2 quota."""
    quota = quota_cores(cpu_max)
    cores = affinity_cores()
    return max(1, min(cores, quota) if quota else cores)


def thread_budget(cpu_max: str | Path = CPU_MAX) -> int:
    """The most threads ``auto`` runs: :func:`available_cores`, capped by ``OMP_NUM_THREADS``
    when it holds an int >= 1 (a user's or launcher's limit: torchrun sets 1 per rank so that N
    ranks do not oversubscribe the cores)."""
    cores = available_cores(cpu_max)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(cores, int(env)) if env.isdigit() and int(env) >= 1 else cores


def parse_threads(value: Any, name: str = "threads", kind: str = "parameter", *,
                  warn: bool = True) -> int | str:
    """A ``threads`` setting: 'auto', or an int >= 1 (also as text). A count above the available
    cores is kept (explicit means explicit: a user may know of cores this process cannot see)
    with a warning, since such threads usually wait for each other. ``name`` and ``kind`` name
    the setting in messages ('threads' 'probe option', '--threads' 'option')."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        value = int(text) if text.lstrip("-").isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"The {name!r} {kind} must be 'auto' or an int >= 1 (threads per "
                         f"process). Got {value!r} instead.")
    cores = available_cores()
    if warn and value > cores:
        print(f"linprobe: warning: {name}={value} is more than the {cores} cores available to "
              "this process (affinity mask and CPU quota); the extra threads will wait for each "
              "other. Use 'auto' to follow the free cores.", file=sys.stderr)
    return value


def threads_for(available: int, others: float) -> int:
    """Threads to run when other processes use ``others`` cores of ``available``: the cores
    they leave at least FREE_SHARE free, at least 1."""
    return max(1, min(available, int(available - others + (1 - FREE_SHARE))))


def _read_stat(cpus: set[int], path: Path) -> int | None:
    """Busy jiffies summed over ``cpus`` (the per-core lines of /proc/stat); None if unreadable."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        head, _, rest = line.partition(" ")
        if not head.startswith("cpu") or head == "cpu" or int(head[3:]) not in cpus:
            continue
        f = [int(v) for v in rest.split()]
        # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
        busy += sum(f[:3]) + sum(f[5:8])
    return busy


@dataclass
class _Mark:
    wall: float
    busy: int | None     # jiffies on our cores, all processes
    own: float           # this process's CPU seconds, all threads


class CpuMonitor:
    """Cores used by other processes since the last reading (``others``). Readings from
    ``stat`` (a /proc/stat-format file; tests pass recorded ones) at times from ``clock``, over
    the cores ``cpus`` (default: this process's affinity mask)."""

    def __init__(self, stat: str | Path = PROC_STAT,
                 clock: Callable[[], float] = time.perf_counter,
                 cpus: set[int] | None = None) -> None:
        self.stat, self.clock = Path(stat), clock
        if cpus is None:
            cpus = (set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else set(range(os.cpu_count() or 1)))
        self.cpus = cpus
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._mark = self._now()

    def _now(self, wall: float | None = None) -> _Mark:
        t = os.times()
        return _Mark(self.clock() if wall is None else wall, _read_stat(self.cpus, self.stat),
                     t.user + t.system)

    def others(self, min_window: float = 0.1) -> float | None:
        """Cores other processes used on our cores since the last call (waits until at least
        ``min_window`` s have passed, for a reading finer than the clock tick); None where
        /proc/stat cannot be read."""
        wall = self.clock()
        wait = self._mark.wall + min_window - wall
        if wait > 0:
            time.sleep(wait)
            wall = self.clock()
        now, last = self._now(wall), self._mark
        self._mark = now
        seconds = now.wall - last.wall
        if now.busy is None or last.busy is None or seconds <= 0:
            return None
        used = (now.busy - last.busy) / self.hz - (now.own - last.own)
        return max(0.0, used / seconds)
