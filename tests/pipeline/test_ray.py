"""`--engine ray`: one task per shard on a real local Ray instance (``ray.init(num_cpus=2)``,
shared by the module), a task SIGKILLed mid-shard and retried, then the merge; and the default
engine never importing Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from linprobe.features.shards import KILL_HOOK_ENV, shards_dir
from linprobe.features.store import read_attrs
from linprobe.pipeline.cli import main
from tests.features.sharddata import EXTRACT_ARGS, assert_same_file, single_process, write_data

KILLED = "ray-killed.h5"  # the out file whose shard 1 task kills its worker once


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    import ray

    # The workers inherit the hook from this process's environment (set before Ray starts);
    # it fires only for shard 1 of KILLED, and only in a session that starts it from row 0.
    saved = os.environ.get(KILL_HOOK_ENV)
    os.environ[KILL_HOOK_ENV] = f"{KILLED}:1:4"
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()
        if saved is None:
            del os.environ[KILL_HOOK_ENV]
        else:
            os.environ[KILL_HOOK_ENV] = saved


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("ray") / "data")


@pytest.mark.slow   # ~90 s with the instance's start on 2 cores; .ci/run's slow step runs it
def test_killed_task_is_retried_and_the_result_equals_one_process(ray_session, data, tmp_path):
    single = single_process(data, tmp_path / "single.h5")
    out = tmp_path / KILLED
    assert main(["extract", *EXTRACT_ARGS, "--engine", "ray", "--shards", "2",
                 "--data", str(data), "--out", str(out)]) == 0
    assert_same_file(out, single)  # no duplicate or missing rows, bit for bit
    shards = read_attrs(out)["shards"]
    # Shard 1 (rows 12..21) died after its first batch of 4; its retry resumed there.
    assert [s["rows"] for s in shards] == [[0, 12], [12, 22]]
    assert [s["resumed_from"] for s in shards] == [0, 4]
    assert not shards_dir(out).exists()  # only the merged file is left (DVC's one out)


def test_unreachable_address_names_the_fix(data, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A fresh process: in this one the module's Ray session would be used instead.
    proc = subprocess.run([sys.executable, "-m", "linprobe", "extract", *EXTRACT_ARGS,
                           "--engine", "ray", "--ray-address", f"127.0.0.1:{port}",
                           "--data", str(data), "--out", str(tmp_path / "e.h5")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"linprobe: error: --ray-address 127.0.0.1:{port}: no Ray cluster answers" in \
        proc.stderr
    assert "ray start --head" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "e.h5").exists()


def test_ray_address_needs_the_ray_engine(capsys):
    assert main(["extract", *EXTRACT_ARGS, "--ray-address", "auto", "--data", "d",
                 "--out", "e.h5"]) == 2
    assert "--ray-address auto needs --engine ray" in capsys.readouterr().err


def test_default_engine_never_imports_ray(data, tmp_path):
    code = ("import sys; from linprobe.pipeline.cli import main; "
            "rc = main(sys.argv[1:]); assert rc == 0, rc; "
            "assert 'ray' not in sys.modules, 'ray was imported'; print('no ray')")
    proc = subprocess.run([sys.executable, "-c", code, "extract", *EXTRACT_ARGS, "--data",
                           str(data), "--out", str(tmp_path / "e.h5")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no ray" in proc.stdout and (tmp_path / "e.h5").is_file()
