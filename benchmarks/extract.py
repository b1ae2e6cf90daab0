"""Extraction throughput, measured side by side in one run (issue 3 item 8).

For each image set (JPEG photos at dataset size ~500x375, camera size ~4000x3000, small PNGs):

* model-only: the backbone's forward pass on pre-made input tensors, with the model exactly as
  the engine runs it (``prepare_model``: channels_last, BatchNorm folded where traceable), same
  batch, resolution and threads, called on slices of ``forward_rows`` images as the engine does
  (on CPU as many as fit a cache-sized budget: 7 for resnet18 at 224 px) -- the ceiling for
  end-to-end throughput; ``model_only_unsliced`` calls it on the whole batch, for reference;
* end-to-end: ``extract_embeddings`` (decode, resize, forward, HDF5 write);
* decode-only: the engine's in-process loader alone (decode + resize on a thread pool as wide
  as torch's threads); since the engine decodes between forward passes on CPU, end-to-end is
  at most 1 / (1/model-only + 1/decode-only) -- the ``e2e_over_model_only`` ceiling;
* naive-model-only: the naive loop's forward alone (NCHW, unfolded, batch 4, autograd on) on
  pre-made tensors: model-only / naive-model-only bounds what a faster pipeline can gain;
* naive: the classic transfer-learning-tutorial loop (DataLoader batch 4 with 4 workers, autograd
  on, NCHW, full-size PIL decode + torchvision Resize/CenterCrop/ToTensor/Normalize), timed in
  steady state like the engine (workers' start-up excluded).

Every measurement except the RSS runs once per repeat, interleaved, and each ratio is taken
against the run next to it; the medians are reported.

Then peak RSS of the extraction process as the number of images grows (should stay flat).
Photos come from scikit-learn's bundled sample images, cropped/flipped for variety, resized and
re-encoded into a temporary folder.

    python benchmarks/extract.py                       # resnet18 (random init) at 224 px, CPU
    python benchmarks/extract.py --device cuda --precision bfloat16 --batch-size 256

The runs in benchmarks/results/ (2-core CPU, otherwise idle):

    python benchmarks/extract.py --sets jpeg-500x375 --repeats 5 --workers auto,1 \
        --precision float32,bfloat16 --naive-images 256 --rss "" \
        --json benchmarks/results/extract-jpeg500.json
    python benchmarks/extract.py --sets jpeg-4000x3000,png-64x64 --scale 0.5 --repeats 2 \
        --workers auto,1 --naive-images 256 --json benchmarks/results/extract-jpeg4000-png64-rss.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torch.utils.data import DataLoader
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from linprobe.features.extract import (
    extract_embeddings,
    resolve_device,
    resolve_precision,
    seeded_backbone,
)
from linprobe.features.forward import DTYPES, forward_rows, prepare_model
from linprobe.features.loader import DecodedBatches, decode_pool

SETS = {  # name: (width, height, format, number of images); >= 3 batches so decoding overlaps
    "jpeg-500x375": (500, 375, "JPEG", 1024),
    "jpeg-4000x3000": (4000, 3000, "JPEG", 192),
    "png-64x64": (64, 64, "PNG", 1024),
}


def make_images(root: Path, size: tuple[int, int], fmt: str, n: int, seed: int = 0) -> Path:
    """``n`` distinct photos in ``root/<class>/`` (2 classes), varied crops/flips of the samples."""
    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    for i in range(n):
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.7, 1)), int(w * rng.uniform(0.7, 1))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = src[y : y + ch, x : x + cw][:, :: (1 if i % 2 else -1)]
        im = Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.BILINEAR)
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".jpg" if fmt == "JPEG" else ".png"
        im.save(folder / f"{i:05d}{suffix}", fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return root


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (DataLoader workers)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def model_only(
    model: torch.nn.Module, crop: int, batch: int, dev: torch.device, prec: str, n_batches: int,
    rows: int,
) -> tuple[float, float]:
    """(img/s, CPU ms/img) of ``model`` alone on pre-made normalised channels_last tensors,
    ``batch`` images at a time in forward calls of ``rows`` images (as the engine slices)."""
    x = torch.randn(batch, 3, crop, crop, device=dev).contiguous(memory_format=torch.channels_last)
    amp = torch.autocast(dev.type, DTYPES[prec], enabled=prec != "float32")
    with torch.inference_mode(), amp:
        model(x[:rows]), model(x[:rows])  # warm-up (oneDNN / cuDNN plan selection, allocator)
        _sync(dev)
        t0, c0 = time.perf_counter(), cpu_seconds()
        for _ in range(n_batches):
            for part in x.split(rows):
                model(part).float().cpu()
        _sync(dev)
    n = batch * n_batches
    return n / (time.perf_counter() - t0), (cpu_seconds() - c0) * 1e3 / n


def decode_only(data: Path, pre, batch: int, n_batches: int) -> tuple[float, float]:
    """(img/s, CPU ms/img) of the engine's in-process loader alone (thread pool as wide as
    torch's threads, no forward): with the forward's rate it bounds end-to-end from above."""
    paths = sorted(p for p in data.rglob("*") if p.is_file())[: batch * n_batches]
    threads = torch.get_num_threads()
    with decode_pool(threads) as pool:
        ds = DecodedBatches(paths, batch, pre, pool, threads)
        t0, c0 = time.perf_counter(), cpu_seconds()
        for _ in DataLoader(ds, batch_size=None, num_workers=0):
            pass
    return len(paths) / (time.perf_counter() - t0), (cpu_seconds() - c0) * 1e3 / len(paths)


def naive_model_only(bb, dev: torch.device, n: int) -> tuple[float, float]:
    """(img/s, CPU ms/img) of the naive loop's forward alone (fresh NCHW model, batch 4,
    autograd on) on pre-made tensors: with ``model_only`` it bounds end-to-end / naive."""
    model = bb.model.to(dev).eval()
    x = torch.randn(4, 3, bb.preprocess.crop, bb.preprocess.crop, device=dev)
    model(x).detach().cpu()  # warm-up
    t0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(n // 4):
        model(x).detach().cpu()
    _sync(dev)
    return 4 * (n // 4) / (time.perf_counter() - t0), (cpu_seconds() - c0) * 1e3 / (4 * (n // 4))


def end_to_end(
    spec: str, data: Path, out: Path, args, workers: int | None, prec: str
) -> tuple[float, float]:
    """(img/s, CPU ms/img) of extraction: the rate is the loop's own (the attr it records, model
    load excluded); CPU time covers the whole call, workers included."""
    c0 = cpu_seconds()
    path = extract_embeddings(spec, data, out, image_size=args.image_size,
                              batch_size=args.batch_size, device=args.device,
                              precision=prec, num_workers=workers, progress=False,
                              val_fraction=0.0, test_fraction=0.0)
    cpu = cpu_seconds() - c0
    with h5py.File(path) as f:
        rate, n = float(f.attrs["images_per_s"]), f["ids"].shape[0]
    path.unlink()
    return rate, cpu * 1e3 / n


def naive(bb, data: Path, dev: torch.device, limit: int) -> tuple[float, float]:
    """(img/s, CPU ms/img) of the tutorial-style loop on the first ``limit`` images
    (``bb`` freshly loaded: NCHW weights, nothing folded)."""
    p = bb.preprocess
    tf = T.Compose([T.Resize(p.resize), T.CenterCrop(p.crop), T.ToTensor(),
                    T.Normalize(p.mean, p.std)])
    ds = tv_datasets.ImageFolder(str(data), tf)
    ds.samples = ds.samples[:limit]
    model = bb.model.to(dev)
    model.eval()
    n = 0
    with warnings.catch_warnings():  # torch warns that 4 workers exceed 2 cores: that is the point
        warnings.simplefilter("ignore", UserWarning)
        batches = iter(DataLoader(ds, batch_size=4, shuffle=True, num_workers=4))
        # Steady state, as for the engine: the clock starts once the workers are up (the first
        # batch, ~0.1 s of start-up, is run but not counted).
        model(next(batches)[0].to(dev)).detach().cpu()
        t0, c0 = time.perf_counter(), cpu_seconds()
        for x, _ in batches:  # autograd left on, NCHW, float32: as the tutorial does
            model(x.to(dev)).detach().cpu()
            n += len(x)
    return n / (time.perf_counter() - t0), (cpu_seconds() - c0) * 1e3 / n


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


_RSS_CHILD = """
import resource, sys
from linprobe.features.extract import extract_embeddings
extract_embeddings(sys.argv[1], sys.argv[2], sys.argv[3], image_size=int(sys.argv[4]),
                   batch_size=int(sys.argv[5]), device=sys.argv[6], progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_rss(spec: str, data: Path, out: Path, args) -> float:
    """Peak RSS (MiB) of a fresh process extracting ``data``."""
    res = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, spec, str(data), str(out), str(args.rss_image_size),
         str(args.batch_size), args.device],
        capture_output=True, text=True, check=True,
    )
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backbone", default="torchvision:resnet18:none")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto",
                    help="comma list, e.g. float32,bfloat16: each measured side by side")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sets", default=",".join(SETS), help="comma list from " + ",".join(SETS))
    ap.add_argument("--scale", type=float, default=1.0, help="scale image counts")
    ap.add_argument("--workers", default="auto", help="comma list, e.g. auto,0,2")
    ap.add_argument("--naive-images", type=int, default=64)
    ap.add_argument("--rss", default="256,1024,4096", help="RSS image counts ('' skips)")
    ap.add_argument("--rss-image-size", type=int, default=64,
                    help="backbone input size for the RSS check (memory, not speed, is measured)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    precs = [resolve_precision(p, dev) for p in args.precision.split(",")]
    def fresh():
        return seeded_backbone(args.backbone, image_size=args.image_size, layer=None,
                               init_seed=None)

    bb = fresh()
    crop = bb.preprocess.crop
    # The model exactly as the engine runs it: the fair ceiling for the pipeline around it.
    engine_model = prepare_model(fresh().model, dev, crop)
    rows = forward_rows(engine_model, dev, crop, args.batch_size)
    # Keys carry the precision when several are compared: "model_only[bfloat16]".
    tag = {p: "" if len(precs) == 1 else f"[{p}]" for p in precs}
    models = {(f"model_only{tag[p]}", p): rows for p in precs}
    models[(f"model_only_unsliced{tag[precs[0]]}", precs[0])] = args.batch_size
    print(f"{args.backbone} at {bb.preprocess.crop}px, batch {args.batch_size}, device {dev}, "
          f"precision {','.join(precs)}, torch threads {torch.get_num_threads()}, "
          f"cores {len(os.sched_getaffinity(0))}")
    results: dict = {"config": vars(args) | {"json": None, "device": str(dev),
                                            "precision": ",".join(precs),
                                            "threads": torch.get_num_threads()}, "sets": {}}
    results["loadavg_start"] = os.getloadavg()
    workers = [None if w == "auto" else int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.sets.split(","):
            w, h, fmt, n = SETS[name]
            n = max(2, int(n * args.scale))
            t0 = time.perf_counter()
            data = make_images(tmp / name, (w, h), fmt, n)
            print(f"\n[{name}] {n} images made in {time.perf_counter() - t0:.0f}s")
            label = {(wk, p): f"e2e_workers={'auto' if wk is None else wk}{tag[p]}"
                     for p in precs for wk in workers}
            row: dict = {**{k: [] for k, _ in models}, **{k: [] for k in label.values()},
                         "decode_only": [], "naive_model_only": [], "naive": []}
            n_batches = max(2, n // args.batch_size)
            for _ in range(args.repeats):  # interleaved, so drifting load hits all alike
                for (key, p), r in models.items():
                    row[key].append(model_only(engine_model, crop, args.batch_size, dev, p,
                                               n_batches, r))
                for (wk, p), key in label.items():
                    row[key].append(end_to_end(args.backbone, data, tmp / "out.h5", args, wk, p))
                row["decode_only"].append(decode_only(data, bb.preprocess, args.batch_size,
                                                      n_batches))
                row["naive_model_only"].append(naive_model_only(fresh(), dev, args.naive_images))
                row["naive"].append(naive(fresh(), data, dev, args.naive_images))
            med = {k: statistics.median(r for r, _ in v) for k, v in row.items()}
            cpu = {k: statistics.median(c for _, c in v) for k, v in row.items()}
            # Ratios per repeat (each e2e run against the model-only run next to it), then median.
            base = {key: f"model_only{tag[p]}" for (_, p), key in label.items()}
            ratio = {k: statistics.median(e[0] / m[0] for e, m in zip(row[k], row[base[k]]))
                     for k in label.values()}
            vs_naive = {k: statistics.median(e[0] / m[0] for e, m in zip(row[k], row["naive"]))
                        for k in label.values()}
            print(f"  {'':30s} {'img/s':>8s}  {'CPU ms/img':>10s}  wall ratios (runs)")
            for k, v in med.items():
                extra = ""
                if k in ratio:
                    extra = f"  {ratio[k]:5.2f}x model-only  {vs_naive[k]:5.2f}x naive"
                runs = ", ".join(f"{r:.1f}" for r, _ in row[k])
                print(f"  {k:30s} {v:8.1f}  {cpu[k]:10.1f}{extra}  ({runs})")
            # Upper bounds: decoding runs between forward passes, so at best end-to-end spends
            # 1/model + 1/decode seconds per image; the naive loop is at least its own forward.
            ceiling = {}
            for p in precs:
                mo = med[f"model_only{tag[p]}"]
                dec = med["decode_only"]
                ceiling[f"e2e_over_model_only{tag[p]}"] = dec / (dec + mo)
                ceiling[f"e2e_over_naive{tag[p]}"] = mo / med["naive"]
                ceiling[f"model_only_over_naive_model_only{tag[p]}"] = mo / med["naive_model_only"]
            print("  ceilings: " + ", ".join(f"{k} {v:.2f}" for k, v in ceiling.items()))
            results["sets"][name] = {"runs": row, "median": med, "cpu_ms_per_img": cpu,
                                     "ratio_to_model_only": ratio,
                                     "ratio_to_naive": vs_naive, "ceilings": ceiling}
        if args.rss:
            print("\n[peak RSS vs images] png-64x64")
            results["rss_mib"] = {}
            for count in (int(c) for c in args.rss.split(",")):
                data = make_images(tmp / f"rss{count}", (64, 64), "PNG", count, seed=1)
                mib = peak_rss(args.backbone, data, tmp / "rss.h5", args)
                results["rss_mib"][count] = mib
                print(f"  {count:6d} images: {mib:7.0f} MiB")
    # Other processes on the box skew wall-clock rates: record how busy it was.
    results["loadavg_end"] = os.getloadavg()
    print(f"\nload average at the end: {results['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
