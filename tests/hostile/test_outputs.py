"""Outputs never destroy inputs or others' work; one writer per output (issue 9, items 3, 4, 10).

Every refusal happens before any work starts and leaves every watched file as it was. The
concurrency cases pause a real first run (SIGSTOP) after it took its lock and run a second one on
the same output: it must fail at once, name the first run's pid, and leave the first run's files
alone; the first run then completes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from linprobe.features.store import read_embeddings
from linprobe.pipeline.outputs import LOCK_SUFFIX
from tests.hostile.harness import expect_error, expect_ok, run_cli
from tests.shipped import SHIPPED_PARAMS

BACKBONE = "torchvision:resnet18:none"
FAST = ["--image-size", "32", "--workers", "0"]
# Slow enough (batch 1, 64 px) that a test can pause the run while it writes its partial file.
SLOW = ["--image-size", "64", "--workers", "0", "--batch-size", "1"]


def extract(data: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--backbone", BACKBONE, "--data", str(data), "--out", str(out), *FAST, *extra]


def train(emb: Path, out_dir: Path, probe: str = "logreg") -> list[str]:
    return ["train", "--embeddings", str(emb), "--probe", probe, "--out-dir", str(out_dir)]


def report(artifacts: Path, out: Path, *extra: str) -> list[str]:
    return ["report", "--artifacts", str(artifacts), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete artifacts tree (embeddings, one logreg run, a report) made by the real CLI."""
    from tests.features.imagedata import write_folder

    root = tmp_path_factory.mktemp("built")
    data = write_folder(root / "data", per_class=0, classes=3,
                        splits={"train": 6, "val": 2, "test": 2})
    art = root / "artifacts"
    expect_ok(extract(data, art / "embeddings" / "e.h5"))
    expect_ok(train(art / "embeddings" / "e.h5", art))
    expect_ok(report(art, art / "report" / "index.html"))
    return root


@pytest.fixture
def art(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built artifacts (and their data) for a test to run against."""
    shutil.copytree(built, tmp_path / "w", symlinks=True)
    return tmp_path / "w" / "artifacts"


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only tmpfs mount (binds root too, unlike chmod)."""
    where = tmp_path / "ro"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


# --- outputs that are inputs of the run --------------------------------------------------------

def test_extract_out_is_the_manifest(folder: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for p in sorted(folder.rglob("*.png")):
            w.writerow([p.relative_to(tmp_path), p.parent.name, p.parent.parent.name])
    expect_error(extract(manifest, manifest), ["--out", "manifest.csv", "input", "--data"],
                 watch=[tmp_path])


def test_extract_out_is_an_image_of_the_data(folder: Path, tmp_path: Path) -> None:
    image = next(folder.rglob("*.png"))
    expect_error(extract(folder, image), [image.name, "input of this run", "--data"],
                 watch=[tmp_path])


def test_extract_out_is_the_params_file(folder: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(SHIPPED_PARAMS, params)
    expect_error(extract(folder, params, "--params", str(params), "--name", "resnet18_random"),
                 ["params.yaml", "input of this run", "--params"], watch=[tmp_path])


def test_train_out_dir_is_the_embeddings_input(art: Path) -> None:
    emb = art / "embeddings" / "e.h5"
    expect_error(train(emb, emb), ["--out-dir", "e.h5", "input of this run", "--embeddings"],
                 watch=[art.parent])


def test_report_out_is_an_embeddings_file_it_reads(art: Path) -> None:
    expect_error(report(art, art / "embeddings" / "e.h5"),
                 ["--out", "e.h5", "input of this run", "--artifacts"], watch=[art.parent])


def test_report_plots_dir_inside_the_predictions_it_reads(art: Path) -> None:
    # write_learning_curves removes stale *.csv from --plots-dir: here that would be predictions.
    expect_error(report(art, art / "report" / "index.html", "--plots-dir",
                        str(art / "predictions" / "e")),
                 ["--plots-dir", "input of this run"], watch=[art.parent])


def test_extract_out_is_a_directory(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "outdir").mkdir()
    expect_error(extract(folder, tmp_path / "outdir"), ["--out", "outdir", "is a directory"],
                 watch=[tmp_path])


# --- existing files linprobe did not write -------------------------------------------------------

def test_extract_refuses_a_foreign_hdf5_file(folder: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.h5"
    with h5py.File(theirs, "w") as f:
        f["measurements"] = np.arange(10.0)
        f.attrs["instrument"] = "microscope"
    expect_error(extract(folder, theirs),
                 ["theirs.h5", "not .*written by `linprobe extract`", "delete it yourself"],
                 watch=[tmp_path])


def test_extract_refuses_a_foreign_file_where_its_partial_goes(folder: Path, tmp_path: Path) -> None:
    # e.g. a browser's unfinished download of the same name: the writer would delete it.
    download = tmp_path / "e.h5.partial"
    download.write_bytes(b"PK\x03\x04 half of someone's zip archive")
    expect_error(extract(folder, tmp_path / "e.h5"),
                 ["e.h5.partial", "not a partial HDF5 embeddings file"], watch=[tmp_path])


def test_extract_refuses_a_foreign_file_where_its_fresh_partial_goes(folder: Path,
                                                                     tmp_path: Path) -> None:
    # The writer builds a fresh partial as <out>.partial.new ("w" mode truncates it).
    theirs = tmp_path / "e.h5.partial.new"
    theirs.write_bytes(b"PK\x03\x04 someone's archive")
    expect_error(extract(folder, tmp_path / "e.h5"),
                 ["e.h5.partial.new", "not a partial HDF5 embeddings file"], watch=[tmp_path])


def test_extract_starts_over_a_fresh_partial_torn_by_a_kill(folder: Path, tmp_path: Path) -> None:
    torn = tmp_path / "e.h5.partial.new"
    torn.write_bytes(b"")              # killed before HDF5 wrote anything
    expect_ok(extract(folder, tmp_path / "e.h5"))
    assert read_embeddings(tmp_path / "e.h5").embeddings.shape[0] > 0 and not torn.exists()


def test_report_refuses_a_foreign_html_file(art: Path) -> None:
    page = art.parent / "notes.html"
    page.write_text("<!DOCTYPE html><html><body>my lab notes</body></html>\n")
    expect_error(report(art, page), ["notes.html", "not .*written by `linprobe report`"],
                 watch=[art.parent])


FOREIGN = {
    "metrics/e/logreg.json": b'{"my": "notes"}\n',
    "predictions/e/logreg.csv": b"name,phone\nann,123\n",
    "predictions/e/logreg.scores.npy": b"not an array at all",
    "probes/e/logreg.joblib": b"\x80\x04some other pickle",
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_train_refuses_a_foreign_artifact(art: Path, name: str) -> None:
    (art / name).write_bytes(FOREIGN[name])
    expect_error(train(art / "embeddings" / "e.h5", art),
                 [Path(name).name, "not .*written by `linprobe train`", "delete it yourself"],
                 watch=[art.parent])


def test_report_refuses_a_plots_dir_with_foreign_csv(art: Path) -> None:
    plots = art.parent / "spreadsheets"
    plots.mkdir()
    (plots / "budget.csv").write_text("item,cost\npaper,3\n")
    expect_error(report(art, art / "report" / "index.html", "--plots-dir", str(plots)),
                 ["--plots-dir", "budget.csv", "not .*linprobe"], watch=[art.parent])


# --- locations that cannot be written -------------------------------------------------------------

def test_extract_into_a_read_only_folder(folder: Path, read_only: Path, tmp_path: Path) -> None:
    expect_error(extract(folder, read_only / "sub" / "e.h5"), ["--out", "read-only"],
                 watch=[tmp_path])


def test_train_into_a_read_only_folder(art: Path, read_only: Path) -> None:
    expect_error(train(art / "embeddings" / "e.h5", read_only), ["--out-dir", "read-only"],
                 watch=[art.parent])


def test_report_into_a_read_only_folder(art: Path, read_only: Path) -> None:
    expect_error(report(art, read_only / "index.html"), ["--out", "read-only"],
                 watch=[art.parent])


def test_immutable_output_file_is_refused(art: Path) -> None:
    html = art / "report" / "index.html"
    subprocess.run(["chattr", "+i", str(html)], check=True)
    try:
        expect_error(report(art, html), ["index.html", "immutable"], watch=[art.parent])
    finally:
        subprocess.run(["chattr", "-i", str(html)], check=True)


def test_out_folder_through_a_regular_file(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    expect_error(extract(folder, tmp_path / "notes.txt" / "e.h5"),
                 ["notes.txt", "not a folder", "--out"], watch=[tmp_path])


# --- one writer per output -------------------------------------------------------------------------

def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "linprobe.pipeline.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items() if k != "LINPROBE_DEBUG"})


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"first run ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _holds(lock: Path, pid: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return json.loads(lock.read_text()).get("pid") == pid
        except (OSError, ValueError):
            return False
    return check


def _second_fails_while_first_paused(first: subprocess.Popen, second: list[str],
                                     watch: list[Path]) -> None:
    """With ``first`` stopped, ``second`` fails at once naming it; then ``first`` completes."""
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert first.poll() is None
        t0 = time.monotonic()
        expect_error(second, [rf"\bpid {first.pid}\b", "another linprobe run", "started",
                              f"linprobe {second[0]} "], watch=watch)
        assert time.monotonic() - t0 < 30, "the second run waited for the first"
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "Traceback" not in err


def test_two_extracts_on_one_output(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "e.h5"
    partial = out.with_name("e.h5.partial")
    first = _start(extract(folder, out, *SLOW))
    try:
        _wait_for(partial.exists, first, "the partial file appeared")
        _second_fails_while_first_paused(first, extract(folder, out), watch=[tmp_path / "a"])
    finally:
        first.kill()
    assert not partial.exists()
    es = read_embeddings(out)
    assert es.embeddings.shape == (30, 512) and np.isfinite(es.embeddings).all()


def test_two_trains_on_one_artifact_set(art: Path) -> None:
    emb = art / "embeddings" / "e.h5"
    lock = art / "probes" / "e" / ("logreg.joblib" + LOCK_SUFFIX)
    first = _start(train(emb, art))
    try:
        _wait_for(_holds(lock, first.pid), first, "it took the lock")
        _second_fails_while_first_paused(first, train(emb, art), watch=[art.parent])
    finally:
        first.kill()
    assert json.loads((art / "metrics" / "e" / "logreg.json").read_text())["probe"] == "logreg"


def test_two_reports_on_one_output(art: Path) -> None:
    html = art / "report" / "index.html"
    first = _start(report(art, html))
    try:
        _wait_for(_holds(html.with_name(html.name + LOCK_SUFFIX), first.pid), first,
                  "it took the lock")
        _second_fails_while_first_paused(first, report(art, html), watch=[art.parent])
    finally:
        first.kill()
    assert "linprobe report" in html.read_text()


def test_stale_lock_of_a_killed_run_does_not_block(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "e.h5"
    lock = out.with_name(out.name + LOCK_SUFFIX)
    first = _start(extract(folder, out, *SLOW))
    _wait_for(out.with_name("e.h5.partial").exists, first, "the partial file appeared")
    first.kill()  # SIGKILL: no cleanup runs
    first.wait()
    assert _holds(lock, first.pid)(), "the killed run's lock file should still name it"
    r = expect_ok(extract(folder, out))
    assert "written" in r.out
    assert read_embeddings(out).embeddings.shape == (30, 512)


# --- permissions and reruns ---------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_outputs_get_the_users_umask(folder: Path, tmp_path: Path, umask: int, mode: int) -> None:
    art = tmp_path / "art"
    emb = art / "embeddings" / "e.h5"
    old = os.umask(umask)  # inherited by the CLI subprocesses
    try:
        expect_ok(extract(folder, emb))
        expect_ok(train(emb, art))
        expect_ok(report(art, art / "report" / "index.html"))
    finally:
        os.umask(old)
    files = [p for p in art.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".h5", ".json", ".csv", ".npy", ".joblib", ".html"}
    modes = {str(p.relative_to(art)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(mode)}, modes


def test_reruns_replace_linprobe_own_outputs(art: Path) -> None:
    emb = art / "embeddings" / "e.h5"
    assert "written" in expect_ok(extract(art.parent / "data", emb), watch=[art.parent / "data"]).out
    assert "logreg" in expect_ok(train(emb, art)).out
    r = expect_ok(report(art, art / "report" / "index.html", "--plots-dir", str(art / "plots")))
    assert "written" in r.out
