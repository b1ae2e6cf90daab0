"""Run the ``linprobe`` command as a user would, and check that it failed (or worked) cleanly.

Every hostile case goes through :func:`expect_error` (or :func:`expect_ok`): the exit code, the
``linprobe: error:`` line and the words the message must contain, no traceback anywhere, and no
file that existed before the run was modified or deleted (sha256, size and mtime of every file
under the watched folders).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> Result:
    """``python -m linprobe.pipeline.cli ARGS`` in a subprocess (no stdin, LINPROBE_DEBUG unset)."""
    full_env = {k: v for k, v in os.environ.items() if k != "LINPROBE_DEBUG"}
    full_env.update(env or {})
    r = subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, env=full_env,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return Result(r.returncode, r.stdout, r.stderr)


def snapshot(roots: Iterable[Path]) -> dict[str, tuple[int, int, str]]:
    """{path: (size, mtime_ns, sha256)} of every file below ``roots`` (links not followed)."""
    out: dict[str, tuple[int, int, str]] = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for p in files:
            if p.is_symlink():
                continue
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def assert_unchanged(before: dict, after: dict) -> None:
    """Every file of ``before`` still exists with the same size, mtime and content."""
    lost = sorted(set(before) - set(after))
    changed = sorted(p for p in before if p in after and before[p] != after[p])
    assert not lost and not changed, f"deleted: {lost}; modified: {changed}"


def assert_clean(r: Result) -> None:
    assert "Traceback" not in r.err and "Traceback" not in r.out, r.err[-3000:]


def expect_error(args: Sequence[str | Path], match: str | Sequence[str], *,
                 watch: Iterable[Path] = (), cwd: Path | None = None,
                 env: dict[str, str] | None = None, code: int = 2) -> Result:
    """Run and assert: exit ``code``, a ``linprobe: error:`` line whose text matches every
    regex of ``match`` (case-insensitive), no traceback, nothing under ``watch`` changed."""
    watch = list(watch)
    before = snapshot(watch)
    r = run_cli(*args, cwd=cwd, env=env)
    assert_clean(r)
    assert r.code == code, f"exit {r.code}, expected {code}\nstdout: {r.out}\nstderr: {r.err}"
    assert "linprobe: error:" in r.err, r.err
    message = r.err[r.err.index("linprobe: error:"):]
    for pattern in [match] if isinstance(match, str) else match:
        assert re.search(pattern, message, re.I | re.S), f"{pattern!r} not in:\n{message}"
    assert_unchanged(before, snapshot(watch))
    return r


def expect_ok(args: Sequence[str | Path], *, watch: Iterable[Path] = (), cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Result:
    """Run and assert: exit 0, no traceback, nothing under ``watch`` changed."""
    watch = list(watch)
    before = snapshot(watch)
    r = run_cli(*args, cwd=cwd, env=env)
    assert_clean(r)
    assert r.code == 0, f"exit {r.code}\nstdout: {r.out}\nstderr: {r.err}"
    assert_unchanged(before, snapshot(watch))
    return r
