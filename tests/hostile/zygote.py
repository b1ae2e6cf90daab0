"""A pre-imported `linprobe` process that forks one child per CLI run of the hostile suite.

Each case runs the real command (``linprobe.pipeline.cli.main``) in its own process, with its own
argv, working directory, environment, umask, stdin (/dev/null) and stdout/stderr, and reports the
real exit status. What it saves is interpreter start-up and the imports (torch, torchvision,
scikit-learn, h5py, matplotlib: ~6 s a run on 2 cores), which made the suite three times slower
than its work. The zygote itself never runs a torch op, so no thread pool exists when it forks.
Set ``LINPROBE_TEST_FRESH=1`` to run every case in a fresh interpreter instead.

Protocol: one JSON request per line on stdin ({argv, cwd, env, umask, out, err}), one line back
per request: the child's pid, then its exit code (negative: killed by that signal).
"""

from __future__ import annotations

import json
import os
import sys


def _child(req: dict) -> None:
    """In the forked child: become the requested `linprobe` run, then exit with its code."""
    os.setsid()  # a signal meant for the child's group never reaches the zygote
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    os.umask(req["umask"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, req["out"], os.O_WRONLY | os.O_TRUNC | os.O_CREAT),
                            (2, req["err"], os.O_WRONLY | os.O_TRUNC | os.O_CREAT)):
        new = os.open(path, flags, 0o600)
        os.dup2(new, fd)
        os.close(new)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.argv = ["linprobe", *req["argv"]]
    from linprobe.pipeline.cli import main

    try:
        code = main(req["argv"])
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what a real interpreter would print before exiting 1
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def serve() -> None:
    """Import what the commands import, then fork a child per request line."""
    import h5py  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.svm  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import linprobe.features.extract  # noqa: F401
    import linprobe.models.train  # noqa: F401
    import linprobe.pipeline.cli  # noqa: F401
    import linprobe.reports.build  # noqa: F401

    reply = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        reply.write(f"{pid}\n")
        _, status = os.waitpid(pid, 0)
        reply.write(f"{os.waitstatus_to_exitcode(status)}\n")


if __name__ == "__main__":
    serve()
