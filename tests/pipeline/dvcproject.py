"""A temporary DVC project: git repo + `dvc init` + the shipped dvc.yaml + small params."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.shipped import SHIPPED_PARAMS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO = REPO / "data" / "fashion-mnist-demo"
# Small and fast: two real backbones (one pretrained, one random) at 32 px.
BACKBONES = {"lite0": {"spec": "lite:efficientnet-lite0"},
             "resnet18_random": {"spec": "torchvision:resnet18:none"}}


def run(*cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a command with the venv's `linprobe` and `dvc` on PATH, whatever its exit status."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def sh(*cmd: str, cwd: Path) -> str:
    """Run a command as ``run`` does; its output, or fail the test."""
    r = run(*cmd, cwd=cwd)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def dvc(*args: str, cwd: Path) -> str:
    return sh(str(BIN / "dvc"), *args, cwd=cwd)


def ran_stages(output: str) -> set[str]:
    """Names of the stages a `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def copy_slice(dst: Path, per_split: dict[str, int], classes: int = 4) -> None:
    """Copy the first N images per class and split of the demo data (real images)."""
    for split, n in per_split.items():
        for class_dir in sorted((DEMO / split).iterdir())[:classes]:
            out = dst / split / class_dir.name
            out.mkdir(parents=True)
            for png in sorted(class_dir.glob("*.png"))[:n]:
                shutil.copy(png, out / png.name)


def edit_params(project: Path, edit: Callable[[dict], object]) -> None:
    """Apply ``edit`` to the project's params.yaml, in place."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    edit(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def copy_project(built: Path, dst: Path) -> Path:
    """A copy of a project (git history, DVC cache and lock, outputs) for one test to change, so
    that no test sees another's edits. File times are kept: DVC sees nothing changed."""
    shutil.copytree(built, dst, symlinks=True)
    return dst


def init_project(root: Path, data_path: str | None, *, shipped_probes: bool = False) -> Path:
    """git + DVC project at ``root`` with the shipped dvc.yaml and params.yaml, made small.

    The caller has put the data under ``root`` already; ``data_path`` (relative) replaces
    ``data.path`` unless None; the probes are ``logreg`` alone unless ``shipped_probes``.
    Everything is committed.
    """
    sh("git", "init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    for name in ("dvc.yaml", ".dvcignore"):
        (root / name).write_text((REPO / name).read_text())
    params = yaml.safe_load(SHIPPED_PARAMS.read_text())
    if data_path is not None:
        params["data"]["path"] = data_path
    params["extract"].update(image_size=32, batch_size=16)
    params["backbones"] = dict(BACKBONES)
    if not shipped_probes:
        # One probe keeps the wiring tests fast; the shipped matrix is checked in test_params.
        params["probes"] = {"logreg": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)
    return root


def build_committed(root: Path, edit: Callable[[dict], object] | None = None) -> tuple[Path, str]:
    """A project in ``root`` on a small slice of the bundled demo (params edited by ``edit``),
    run once with `dvc repro` and committed: (root, the repro's output). Tests take copies."""
    copy_slice(root / "data" / "demo", {"train": 8, "val": 4, "test": 5})
    init_project(root, "data/demo")
    if edit is not None:
        edit_params(root, edit)
        sh("git", "commit", "-qam", "params edited", cwd=root)
    out = dvc("repro", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "first run", cwd=root)
    return root, out
