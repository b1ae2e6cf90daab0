"""Ctrl-C within a fraction of a second, even while a solver runs in C code.

Python runs signal handlers only in the main thread, between bytecodes. A LinearSVC fit
(liblinear), the lbfgs line search or a large BLAS call can stay inside C for minutes, so a
plain ``KeyboardInterrupt`` arrives only when the call returns. liblinear and BLAS release the
GIL, so :func:`run_interruptibly` runs the work in a daemon worker thread while the main thread
waits in short, interruptible joins; on SIGINT it raises :class:`StageInterrupted`, so the
caller's cleanup (locks, folders it made) runs, and the CLI then ends the process at once with
``os._exit(130)``. The worker is abandoned mid-call: every artifact is written to a temporary
name and renamed when complete (``linprobe.models.persist``), so nothing partial is left under a
final name.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C'd command


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C during the stage ``what`` (e.g. "train"), raised in the main thread."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def interrupted(what: str | None = None) -> None:
    """Say that ``what`` (a stage name) was interrupted and end the process now (exit 130)."""
    sys.stdout.flush()
    # Artifacts appear only complete (temp file + rename), so a re-run simply starts over.
    detail = f" during {what}; re-run the same command to start it again" if what else ""
    print(f"linprobe: interrupted{detail}", file=sys.stderr, flush=True)
    # os._exit, not sys.exit: a worker may still be inside C code, and interpreter shutdown
    # would wait for non-daemon threads (data loading) to finish their current batch.
    os._exit(EXIT_INTERRUPTED)


def run_interruptibly(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread; its result, or its exception re-raised here.

    ``what`` names the work in the interruption message (e.g. "train").
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the main thread, which decides
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"linprobe-{what}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)   # timed waits let the main thread run the SIGINT handler
    except KeyboardInterrupt:
        raise StageInterrupted(what) from None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
