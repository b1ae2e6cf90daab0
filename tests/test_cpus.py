"""The cores really available (affinity, cgroup v2 quota), the cores others use (/proc/stat
deltas) and the thread counts that follow from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from linprobe import cpus
from linprobe.cpus import (CpuMonitor, available_cores, parse_threads, quota_cores,
                           threads_for)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, cores", [
    ("max 100000\n", None),        # no quota
    ("150000 100000\n", 2),        # 1.5 cores: a second thread still gets half a core
    ("100000 100000", 1),
    ("50000 100000", 1),           # under one core: still one thread
    ("400000 100000", 4),
    ("garbage", None),
    ("", None),
    ("-1 100000", None),
    ("100000 0", None),
])
def test_quota_cores_reads_a_cgroup_cpu_max_file(tmp_path, text, cores):
    f = tmp_path / "cpu.max"
    f.write_text(text)
    assert quota_cores(f) == cores


def test_missing_cpu_max_means_no_quota(tmp_path):
    assert quota_cores(tmp_path / "absent") is None
    assert available_cores(tmp_path / "absent") == cpus.affinity_cores()


def test_a_quota_caps_the_affinity_mask(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("100000 100000\n")
    assert available_cores(f) == 1
    f.write_text(f"{100000 * (cpus.affinity_cores() + 3)} 100000\n")
    assert available_cores(f) == cpus.affinity_cores()   # a quota above the mask changes nothing


def test_taskset_one_core_gives_one_thread():
    code = ("from linprobe.cpus import available_cores\n"
            "from linprobe.threads import ThreadController\n"
            "c = ThreadController('auto')\n"
            "print(available_cores(), c.available, c.choose())\n")
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "1"]


@pytest.mark.parametrize("omp, expected", [("1", "1"), ("64", "all"), ("garbage", "all"),
                                            ("0", "all")])
def test_auto_respects_omp_num_threads(omp, expected):
    # torchrun sets OMP_NUM_THREADS=1 per rank; auto must not widen that to every core.
    code = ("from linprobe.cpus import available_cores\n"
            "from linprobe.threads import ThreadController\n"
            "print(available_cores(), ThreadController('auto').available)\n")
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": omp}
    cores, budget = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, check=True).stdout.split()
    assert budget == (cores if expected == "all" else expected)


@pytest.mark.parametrize("value", [0, -1, "many", "0", True, 2.5, None, ""])
def test_bad_threads_values_are_refused_naming_the_setting(value):
    with pytest.raises(ValueError, match=r"The 'threads' probe option must be 'auto' or an int >= 1"):
        parse_threads(value, "threads", "probe option")


def test_threads_values(capsys):
    assert parse_threads("auto") == parse_threads(" AUTO ") == "auto"
    assert parse_threads("1") == parse_threads(1) == 1
    assert capsys.readouterr().err == ""
    many = available_cores() + 1
    assert parse_threads(many, "--threads", "option") == many   # kept, with a warning
    err = capsys.readouterr().err
    assert f"--threads={many} is more than the {available_cores()} cores" in err


def test_threads_follow_the_free_cores():
    # (cores available, cores other processes use) -> threads
    assert threads_for(2, 0.0) == 2
    assert threads_for(2, 0.2) == 2       # background noise: keep every core
    assert threads_for(2, 0.67) == 1      # 1 busy process next to our 2 threads (its share)
    assert threads_for(2, 1.0) == 1       # 1 busy process next to our 1 thread
    assert threads_for(2, 1.33) == 1      # 2 busy processes next to our 1 thread
    assert threads_for(2, 3.9) == 1       # never 0
    assert threads_for(2, 0.45) == 2      # a core more than half free is used
    assert threads_for(16, 4.4) == 12     # 11.6 free: the 12th core is 60% free
    assert threads_for(16, 4.6) == 11     # 11.4 free: the 12th core is 40% free


# Two snapshots of this machine's /proc/stat, 1 s apart, while one spin loop ran (cpu lines).
STAT_A = """cpu  4146079 2139 515443 4287700 9710 0 22437 0 0 0
cpu0 2073901 1009 257860 2143226 4866 0 14950 0 0 0
cpu1 2072178 1130 257583 2144474 4844 0 7487 0 0 0
intr 1 2 3
"""
STAT_B = """cpu  4146280 2139 515446 4287700 9710 0 22437 0 0 0
cpu0 2074001 1009 257861 2143226 4866 0 14950 0 0 0
cpu1 2072279 1130 257585 2144474 4844 0 7487 0 0 0
intr 1 2 3
"""


class Clock:
    """Wall-clock readings 0, 1, 2, ... s (the window's length is not what is under test)."""

    def __init__(self) -> None:
        self.t = -1.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_monitor_counts_others_on_our_cores_only(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(STAT_A)
    m = CpuMonitor(stat, clock=Clock(), cpus={0, 1})
    stat.write_text(STAT_B)
    others = m.others(min_window=0.0)
    # 204 busy jiffies on cpu0+cpu1 in 1 s, less this process's own (tiny) CPU time.
    assert 1.9 < others <= 2.04
    assert threads_for(2, others) == 1

    stat.write_text(STAT_A)
    # Pinned to cpu1: cpu0's load is not ours to avoid.
    m = CpuMonitor(stat, clock=Clock(), cpus={1})
    stat.write_text(STAT_B)
    assert 0.9 < m.others(min_window=0.0) <= 1.03


def test_monitor_without_proc_stat_reports_nothing(tmp_path):
    m = CpuMonitor(tmp_path / "absent")
    assert m.others(min_window=0.0) is None


def test_monitor_reads_the_real_proc_stat():
    m = CpuMonitor()
    others = m.others(min_window=0.05)
    assert others is not None and 0.0 <= others <= len(m.cpus) + 0.5
