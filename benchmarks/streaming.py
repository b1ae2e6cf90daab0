"""Streamed ``logreg`` (``chunk_mb``) against in-memory ``logreg`` on a file larger than a cap.

Builds, in a temporary folder, an embeddings file ``--times`` times the configured memory cap
``--cap-mb`` by tiling the rows of a real embeddings file (default: the EfficientNet-Lite0
Fashion-MNIST embeddings, read only), then runs the same ``linprobe train`` protocol (torch
L-BFGS, the same grid, no few-shot curve) twice, each mode in its own process, interleaved per
repeat:

* ``in_memory``: the file loaded, as today (``solver: torch``);
* ``streamed``: the same options plus ``chunk_mb`` (default: cap / 16);
* ``streamed_grid`` (only with ``--grid`` of several values): streamed with ``search: grid``,
  every C fitted at the full tol, as streamed runs did before they had the path search.

Each run also reports its selection: the search that ran, the fits and the L-BFGS iterations
(each iteration is about one evaluation, i.e. one read of the train split when streamed).

Per run: wall seconds of ``train_probe``, peak RSS (``VmHWM``), the RSS after the imports (torch
alone is a few hundred MiB whatever the data) and the peak growth over it, test accuracy and
the chosen C. Before the measured run each process makes the same run on a 2,000-row file, so
that one-off costs (imports, BLAS/OpenMP buffers) sit in the baseline. The peak growth over the
baseline is what the cap bounds: the streamed run should stay far below the cap, the in-memory
run above the file size (it holds the file plus a train+val copy).

    python benchmarks/streaming.py --quick                       # 32 MiB cap, 128 MiB file
    python benchmarks/streaming.py --cap-mb 512 --times 4 --repeats 2 \\
        --json benchmarks/results/streaming-2gib.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

SOURCE = Path("/work/data/fmnist-lite0-112.h5")
CHILD = "--child"


def tile(source: Path, dest: Path, target_bytes: int, block: int = 4096) -> dict:
    """Write ``dest``: the source's rows (and labels) repeated until the embeddings reach
    target_bytes; splits by position (every 10th row test, the next val, the rest train), so any
    prefix of the source has all three. Beyond the source's size rows repeat, and test rows
    then have copies in train: fine for time and memory, not for accuracy."""
    with h5py.File(source, "r") as src, h5py.File(dest, "w") as out:
        s_emb, labels = src["embeddings"], src["labels"][...]
        n_src, d = s_emb.shape
        n = max(10, target_bytes // (4 * d))
        emb = out.create_dataset("embeddings", (n, d), np.float32, chunks=(min(64, n), d))
        i = 0
        while i < n:       # contiguous source ranges, wrapping around at its end
            s = i % n_src
            j = min(i + block, n, i + n_src - s)
            emb[i:j] = s_emb[s:s + j - i]
            i = j
        out.create_dataset("ids", data=np.array([f"{i:09d}" for i in range(n)], dtype=object),
                           dtype=h5py.string_dtype())
        out.create_dataset("labels", data=labels[np.arange(n) % n_src])
        pos = np.arange(n) % 10
        out.create_dataset("split", data=np.where(pos == 0, 2, np.where(pos == 1, 1, 0))
                           .astype(np.uint8))
        for k, v in src.attrs.items():
            out.attrs[k] = v
    return {"rows": int(n), "dim": int(d), "bytes": int(n * d * 4)}


def status(key: str) -> int:
    """A /proc/self/status memory field, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(mode: str, path: str, small: str, options: str, out: str) -> None:
    """One run in this process: train_probe, then one JSON line on stdout."""
    import torch  # noqa: F401  (in the baseline: code, not data)

    from linprobe.models import stream_train  # noqa: F401
    from linprobe.models.train import train_probe

    # Warm-up, before the baseline: the same run on the small file. What the first fit costs
    # whatever the data (torch.optim imports torch._dynamo, ~150 MiB; BLAS and OpenMP thread
    # buffers, the allocator's arenas: ~50 MiB more) is not what the cap is about.
    cold = status("VmRSS")
    train_probe(small, "logreg", out, options=json.loads(options), name=f"warmup-{mode}")
    base = status("VmRSS")
    t0 = time.perf_counter()
    m = train_probe(path, "logreg", out, options=json.loads(options), name=mode)
    seconds = time.perf_counter() - t0
    peak = status("VmHWM")
    print(json.dumps({"mode": mode, "seconds": round(seconds, 2),
                      "peak_rss_mib": round(peak / 2**20, 1),
                      "baseline_rss_mib": round(base / 2**20, 1),
                      "warmup_growth_mib": round((base - cold) / 2**20, 1),
                      "peak_growth_mib": round((peak - base) / 2**20, 1),
                      "test_accuracy": m["test"]["accuracy"],
                      "C": m["selection"]["params"]["C"], "converged": m["converged"],
                      "search": m["selection"]["search"], "n_fits": m["selection"]["n_fits"],
                      "n_iter": m["selection"]["n_iter"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="embeddings file to tile (read)")
    ap.add_argument("--cap-mb", type=float, default=256.0, help="the memory cap, MiB")
    ap.add_argument("--times", type=float, default=4.0, help="file size / cap")
    ap.add_argument("--chunk-mb", type=float, default=None, help="default: cap / 16")
    ap.add_argument("--grid", default="0.1", help="comma-separated C values (default: one C)")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="32 MiB cap, max_iter 30")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.cap_mb, args.max_iter = 32.0, 30
    chunk_mb = args.chunk_mb or args.cap_mb / 16
    options = {"solver": "torch", "device": "auto", "few_shot": False, "n_boot": 100,
               "grid": [float(c) for c in args.grid.split(",")], "max_iter": args.max_iter}
    modes = {"in_memory": options, "streamed": {**options, "chunk_mb": chunk_mb}}
    if len(options["grid"]) > 1:
        modes["streamed_grid"] = {**modes["streamed"], "search": "grid"}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="linprobe-stream-") as tmp:
        path = Path(tmp) / "tiled.h5"
        data = tile(args.source, path, int(args.cap_mb * args.times * 2**20))
        small = Path(tmp) / "small.h5"
        tile(args.source, small, 2000 * 4 * data["dim"])
        print(f"{path.name}: {data['rows']} x {data['dim']} = {data['bytes'] / 2**20:.0f} MiB, "
              f"cap {args.cap_mb:g} MiB, chunk {chunk_mb:g} MiB", file=sys.stderr, flush=True)
        for r in range(args.repeats):
            for mode, opts in modes.items():
                out = subprocess.run([sys.executable, __file__, CHILD, mode, str(path),
                                      str(small), json.dumps(opts), str(Path(tmp) / "out")],
                                     capture_output=True, text=True, env=os.environ.copy())
                if out.returncode != 0:
                    sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(mode, r, json.dumps(runs[mode][-1]), flush=True)
    med = {m: {k: statistics.median(run[k] for run in rs)
               for k in ("seconds", "peak_rss_mib", "peak_growth_mib", "n_iter")}
           for m, rs in runs.items()}
    result = {"benchmark": "streaming", "file": data, "cap_mib": args.cap_mb,
              "chunk_mib": chunk_mb, "options": options, "runs": runs, "median": med,
              "streamed_over_in_memory": {
                  "seconds": round(med["streamed"]["seconds"] / med["in_memory"]["seconds"], 3),
                  "peak_growth": round(med["streamed"]["peak_growth_mib"]
                                       / max(med["in_memory"]["peak_growth_mib"], 1e-9), 4)},
              "streamed_path_over_grid": {
                  k: round(med["streamed"][k] / med["streamed_grid"][k], 3)
                  for k in ("seconds", "n_iter")} if "streamed_grid" in med else None,
              "streamed_growth_below_cap": med["streamed"]["peak_growth_mib"] < args.cap_mb,
              "in_memory_growth_above_cap": med["in_memory"]["peak_growth_mib"] > args.cap_mb,
              "machine": {"cpus": os.cpu_count()}}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tmp_json = Path(args.json).with_suffix(".json.tmp")
        tmp_json.write_text(json.dumps(result, indent=2) + "\n")
        tmp_json.replace(args.json)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(*sys.argv[2:7])
    else:
        main()
