"""The tests' "shipped params" are git's committed params.yaml, not a demo's edited copy."""

from __future__ import annotations

import subprocess

from tests.shipped import committed_file


def _git(*args: str, cwd) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


def test_an_edited_working_copy_is_not_what_the_tests_read(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    _git("init", "-q", cwd=tmp_path)
    _git("add", "params.yaml", cwd=tmp_path)
    _git("commit", "-qm", "init", cwd=tmp_path)
    assert committed_file(tmp_path, "params.yaml") == tmp_path / "params.yaml"
    # what `dvc exp run -S finetune.enabled=true` (make demo-finetune) does to the working copy
    (tmp_path / "params.yaml").write_text("seed: 0\nfinetune:\n  enabled: true\n")
    shipped = committed_file(tmp_path, "params.yaml")
    assert shipped != tmp_path / "params.yaml" and shipped.read_text() == "seed: 0\n"
    assert (tmp_path / "params.yaml").read_text().endswith("enabled: true\n")  # left alone


def test_outside_git_the_file_itself_is_shipped(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert committed_file(tmp_path, "params.yaml") == tmp_path / "params.yaml"
