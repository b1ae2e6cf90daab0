"""Write failures (disk full, quota, EIO, read-only) as one clear error, for every output.

The CLI prints a :class:`WriteError` as ``linprobe: error: <message>`` (exit 2). It subclasses
OSError so library callers that catch OSError keep working.
"""

from __future__ import annotations

import errno as E
import os
import re
from pathlib import Path

_WHAT = {
    E.ENOSPC: "no space left on device",
    E.EDQUOT: "disk quota exceeded",
    E.EFBIG: "file too large for the filesystem",
    E.EIO: "I/O error (EIO: the disk or network filesystem failed)",
    E.EROFS: "read-only filesystem",
    E.EACCES: "permission denied",
    E.EPERM: "operation not permitted",
}
_FREE = {E.ENOSPC, E.EDQUOT, E.EFBIG}


class WriteError(OSError):
    """Writing an output failed; the message names the file, the cause and what to do."""


def error_number(exc: BaseException) -> int | None:
    """The errno of ``exc``, also when HDF5 only put it in its message (``errno = 28``)."""
    while exc is not None:
        if getattr(exc, "errno", None):
            return int(exc.errno)
        m = re.search(r"errno = (\d+)", str(exc))
        if m:
            return int(m.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def write_error(path: str | Path, exc: BaseException, then: str) -> WriteError:
    """A WriteError for a failed write of ``path``; ``then`` says what to do once fixed (e.g.
    're-run the same command to resume')."""
    code = error_number(exc)
    what = _WHAT.get(code) or (os.strerror(code) if code else str(exc) or type(exc).__name__)
    fix = "free space and " if code in _FREE else "fix that and " if code else ""
    err = WriteError(f"{what} while writing {path}; {fix}{then}")
    err.errno = code
    return err
