"""scripts/crash_trials.py in a reduced form: 3 SIGKILLs of extract and of train at seeded
random moments; every trial must end identical to the uninterrupted run (issue 9, item 12)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_trials.py"


@pytest.mark.slow
def test_crash_trials_reduced(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("crash_trials", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    code = mod.main(["--trials", "3", "--seed", "1", "--per-class", "8",
                     "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "extract: 3/3 identical" in out and "train: 3/3 identical" in out
