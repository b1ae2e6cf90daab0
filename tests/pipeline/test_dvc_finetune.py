"""Real `dvc repro` of the shipped dvc.yaml's finetune stage (fine-tune reference arms).

Off by default (no stage while finetune.backbones is empty); turned on for one backbone it runs
finetune@<backbone>-<arm> and the report ranks the arms next to the probes; editing a setting
re-runs only the fine-tune runs and the report; a SIGKILLed run resumes from its checkpoints,
which DVC leaves alone. Tiny real data (a slice of the demo at 32 px) and 2-epoch runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from linprobe.schema import ArtifactPaths

from .dvcproject import BIN, build_committed, copy_project, dvc, edit_params, ran_stages, run

REL = ArtifactPaths("artifacts")
TINY = {"epochs": 2, "lrs": [0.001], "batch_size": 16}  # seconds per run on one core


# Real fine-tune trainings inside real `dvc repro` runs: minutes on 2 cores (CI runs -m slow).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(project, output of its first `dvc repro` with the shipped finetune section: off)."""
    root = tmp_path_factory.mktemp("dvcft")
    return build_committed(root, lambda p: p.update(backbones={"lite0": p["backbones"]["lite0"]}))


@pytest.fixture
def project(built, tmp_path) -> Path:
    return copy_project(built[0], tmp_path / "dvcft")


def _enable(project: Path, **settings) -> None:
    edit_params(project, lambda p: p["finetune"].update(backbones=["lite0"], **settings))


def _leaderboard(project: Path) -> set[tuple[str, str]]:
    """(backbone, probe) of the report's leaderboard rows (their links to the per-run details)."""
    html = ArtifactPaths(project / "artifacts").report.read_text(encoding="utf-8")
    table = html.split('id="leaderboard-table"')[1].split("</table>")[0]
    rows = table.split('class="lb-row')[1:]
    return {tuple(r.split('href="#run-')[1].split('"')[0].split("-", 1)) for r in rows}


def test_off_by_default(built, project):
    assert ran_stages(built[1]) == {"check", "extract@lite0", "train@lite0-logreg", "report"}
    assert "finetune@" not in dvc("stage", "list", cwd=project)
    assert not list((project / "artifacts" / "probes").glob("*/*.safetensors"))
    assert _leaderboard(project) == {("lite0", "logreg")}


def test_enabled_arms_land_in_the_leaderboard_and_edits_rerun_only_them(project):
    _enable(project, arms=["finetune"], **TINY)
    out = dvc("repro", cwd=project)
    # check re-runs (its params changed) with an unchanged stamp: nothing of the probes re-runs.
    assert ran_stages(out) == {"check", "finetune@lite0-finetune", "report"}, out
    # Adding an arm runs only that arm (the stage lists the settings, not the run lists).
    _enable(project, arms=["finetune", "scratch"], **TINY)
    out = dvc("repro", cwd=project)
    assert ran_stages(out) == {"check", "finetune@lite0-scratch", "report"}, out

    art = ArtifactPaths(project / "artifacts")
    for arm in ("finetune", "scratch"):
        assert all(p.is_file() for p in art.finetune_run("lite0", arm).values())
        assert not art.finetune_checkpoints("lite0", arm).exists()  # removed once complete
    assert _leaderboard(project) == {("lite0", "logreg"), ("lite0", "finetune"),
                                     ("lite0", "scratch")}
    html = art.report.read_text(encoding="utf-8")
    assert 'id="run-lite0-scratch"' in html and 'id="probe-vs-finetune"' in html
    shown = json.loads(dvc("metrics", "show", "--json", cwd=project))[""]["data"]
    for arm in ("finetune", "scratch"):
        assert 0.0 <= shown[str(REL.metrics("lite0", arm))]["data"]["test"]["accuracy"] <= 1.0

    # A fine-tune setting: both arms and the report, nothing else.
    _enable(project, arms=["finetune", "scratch"], **{**TINY, "epochs": 3})
    out = dvc("repro", cwd=project)
    assert ran_stages(out) == {"check", "finetune@lite0-finetune", "finetune@lite0-scratch",
                               "report"}, out
    assert len(json.loads(art.metrics("lite0", "scratch").read_text())["history"]) == 3
    assert ran_stages(dvc("repro", cwd=project)) == set()


def test_a_killed_run_resumes_from_checkpoints_dvc_left_alone(project, tmp_path):
    # A fixed thread count: the sums of a CPU step depend on it, and the comparison is bitwise.
    _enable(project, arms=["finetune"], **{**TINY, "epochs": 4, "threads": 1})
    art = ArtifactPaths(project / "artifacts")
    first = art.finetune_checkpoints("lite0", "finetune") / "lr0.pt"  # written after epoch 1
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.exists(), "no checkpoint appeared"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage's linprobe: a power cut
        proc.wait()
    assert not art.metrics("lite0", "finetune").exists()

    resumed = run(str(BIN / "dvc"), "repro", cwd=project)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "linprobe: resuming lr 0.001 at epoch" in resumed.stderr + resumed.stdout
    killed = json.loads(art.metrics("lite0", "finetune").read_text())

    # The same run uninterrupted, in a fresh copy: the same training and test results.
    clean = copy_project(project, tmp_path / "clean")
    (clean / "artifacts" / "metrics" / "lite0" / "finetune.json").unlink()
    dvc("repro", "-s", "finetune@lite0-finetune", cwd=clean)
    whole = json.loads(ArtifactPaths(clean / "artifacts").metrics("lite0", "finetune").read_text())
    assert [h["train_loss"] for h in killed["history"]] == \
        [h["train_loss"] for h in whole["history"]]
    assert killed["test"] == whole["test"] and killed["selection"] == whole["selection"]
