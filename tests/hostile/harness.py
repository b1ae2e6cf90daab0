"""Run the ``linprobe`` command as a user would, and check that it failed (or worked) cleanly.

Every hostile case goes through :func:`expect_error` (or :func:`expect_ok`): the exit code, the
``linprobe: error:`` line and the words the message must contain, no traceback anywhere, and no
file that existed before the run was modified or deleted (sha256, size and mtime of every file
under the watched folders).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
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
    """``linprobe ARGS`` in its own process (no stdin, LINPROBE_DEBUG unset): a child forked by
    the pre-imported zygote (see ``zygote.py``), or with LINPROBE_TEST_FRESH=1 a fresh
    ``python -m linprobe.pipeline.cli``."""
    full_env = {k: v for k, v in os.environ.items() if k != "LINPROBE_DEBUG"}
    full_env.update(env or {})
    argv = [str(a) for a in args]
    if os.environ.get("LINPROBE_TEST_FRESH"):
        r = subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", *argv],
                           capture_output=True, text=True, cwd=cwd, env=full_env,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)
    return _ZYGOTE.run(argv, cwd or Path.cwd(), full_env, timeout)


class _Zygote:
    """The client side of ``zygote.py``: started on first use, restarted if it died."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            env = {k: v for k, v in os.environ.items() if k != "LINPROBE_DEBUG"}
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("zygote.py"))], cwd=REPO, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        return self.proc

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Result:
        proc = self._start()
        with tempfile.TemporaryDirectory(prefix="linprobe-cli-") as tmp:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            mask = os.umask(0o022)
            os.umask(mask)  # the caller's umask, as a subprocess would inherit it
            proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd), "env": env, "umask": mask,
                                         "out": str(out), "err": str(err)}) + "\n")
            pid = int(proc.stdout.readline())
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                os.killpg(pid, signal.SIGKILL)
                proc.stdout.readline()
                raise subprocess.TimeoutExpired(["linprobe", *argv], timeout)
            code = int(proc.stdout.readline())
            return Result(code, out.read_text(errors="replace"), err.read_text(errors="replace"))


_ZYGOTE = _Zygote()


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
