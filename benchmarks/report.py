"""Report at scale: 20 backbones x 5 probes x 100 classes -> build time, file size, browser load.

Artifacts are synthetic but shaped like real ones: Gaussian class clusters as embeddings
(per-backbone separation, so scores differ), probes = nearest-centroid predictions with
probe-dependent noise scored with real scikit-learn metrics, Fashion-MNIST PNGs as the images
behind the test ids. Usage::

    PYTHONPATH=src python benchmarks/report.py [--backbones 20] [--probes 5] [--classes 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.reports.browser
from linprobe.features.store import SPLIT_CODES, encode_attr  # noqa: E402
from linprobe.models.persist import write_csv, write_json  # noqa: E402
from linprobe.schema import PREDICTION_HEADER  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from linprobe.features.store import read_embeddings  # noqa: E402
from linprobe.reports import sections  # noqa: E402
from linprobe.reports.build import build_report  # noqa: E402
from linprobe.features.fashion_mnist import load_split  # noqa: E402

SIZES = {"train": 10, "val": 3, "test": 8}  # per class


def _images(n: int) -> np.ndarray:
    return load_split("test")[0][:n]


def make_artifacts(root: Path, n_backbones: int, n_probes: int, n_classes: int, dim: int = 256) -> Path:
    rng = np.random.default_rng(0)
    names = [f"class {i:03d}" for i in range(n_classes)]
    per = sum(SIZES.values())
    y = np.repeat(np.arange(n_classes), per)
    split = np.tile(np.repeat([SPLIT_CODES[s] for s in SIZES], list(SIZES.values())), n_classes).astype(np.uint8)
    ids = [f"{list(SIZES)[s]}/{c:03d}/{i:05d}.png" for i, (s, c) in enumerate(zip(split, y))]
    data = root / "data"
    te = split == SPLIT_CODES["test"]
    for img, i in zip(_images(int(te.sum())), np.flatnonzero(te)):  # only test images are shown
        (data / ids[i]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(data / ids[i])
    art = root / "artifacts"
    for b in range(n_backbones):
        bname = f"backbone{b:02d}"
        sep = 0.8 + 0.03 * b  # later backbones separate classes better
        centres = rng.normal(size=(n_classes, dim)) * sep
        x = (centres[y] + rng.normal(size=(len(y), dim)) * 3.0).astype(np.float32)
        (art / "embeddings").mkdir(parents=True, exist_ok=True)
        with h5py.File(art / "embeddings" / f"{bname}.h5", "w") as f:
            f["embeddings"], f["labels"], f["split"] = x, y, split
            f["ids"] = np.array(ids, dtype=h5py.string_dtype())
            for k, v in {"backbone": f"synthetic:{bname}", "weights": "synthetic", "embed_dim": dim,
                         "num_params": int(1e6 * (b + 1)), "class_names": names, "task": "multiclass",
                         "data_root": str(data.resolve()), "images_per_s": 500.0 - 10 * b,
                         "device": "cpu", "versions": {"numpy": np.__version__}, "skipped": [],
                         "created": "2026-01-01T00:00:00+00:00", "dataset_fingerprint": "bench"}.items():
                f.attrs[k] = encode_attr(v)
        tr = split == SPLIT_CODES["train"]
        means = np.stack([x[tr & (y == c)].mean(axis=0) for c in range(n_classes)])
        for p in range(n_probes):
            d = ((x[te, None, :] - means[None]) ** 2).sum(-1) + rng.normal(size=(te.sum(), n_classes)) * 40 * p
            logits = -d / d.std()
            proba = np.exp(logits - logits.max(1, keepdims=True))
            proba /= proba.sum(1, keepdims=True)
            pred, yt = proba.argmax(1), y[te]
            pr, rc, f1, sup = precision_recall_fscore_support(yt, pred, labels=range(n_classes), zero_division=0)
            ks = [1, 2, 4, 8]
            acc = float(accuracy_score(yt, pred))
            metrics = {
                "backbone": bname, "backbone_spec": f"synthetic:{bname}", "probe": f"probe{p}",
                "task": "multiclass", "headline": "accuracy", "class_names": names, "embed_dim": dim,
                "test": {"accuracy": acc, "balanced_accuracy": float(balanced_accuracy_score(yt, pred)),
                         "macro_f1": float(f1_score(yt, pred, average="macro"))},
                "val": {"accuracy": acc}, "fit_seconds": 0.1 * (p + 1),
                "selection": {"scheme": "val", "metric": "accuracy", "params": {"C": 10.0 ** (p - 2)}},
                "per_class": {n: {"precision": float(pr[i]), "recall": float(rc[i]), "f1": float(f1[i]),
                                  "support": int(sup[i])} for i, n in enumerate(names)},
                "confusion_matrix": confusion_matrix(yt, pred, labels=range(n_classes)).tolist(),
                "few_shot": {"k": ks, "mean": [acc * (1 - 0.5 / k) for k in ks], "std": [0.02] * 4, "seeds": 3},
            }
            write_json(art / "metrics" / bname / f"probe{p}.json", metrics)
            write_csv(art / "predictions" / bname / f"probe{p}.csv", PREDICTION_HEADER,
                      ((ids[i], names[a], names[b_], f"{s:.4f}")
                       for i, a, b_, s in zip(np.flatnonzero(te), yt, pred, proba.max(1))))
    return art


def thread_ratio(art: Path, repeats: int = 3) -> tuple[float, float]:
    """Seconds of one backbone's PCA + t-SNE + MMD: default thread pools vs one thread.

    Interleaved so both see the same machine load; the minimum of ``repeats`` is kept.
    """
    es = read_embeddings(next((art / "embeddings").glob("*.h5")))
    default, single = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        sections.embedding_views("b", es, tsne_max=10**6, mmd_perm=200)
        default.append(time.perf_counter() - t)
        with threadpool_limits(limits=1):
            t = time.perf_counter()
            sections.embedding_views("b", es, tsne_max=10**6, mmd_perm=200)
            single.append(time.perf_counter() - t)
    return min(default), min(single)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", type=int, default=20)
    ap.add_argument("--probes", type=int, default=5)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("--threads", action="store_true",
                    help="also time embedding views with default vs single-thread BLAS/OpenMP")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        art = make_artifacts(root, args.backbones, args.probes, args.classes)
        t1 = time.perf_counter()
        out = build_report(art, root / "report" / "index.html")
        t2 = time.perf_counter()
        size = out.stat().st_size
        from tests.reports.browser import chromium, open_page

        with chromium() as driver:
            load = open_page(driver, out)
            rows = len(driver.execute_script("return document.querySelectorAll('#leaderboard-table tbody tr')"))
            if args.screenshot:
                driver.save_screenshot(str(args.screenshot))
        print(f"runs={args.backbones}x{args.probes} classes={args.classes} "
              f"test_images={args.classes * SIZES['test']}")
        print(f"make artifacts: {t1 - t0:.1f} s")
        print(f"build_report:   {t2 - t1:.1f} s")
        print(f"report size:    {size / 1e6:.2f} MB")
        print(f"browser load:   {load.load_ms:.0f} ms (navigation start -> load event end)")
        print(f"leaderboard rows {rows}, console errors {len(load.errors())}, "
              f"external requests {len(load.external_requests())}")
        if args.threads:
            d, s1 = thread_ratio(art)
            print(f"embedding views of one backbone (PCA+t-SNE+MMD): default threads {d:.2f} s, "
                  f"1 thread {s1:.2f} s, ratio {d / s1:.1f}x")


if __name__ == "__main__":
    main()
