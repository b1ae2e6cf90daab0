"""Output safety of the CLI commands: checked before any work starts, held for the whole run.

:func:`claim_outputs` refuses an output path that is a directory, an input of the run (or inside
an input folder), an existing file linprobe did not write as that kind of output, or a location
that cannot be written; then it takes one lock per output (a ``filelock`` flock beside it, which
the kernel releases when the process dies, so a killed run leaves no stale lock). A second run on
the same output fails at once with the first run's pid, host, start time and command line, which
the holder writes into its lock file (filelock opens it without truncating).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import os
import shlex
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from linprobe.schema import PREDICTION_HEADER, ArtifactPaths, looks_like_metrics

# Lock files sit beside their output (DVC deletes outs before a stage runs; a lock inside an out
# would go with it). .gitignore and .dvcignore list the suffix.
LOCK_SUFFIX = ".linprobe-lock"

_FS_IOC_GETFLAGS = 0x80086601  # Linux: inode flags; immutable and append-only bind root too
_FS_NOREPLACE_FL = 0x10 | 0x20


class OutputError(ValueError):
    """An output linprobe refuses to write (the CLI prints the message, exit 2)."""


@dataclass(frozen=True)
class Output:
    """One path a command writes. kind: a key of :data:`_KINDS` (what an existing file there must
    be), or 'folder' (a directory the command writes into)."""

    path: Path
    flag: str
    kind: str


# --- recognising linprobe's own outputs (never unpickling or executing anything) -------------------

def _head(path: Path, n: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _is_embeddings(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "embeddings" in f and {"backbone", "embed_dim"} <= set(f.attrs)
    except Exception:  # anything h5py cannot open as ours is not ours
        return False


def _is_partial(path: Path) -> bool:
    """linprobe's partial embeddings file, or one torn by a kill before its first flush (empty,
    an HDF5 file that cannot be opened, or one holding only the writer's datasets so far; the
    writer starts such a file over)."""
    if _is_embeddings(path) or path.stat().st_size == 0:
        return True
    if not _head(path, 8).startswith(b"\x89HDF\r\n\x1a\n"):
        return False
    import h5py

    from linprobe.features.writer import PARTIAL_DATASETS

    try:
        with h5py.File(path, "r") as f:
            return set(f) <= PARTIAL_DATASETS
    except Exception:  # torn: not a complete HDF5 file of anyone
        return True


def _is_probe(path: Path) -> bool:
    head = _head(path, 256)  # joblib pickle of Pipeline: the class is named in the first bytes
    return head.startswith(b"\x80") and b"sklearn.pipeline" in head and b"Pipeline" in head


def _is_finetuned(path: Path) -> bool:
    """A safetensors file whose metadata names a fine-tune arm (header read as JSON only)."""
    head = _head(path, 8)
    if len(head) < 8:
        return False
    size = int.from_bytes(head, "little")
    try:
        header = json.loads(_head(path, 8 + min(size, 2**24))[8:])
        return "arm" in header.get("__metadata__", {})
    except (ValueError, AttributeError):
        return False


def _is_metrics(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return looks_like_metrics(data)


def _first_line_is(header: tuple[str, ...]) -> Callable[[Path], bool]:
    def check(path: Path) -> bool:
        line = _head(path, 1024).split(b"\n", 1)[0].rstrip(b"\r")
        return line == ",".join(header).encode()
    return check


def _is_scores(path: Path) -> bool:
    import numpy as np

    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            _, _, dtype = read(f)
    except (OSError, ValueError, SyntaxError):
        return False
    return dtype.kind == "f"


def _is_report(path: Path) -> bool:
    from linprobe.reports.build import GENERATOR

    return f'<meta name="generator" content="{GENERATOR} '.encode() in _head(path)


def _curve_header() -> tuple[str, ...]:
    from linprobe.reports.build import LEARNING_CURVE_HEADER

    return LEARNING_CURVE_HEADER


# kind -> (recogniser, what it is, the command that writes it)
_KINDS: dict[str, tuple[Callable[[Path], bool], str, str]] = {
    "embeddings": (_is_embeddings, "an HDF5 embeddings file", "extract"),
    "partial": (_is_partial, "a partial HDF5 embeddings file", "extract"),
    "probe": (_is_probe, "a probe (.joblib)", "train"),
    "model": (_is_finetuned, "a fine-tuned network (.safetensors)", "finetune"),
    "metrics": (_is_metrics, "a metrics file", "train"),
    "predictions": (_first_line_is(PREDICTION_HEADER), "a predictions CSV", "train"),
    "scores": (_is_scores, "a scores array", "train"),
    "report": (_is_report, "an HTML report", "report"),
    "curve": (lambda p: _first_line_is(_curve_header())(p), "a learning-curve CSV", "report"),
}


# --- what each command writes and reads --------------------------------------------------------------

def _plan(command: str, args: argparse.Namespace) -> tuple[list[Output], list[tuple[str, Path]],
                                                             list[Output]]:
    """(outputs, inputs as (flag, path), outputs to lock) of one command's arguments."""
    inputs = [("--params", Path(args.params))] if getattr(args, "params", None) else []
    if command == "extract":
        from linprobe.features.store import fresh_partial_path, partial_path

        out = Output(Path(args.out), "--out", "embeddings")
        if getattr(args, "shard", None) is not None:  # --shard, a torchrun rank: its own file
            from linprobe.features.shards import shard_path

            out = Output(shard_path(args.out, args.shard), "--out", "embeddings")
        inputs.append(("--data", Path(args.data)))
        if args.backbone.startswith("file:"):
            inputs.append(("--backbone", Path(args.backbone[len("file:"):])))
        partials = [Output(p(out.path), "--out", "partial")
                    for p in (partial_path, fresh_partial_path)]
        return [out, *partials], inputs, [out]
    if command == "merge":
        from linprobe.features.shards import shards_dir

        out = Output(Path(args.out), "--out", "embeddings")
        return [out], [("--out", shards_dir(args.out))], [out]
    if command == "train":
        emb = Path(args.embeddings)
        inputs.append(("--embeddings", emb))
        files = [Output(p, "--out-dir", kind)
                 for kind, p in ArtifactPaths(args.out_dir).run(emb.stem, args.probe).items()]
        return [Output(Path(args.out_dir), "--out-dir", "folder"), *files], inputs, files[:1]
    if command == "finetune":
        from linprobe.pipeline.params import load_params

        inputs.append(("--params data.path", Path(load_params(args.params).data.path)))
        files = [Output(p, "--out-dir", kind) for kind, p in
                 ArtifactPaths(args.out_dir).finetune_run(args.backbone, args.arm).items()]
        return [Output(Path(args.out_dir), "--out-dir", "folder"), *files], inputs, files[:1]
    if command == "report":
        art = ArtifactPaths(args.artifacts)
        inputs += [("--artifacts", sub)
                   for sub in (art.embeddings_dir, art.metrics_dir, art.predictions_dir)]
        outs = [Output(Path(args.out), "--out", "report")]
        if args.plots_dir is not None:
            outs.append(Output(Path(args.plots_dir), "--plots-dir", "folder"))
        return outs, inputs, outs
    raise ValueError(f"no outputs defined for command {command!r}")


# --- checks ------------------------------------------------------------------------------------------

def _fail(out: Output, problem: str, fix: str | None = None) -> OutputError:
    return OutputError(f"{out.flag} {out.path}: {problem}; "
                       f"{fix or f'choose another {out.flag}'}")


def _check_not_input(out: Output, inputs: list[tuple[str, Path]]) -> None:
    real = Path(os.path.realpath(out.path))
    for flag, inp in inputs:
        if not os.path.lexists(inp):
            continue
        same = out.path.exists() and os.path.samefile(out.path, inp)
        if same or (inp.is_dir() and real.is_relative_to(os.path.realpath(inp))):
            where = "is" if same else f"lies inside {inp}, which is"
            raise _fail(out, f"{where} an input of this run ({flag}); linprobe never writes "
                             f"over its inputs")


def _check_location(out: Output, created: list[Path]) -> None:
    """The folder that will hold ``out`` exists or can be created, and can be written; the
    folders made for it are appended to ``created`` (outermost first)."""
    if out.kind == "folder":
        if out.path.exists() and not out.path.is_dir():
            raise _fail(out, "exists and is not a folder")
        folder = out.path
    else:
        if out.path.is_dir():
            raise _fail(out, "is a directory; give a file path")
        folder = out.path.parent
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _fail(out, f"{existing} is not a folder (it is a file), so nothing can be "
                         f"created below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        ro = os.statvfs(existing).f_flag & os.ST_RDONLY
        raise _fail(out, f"{existing} cannot be written ("
                         f"{'read-only file system' if ro else 'permission denied'})",
                    f"choose another {out.flag} or make the folder writable")
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        created += [p for p in reversed(missing) if p not in created]
    except OSError as exc:
        raise _fail(out, f"cannot create folder {folder} ({exc.strerror})") from None


def _check_replaceable(out: Output) -> None:
    """An existing file at ``out`` is linprobe's own output of that kind and may be replaced."""
    if out.kind == "folder":
        if out.flag == "--plots-dir" and out.path.is_dir():  # stale *.csv there are deleted
            for csv in sorted(out.path.glob("*.csv")):
                _check_replaceable(Output(csv, out.flag, "curve"))
        return
    if not out.path.exists():
        return
    if not out.path.is_file():
        raise _fail(out, "exists and is not a regular file")
    recognise, what, command = _KINDS[out.kind]
    if not recognise(out.path):
        raise _fail(out, f"exists and is not {what} written by `linprobe {command}`; linprobe "
                         f"only replaces its own outputs",
                    f"choose another {out.flag} or delete it yourself")
    if _immutable(out.path):
        raise _fail(out, "is read-only (immutable or append-only, see lsattr)",
                    f"choose another {out.flag} or clear the flag (chattr -i)")


def _immutable(path: Path) -> bool:
    """Whether ``path`` has the immutable or append-only inode flag (Linux; False elsewhere)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (ImportError, OSError):
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
        return bool(flags[0] & _FS_NOREPLACE_FL)
    except OSError:  # a filesystem without inode flags
        return False
    finally:
        os.close(fd)


# --- locks ---------------------------------------------------------------------------------------------

def lock_path(path: Path) -> Path:
    """The lock file of output ``path`` (beside it; the real folder, so aliases share it)."""
    return Path(os.path.realpath(path.parent)) / (path.name + LOCK_SUFFIX)


def _owner_record() -> bytes:
    return json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "command": "linprobe " + shlex.join(sys.argv[1:]),
    }).encode() + b"\n"


def _describe_owner(lock: Path) -> str:
    try:
        owner = json.loads(lock.read_text(encoding="utf-8"))
        return (f"pid {owner['pid']} on {owner['host']}, started {owner['started']}: "
                f"{owner['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "its details are not recorded yet"


def _lock(out: Output, stack: contextlib.ExitStack) -> None:
    from filelock import FileLock, Timeout

    record = _owner_record()

    def write_owner(fd: int) -> None:  # the held descriptor: replace the last holder's record
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except OSError:  # a full disk: the record only informs, the lock holds without it
            pass

    path = lock_path(out.path)
    lock = FileLock(str(path), blocking=False, on_acquired=write_owner)
    try:
        stack.enter_context(lock)
        # A run leaves no lock file behind. Unlinked while still held: a run that opened the old
        # file meanwhile sees it unlinked once it gets the lock, and filelock retries on a new one.
        stack.callback(path.unlink, missing_ok=True)
    except Timeout:
        raise _fail(out, f"another linprobe run is writing it ({_describe_owner(path)})",
                    "wait for that run to finish, or stop it; two runs must not write one "
                    "output") from None
    except OSError as exc:
        raise _fail(out, f"cannot create the lock file {path} ({exc.strerror})") from None


@contextlib.contextmanager
def claim_outputs(command: str, args: argparse.Namespace) -> Iterator[None]:
    """Check every output of ``command`` (see module doc) and hold its locks while the body runs.

    Raises OutputError (a ValueError) before any work when an output must not be written.
    """
    outputs, inputs, locked = _plan(command, args)
    for out in outputs:
        _check_not_input(out, inputs)
    created: list[Path] = []
    with contextlib.ExitStack() as stack:
        # Last out: folders made for the outputs go again if the run put nothing in them.
        stack.callback(_remove_empty, created)
        for out in outputs:
            _check_location(out, created)
        partials = outputs[1:] if command == "extract" else []
        for out in outputs:
            if out not in partials:  # a live partial is only looked at under the lock
                _check_replaceable(out)
        for out in locked:
            _lock(out, stack)
        for out in partials:
            _check_replaceable(out)
        yield


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (outermost first) that is empty, innermost first."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote there), or already gone
            pass
