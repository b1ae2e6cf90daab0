"""Extraction across processes on one machine: 1 process vs 2 (torchrun, Ray), as ratios.

Per repeat, interleaved, on the same images with the same settings:

* ``single``: ``python -m linprobe extract`` with all cores' threads (today's one process);
* ``torchrun``: ``torchrun --standalone --nproc-per-node 2 -m linprobe extract``, each rank with
  half the cores' threads (``OMP_NUM_THREADS``), shards merged by rank 0;
* ``ray``: ``extract_on_ray(shards=2)`` on a local Ray instance started once by this script
  (``ray.init(num_cpus=cores)``: 2 tasks of half the cores each), shards merged by the driver.

Each is timed two ways: wall clock of the whole command (process start, model load, merge) and
the extraction loop alone (``seconds`` attr; for the sharded runs the slowest shard's). Ratios
are taken against the ``single`` run of the same repeat; medians over repeats are reported.
On a CPU-only machine 2 processes split the same cores, so a ratio near 1 is the expected
best: what they buy is overlapping one process's decoding with the other's forward pass. On
N GPUs each process (rank, task) gets a GPU of its own and the loop scales with N until the
images cannot be read and decoded fast enough (see docs/scaling.md).

    python benchmarks/scale.py                                   # 2,048 Fashion-MNIST PNGs
    python benchmarks/scale.py --images 8192 --image-size 112 --repeats 3 \\
        --json benchmarks/results/scale-2proc.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from linprobe.features.store import read_attrs

FMNIST = Path("/work/data/fmnist-full/train")
DEMO = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist-demo"


def make_images(dest: Path, n: int) -> Path:
    """``n`` PNGs in class folders, linked from the full Fashion-MNIST PNGs when present, else
    repeated from the bundled demo."""
    source = FMNIST if FMNIST.is_dir() else DEMO / "train"
    files = sorted(source.glob("*/*.png"))
    for i in range(n):
        f = files[(i * 7919) % len(files)]  # spread over the classes
        out = dest / f.parent.name / f"{i:06d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, out)
        except OSError:
            shutil.copy(f, out)
    return dest


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _loop_seconds(out: Path) -> float:
    attrs = read_attrs(out)
    shards = attrs.get("shards")
    return max(s["seconds"] for s in shards) if shards else float(attrs["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--backbone", default="torchvision:resnet18:none")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engines", default="single,torchrun,ray")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    engines = args.engines.split(",")
    cores = len(os.sched_getaffinity(0))
    half = max(1, cores // 2)
    work = Path(tempfile.mkdtemp(prefix="linprobe-scale-"))
    data = make_images(work / "data", args.images)
    common = ["extract", "--backbone", args.backbone, "--data", str(data), "--image-size",
              str(args.image_size), "--batch-size", str(args.batch_size), "--device", "cpu",
              "--precision", "float32"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINPROBE_TEST_")}
    if "ray" in engines:
        import ray

        from linprobe.features.config import ExtractConfig, SplitConfig
        from linprobe.pipeline.ray_engine import extract_on_ray

        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        cfg = ExtractConfig(image_size=args.image_size, batch_size=args.batch_size,
                            device="cpu", precision="float32")
    runs: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
    try:
        for r in range(args.repeats):
            for engine in engines:
                out = work / f"{engine}-{r}.h5"
                if engine == "single":
                    wall = _timed([sys.executable, "-m", "linprobe", *common, "--out", str(out)],
                                  {**env, "OMP_NUM_THREADS": str(cores)})
                elif engine == "torchrun":
                    wall = _timed([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                   "--nproc-per-node", "2", "-m", "linprobe", *common,
                                   "--out", str(out)], {**env, "OMP_NUM_THREADS": str(half)})
                else:
                    t0 = time.perf_counter()
                    extract_on_ray(args.backbone, data, out, cfg, SplitConfig(), shards=2)
                    wall = time.perf_counter() - t0
                loop = _loop_seconds(out)
                runs[engine].append({"wall_s": wall, "loop_s": loop,
                                     "images_per_s_wall": args.images / wall,
                                     "images_per_s_loop": args.images / loop})
                print(engine, r, json.dumps(runs[engine][-1]), flush=True)
                out.unlink()
    finally:
        if "ray" in engines:
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, object] = {"cores": cores, **{k: v for k, v in vars(args).items()
                                                     if k not in ("json", "engines")}}
    for engine in engines:
        result[engine] = {k: statistics.median(x[k] for x in runs[engine])
                          for k in runs[engine][0]}
        if engine != "single" and "single" in engines:
            for k in ("wall_s", "loop_s"):  # speed-up: single's time / this one's, per repeat
                result[engine][f"speedup_{k}"] = statistics.median(
                    s[k] / x[k] for s, x in zip(runs["single"], runs[engine]))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
