"""Fine-tuning throughput: linprobe's training loop vs a plain tutorial-style loop, side by side.

Both train the same network (``build_net``: the backbone + a new linear head), at the same
batch size, image size and torch threads, on the same image folder, for whole epochs:

* linprobe: ``finetune.loop._epoch``, as ``linprobe finetune`` runs it (batch decoding on a
  thread pool between steps on CPU / worker processes with pinned memory on CUDA, uint8
  batches normalised on the device, channels_last, bf16 autocast on CUDA, seeded augmentation);
* tutorial: the PyTorch transfer-learning tutorial's loop (torchvision ``ImageFolder`` with
  RandomResizedCrop + RandomHorizontalFlip + ToTensor + Normalize, ``DataLoader(shuffle=True,
  num_workers=W)``, NCHW float32, ``zero_grad / forward / loss / backward / step``).

Each repeat runs one untimed warm-up epoch of each, then one timed epoch of each, interleaved;
the ratio is taken within a repeat and the median reported.

    python benchmarks/finetune.py --quick                     # proves the script works (~1 min)
    python benchmarks/finetune.py --data data/fashion-mnist-demo/train --image-size 112 \
        --batch-size 32 --repeats 3 --json benchmarks/results/finetune-cpu.json
    python benchmarks/finetune.py --device cuda --image-size 224 --batch-size 128 --images 4096
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from linprobe.features.extract import resolve_device, resolve_precision  # noqa: E402
from linprobe.features.loader import decode_pool  # noqa: E402
from linprobe.finetune.config import FinetuneConfig  # noqa: E402
from linprobe.finetune.data import default_workers  # noqa: E402
from linprobe.finetune.loop import Setup, Split, _epoch, lr_factor, make_loss  # noqa: E402
from linprobe.finetune.model import build_net, param_groups, set_trainable  # noqa: E402


def ours(args, net, folder: tv_datasets.ImageFolder, pre, dev, prec) -> float:
    """Images/s of one timed epoch of linprobe's loop (after one warm-up epoch)."""
    paths = [Path(p) for p, _ in folder.samples]
    labels = np.array([y for _, y in folder.samples], dtype=np.int64)
    cfg = FinetuneConfig(epochs=2, lrs=(1e-4,), batch_size=args.batch_size, warmup_epochs=0)
    workers = default_workers(dev, None)
    threads = torch.get_num_threads() if workers == 0 else 1
    with decode_pool(threads) as pool:
        s = Setup(make_net=lambda: net, config=cfg, train=Split(paths, labels),
                  val=Split([], labels[:0]),
                  pre=pre, task="multiclass", n_classes=len(folder.classes), device=dev,
                  precision=prec, seed=0, checkpoints=Path("/nonexistent"), key="", score=None,
                  batches=None, pool=pool if workers == 0 else None, threads=threads,
                  workers=workers, progress=False)
        opt = torch.optim.AdamW(param_groups(net, 0.05), lr=1e-4)
        steps = len(paths) // args.batch_size
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, 2 * steps, 0))
        scaler = torch.amp.GradScaler(dev.type, enabled=prec == "float16")
        loss_fn = make_loss(s)
        _epoch(s, net, opt, sched, scaler, loss_fn, 0, 1e-4, 1)
        _sync(dev)
        t0 = time.perf_counter()
        _, seen = _epoch(s, net, opt, sched, scaler, loss_fn, 0, 1e-4, 2)
        _sync(dev)
    return seen / (time.perf_counter() - t0)


def tutorial(args, net, folder_root: Path, indices, pre, dev) -> float:
    """Images/s of one timed epoch of the tutorial's loop (after one warm-up epoch)."""
    tf = T.Compose([T.RandomResizedCrop(pre.crop), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(pre.mean, pre.std)])
    data = Subset(tv_datasets.ImageFolder(str(folder_root), tf), indices)
    dl = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,
                    num_workers=args.tutorial_workers)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss()
    net = net.to(dev)

    def epoch() -> int:
        net.train()
        seen = 0
        for x, y in dl:
            x, y = x.to(dev), y.to(dev)
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            seen += len(x)
        return seen

    epoch()
    _sync(dev)
    t0 = time.perf_counter()
    seen = epoch()
    _sync(dev)
    return seen / (time.perf_counter() - t0)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "fashion-mnist-demo" / "train",
                    help="an ImageFolder (<class>/<image>)")
    ap.add_argument("--backbone", default="lite:efficientnet-lite0")
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--images", type=int, default=512,
                    help="images per epoch (a class-mixed subset)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tutorial-workers", type=int, default=min(4, os.cpu_count() or 1),
                    help="the tutorial's DataLoader workers (it uses 4; capped at the cores)")
    ap.add_argument("--quick", action="store_true", help="64 images, 32 px, batch 16, 1 repeat")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.images, args.image_size, args.batch_size, args.repeats = 64, 32, 16, 1
    dev = resolve_device(args.device)
    prec = resolve_precision("auto", dev)
    folder = tv_datasets.ImageFolder(str(args.data))
    # A fixed, class-mixed subset both loops read.
    indices = np.random.default_rng(0).permutation(len(folder.samples))[:args.images].tolist()
    folder.samples = [folder.samples[i] for i in indices]
    rows = []
    for r in range(args.repeats):
        net, bb = build_net(args.backbone, "finetune", len(folder.classes),
                            image_size=args.image_size, layer=None, init_seed=None, seed=r)
        set_trainable(net, None)
        a = ours(args, net.to(dev, memory_format=torch.channels_last), folder, bb.preprocess,
                 dev, prec)
        net, _ = build_net(args.backbone, "finetune", len(folder.classes),
                           image_size=args.image_size, layer=None, init_seed=None, seed=r)
        b = tutorial(args, net, args.data, indices, bb.preprocess, dev)
        rows.append({"linprobe_img_s": round(a, 2), "tutorial_img_s": round(b, 2),
                     "ratio": round(a / b, 3)})
        print(f"repeat {r + 1}: linprobe {a:.1f} img/s, tutorial {b:.1f} img/s, ratio {a / b:.2f}",
              flush=True)
    result = {"backbone": args.backbone, "image_size": args.image_size,
              "batch_size": args.batch_size, "images": args.images, "device": str(dev),
              "precision": prec, "threads": torch.get_num_threads(),
              "tutorial_workers": args.tutorial_workers, "repeats": rows,
              "median_ratio": statistics.median(r["ratio"] for r in rows)}
    print(f"median ratio linprobe / tutorial: {result['median_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
