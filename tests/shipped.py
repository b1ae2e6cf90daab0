"""The shipped params.yaml: what git has committed, not the working copy.

`make demo-finetune` and `make demo-multilabel` switch params with `dvc exp run -S`, which writes
them into the working params.yaml (the README says so); tests that read "the shipped params"
must not change their verdict after a user ran a demo. Outside a git checkout, or when the file
is unchanged, the working copy is the shipped one.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def committed_file(repo: Path, name: str) -> Path:
    """``repo/name`` as committed at HEAD: the file itself when unchanged (or not in git), else
    a temporary copy of HEAD's version, removed at exit."""
    path = repo / name
    try:
        changed = subprocess.run(["git", "-C", str(repo), "diff", "--quiet", "HEAD", "--", name],
                                 capture_output=True).returncode == 1
        if not changed:
            return path
        text = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{name}"],
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return path
    tmp = Path(tempfile.mkdtemp(prefix="linprobe-shipped-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    (tmp / name).write_bytes(text)
    return tmp / name


SHIPPED_PARAMS = committed_file(REPO, "params.yaml")
