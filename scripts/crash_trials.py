"""Crash trials (issue 9, item 12): SIGKILL `linprobe extract` and `linprobe train` at seeded
random moments, re-run each to completion, and check that every trial ends identical to an
uninterrupted run and that no truncated file ever sits under a final name.

    python scripts/crash_trials.py [--trials 10] [--seed 0] [--per-class 16] [--workdir DIR]

What it does:
1. Writes a small real dataset (Fashion-MNIST PNGs, 3 classes x ``--per-class``) and runs
   ``linprobe extract`` (resnet18 random-init, 64 px, batches of 4) and ``linprobe train``
   (logreg) once uninterrupted: the references, and their wall times T_extract, T_train.
2. Each extract trial starts a fresh extraction and, once its partial file exists, kills it with
   SIGKILL after a delay drawn uniformly from [0, T_write] (T_write: the reference run's time
   from the partial file's creation to its end; the start-up before it writes nothing), checks the final name (absent, or a complete file equal to
   the reference), re-runs the same command and compares the embeddings, ids, labels and split
   bit for bit with the reference.
3. Each train trial does the same on one output folder shared by all train trials (so most kills
   land while a previous complete set of artifacts exists): after the kill every artifact under
   its final name must load and, when the metrics file is present, match the reference; after
   the re-run the metrics JSON must equal the reference apart from timings (``seconds``,
   ``fit_seconds``, ``created``) and the scores must be bit-identical.
Prints one row per trial and a summary; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from linprobe.features.store import read_embeddings  # noqa: E402

# Timing and load: the `threads` record holds this run's measured rates and thread counts.
TIMING_KEYS = {"seconds", "fit_seconds", "created", "threads"}
EXTRACT = ["--backbone", "torchvision:resnet18:none", "--image-size", "64", "--batch-size", "4",
           "--device", "cpu", "--workers", "0"]


def _cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "linprobe.pipeline.cli", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}


def _run(args: list[str]) -> float:
    """Run to completion; wall seconds."""
    t0 = time.perf_counter()
    r = subprocess.run(args, env=_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def _first_write(args: list[str], watch: Path) -> tuple[float, float]:
    """Run to completion; (wall seconds, seconds until ``watch`` first appeared)."""
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0, seen = time.perf_counter(), None
    while proc.poll() is None:
        if seen is None and watch.exists():
            seen = time.perf_counter() - t0
        time.sleep(0.01)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode})")
    total = time.perf_counter() - t0
    return total, total if seen is None else seen


def _kill_after(args: list[str], delay: float, after: Path | None = None) -> bool:
    """Start ``args``, SIGKILL it ``delay`` s after ``after`` appears (or after the start);
    True if it was still running."""
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while after is not None and proc.poll() is None and not after.exists():
        time.sleep(0.01)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _strip(obj):
    """The metrics JSON without timing fields."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _same_embeddings(a: Path, b: Path) -> bool:
    x, y = read_embeddings(a), read_embeddings(b)
    return (x.embeddings.tobytes() == y.embeddings.tobytes() and x.ids.tolist() == y.ids.tolist()
            and np.array_equal(x.labels, y.labels) and np.array_equal(x.split, y.split))


def _artifacts(root: Path) -> dict[str, Path]:
    base = ("bb", "logreg")
    return {"metrics": root / "metrics" / base[0] / f"{base[1]}.json",
            "model": root / "probes" / base[0] / f"{base[1]}.joblib",
            "csv": root / "predictions" / base[0] / f"{base[1]}.csv",
            "scores": root / "predictions" / base[0] / f"{base[1]}.scores.npy"}


def _check_train_outputs(root: Path, ref: Path) -> str | None:
    """None if every artifact under a final name is complete (and the set consistent)."""
    import joblib

    got, want = _artifacts(root), _artifacts(ref)
    try:
        if got["metrics"].exists():
            if _strip(json.loads(got["metrics"].read_text())) != \
                    _strip(json.loads(want["metrics"].read_text())):
                return "metrics differ"
            if not all(p.exists() for p in got.values()):
                return "metrics present without the other artifacts"
        if got["model"].exists():
            joblib.load(got["model"])
        if got["scores"].exists() and \
                np.load(got["scores"]).tobytes() != np.load(want["scores"]).tobytes():
            return "scores differ"
        if got["csv"].exists() and got["csv"].read_bytes() != want["csv"].read_bytes():
            return "predictions csv differs"
    except Exception as exc:  # a truncated file under a final name
        return f"unreadable final file: {type(exc).__name__}: {exc}"
    return None


def extract_trials(work: Path, data: Path, n: int, rng: np.random.Generator) -> list[dict]:
    ref = work / "ref" / "bb.h5"
    t_ref, t_write = _first_write(_cmd("extract", *EXTRACT, "--data", data, "--out", ref),
                                  ref.with_name("bb.h5.partial"))
    rows = []
    for i in range(n):
        out = work / f"extract{i}" / "bb.h5"
        partial = out.with_name("bb.h5.partial")
        # Kill moments spread over the writing phase (from the partial file's creation to the
        # end), not over the interpreter's start-up, where a kill leaves nothing to check.
        delay = float(rng.uniform(0, t_ref - t_write))
        killed = _kill_after(_cmd("extract", *EXTRACT, "--data", data, "--out", out), delay,
                             after=partial)
        problem = None
        if out.exists() and not _same_embeddings(ref, out):
            problem = "final file incomplete or different after the kill"
        state = "final" if out.exists() else "partial" if partial.exists() else "nothing"
        _run(_cmd("extract", *EXTRACT, "--data", data, "--out", out))
        resumed = read_embeddings(out, load_embeddings=False).attrs.get("resumed_from", 0)
        if problem is None and not _same_embeddings(ref, out):
            problem = "embeddings differ from the uninterrupted run"
        rows.append({"stage": "extract", "trial": i, "delay_s": delay, "killed": killed,
                     "after_kill": state, "resumed_from": resumed, "ok": problem is None,
                     "problem": problem or ""})
    return rows


def train_trials(work: Path, n: int, rng: np.random.Generator) -> list[dict]:
    h5 = work / "ref" / "bb.h5"  # the uninterrupted extraction
    ref, out = work / "train_ref", work / "train"
    args = ["train", "--embeddings", h5, "--probe", "logreg"]
    t_ref = _run(_cmd(*args, "--out-dir", ref))
    rows = []
    for i in range(n):
        delay = float(rng.uniform(0, t_ref))
        before = _artifacts(out)["metrics"].exists()
        killed = _kill_after(_cmd(*args, "--out-dir", out), delay)
        problem = _check_train_outputs(out, ref)
        _run(_cmd(*args, "--out-dir", out))
        problem = problem or _check_train_outputs(out, ref)
        if problem is None and not _artifacts(out)["metrics"].exists():
            problem = "no metrics after the re-run"
        temps = len(list(out.rglob(".*.tmp")))
        rows.append({"stage": "train", "trial": i, "delay_s": delay, "killed": killed,
                     "after_kill": "previous set" if before else "nothing",
                     "resumed_from": "-", "ok": problem is None,
                     "problem": problem or (f"{temps} temp file(s) left" if temps else "")})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10, help="trials per stage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=16, help="images per class (3 classes)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    args = ap.parse_args(argv)
    from tests.features.imagedata import write_folder

    work = args.workdir or Path(tempfile.mkdtemp(prefix="crash_trials_"))
    work.mkdir(parents=True, exist_ok=True)
    data = write_folder(work / "data", per_class=args.per_class, classes=3)
    rng = np.random.default_rng(args.seed)
    rows = extract_trials(work, data, args.trials, rng) + train_trials(work, args.trials, rng)
    w = csv.writer(sys.stdout, delimiter="\t", lineterminator="\n")
    w.writerow(["stage", "trial", "delay_s", "killed", "after_kill", "resumed_from", "ok",
                "problem"])
    for r in rows:
        w.writerow([r["stage"], r["trial"], f"{r['delay_s']:.2f}", r["killed"], r["after_kill"],
                    r["resumed_from"], r["ok"], r["problem"]])
    for stage in ("extract", "train"):
        mine = [r for r in rows if r["stage"] == stage]
        print(f"{stage}: {sum(r['ok'] for r in mine)}/{len(mine)} identical to the uninterrupted "
              f"run, {sum(r['killed'] for r in mine)} killed mid-run, "
              f"{sum(r['after_kill'] == 'partial' for r in mine)} resumed from a partial file")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
