"""Write realistic pipeline artifacts for report tests and the report benchmark.

Real Fashion-MNIST pixels -> PNG files under a data root; two pixel "backbones" (7x7 average
pooling, a seeded random projection) -> HDF5 embeddings in the store layout; real scikit-learn
probes (C/alpha chosen on val, refit on train+val, test scored once) -> metrics JSON of the
schema in the report brief and predictions CSV. Nothing here is a hand-written number.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             confusion_matrix, f1_score, precision_recall_curve,
                             precision_recall_fscore_support)
from sklearn.multiclass import OneVsRestClassifier

from linprobe.features.store import SPLIT_CODES, encode_attr
from linprobe.models.persist import PREDICTION_HEADER, write_csv, write_json
from tests.features.imagedata import demo_split

SPLIT_SIZES = {"train": 20, "val": 8, "test": 10}  # per class


def load_fmnist(n_per_class: int, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """First n_per_class (at most 100) images of each class of the bundled demo's train split:
    ((n, 28, 28) uint8, (n,) int original labels)."""
    images, labels = demo_split("train")
    idx = np.concatenate([np.flatnonzero(labels == c)[:n_per_class] for c in classes])
    return images[idx], labels[idx]


def _features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Two deterministic pixel 'backbones': {name: (n, D) float32}."""
    x = images.astype(np.float32) / 255.0
    pool = x.reshape(len(x), 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(x), -1)
    proj = np.random.default_rng(0).normal(size=(784, 32)).astype(np.float32) / 28.0
    return {"pool7": pool, "proj32": x.reshape(len(x), -1) @ proj}


def _probe(name: str, c: float):
    if name == "logreg":
        return LogisticRegression(C=c, max_iter=500)
    return RidgeClassifier(alpha=1.0 / c)


def _scores(model, x: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(x)
    d = model.decision_function(x)
    e = np.exp(d - d.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fit_multiclass(x, y, split, names, probe, *, few_shot: bool):
    tr, va, te = (split == SPLIT_CODES[s] for s in ("train", "val", "test"))
    grid = [0.01, 0.1, 1.0]
    curve = [{"C": c, "score": float(accuracy_score(y[va], _probe(probe, c).fit(x[tr], y[tr]).predict(x[va])))}
             for c in grid]
    best = max(curve, key=lambda p: p["score"])["C"]
    model = _probe(probe, best).fit(x[tr | va], y[tr | va])
    proba = _scores(model, x[te])
    pred = model.classes_[proba.argmax(axis=1)]
    p, r, f, s = precision_recall_fscore_support(y[te], pred, labels=range(len(names)), zero_division=0)
    metrics = {
        "task": "multiclass", "headline": "accuracy", "class_names": names,
        "n": {"train": int(tr.sum()), "val": int(va.sum()), "test": int(te.sum())},
        "embed_dim": int(x.shape[1]),
        "test": {"accuracy": float(accuracy_score(y[te], pred)),
                 "balanced_accuracy": float(balanced_accuracy_score(y[te], pred)),
                 "macro_f1": float(f1_score(y[te], pred, average="macro"))},
        "val": {"accuracy": max(c["score"] for c in curve)},
        "selection": {"scheme": "val", "metric": "accuracy", "params": {"C": best},
                      "grid": {"C": grid}, "curve": curve},
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(s[i])} for i, n in enumerate(names)},
        "confusion_matrix": confusion_matrix(y[te], pred, labels=range(len(names))).tolist(),
        "fit_seconds": 0.0,
    }
    if few_shot:
        ks, means, stds = [1, 2, 4], [], []
        for k in ks:
            accs = []
            for seed in range(3):
                rng = np.random.default_rng(seed)
                pick = np.concatenate([rng.choice(np.flatnonzero(tr & (y == c)), k, replace=False)
                                       for c in range(len(names))])
                m = _probe(probe, best).fit(x[pick], y[pick])
                accs.append(accuracy_score(y[te], m.predict(x[te])))
            means.append(float(np.mean(accs)))
            stds.append(float(np.std(accs)))
        metrics["few_shot"] = {"k": ks, "mean": means, "std": stds, "seeds": 3}
    rows = [(i, names[a], names[b], float(q.max())) for i, a, b, q in zip(np.flatnonzero(te), y[te], pred, proba)]
    return metrics, rows


def _fit_multilabel(x, y, split, names):
    tr, va, te = (split == SPLIT_CODES[s] for s in ("train", "val", "test"))
    model = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=500)).fit(x[tr | va], y[tr | va])
    proba = model.predict_proba(x[te])
    pred = (proba >= 0.5).astype(np.uint8)
    ap = [float(average_precision_score(y[te][:, c], proba[:, c])) for c in range(len(names))]
    curves = {}
    for c, n in enumerate(names):
        prec, rec, _ = precision_recall_curve(y[te][:, c], proba[:, c])
        curves[n] = {"precision": prec.tolist(), "recall": rec.tolist()}
    metrics = {
        "task": "multilabel", "headline": "mAP", "class_names": names,
        "test": {"mAP": float(np.mean(ap)), "micro_f1": float(f1_score(y[te], pred, average="micro")),
                 "macro_f1": float(f1_score(y[te], pred, average="macro", zero_division=0))},
        "val": {}, "selection": {"scheme": "val", "params": {"C": 1.0}},
        "per_class": {n: {"ap": ap[c], "support": int(y[te][:, c].sum())} for c, n in enumerate(names)},
        "pr_curves": curves, "embed_dim": int(x.shape[1]),
    }
    join = lambda row: "|".join(n for n, v in zip(names, row) if v)  # noqa: E731
    rows = [(i, join(a), join(b), float(q.max())) for i, a, b, q in zip(np.flatnonzero(te), y[te], pred, proba)]
    return metrics, rows


def write_artifacts(
    root: Path, class_names: list[str], *, probes: tuple[str, ...] = ("logreg", "ridge"),
    task: str = "multiclass", few_shot: bool = True, skipped: list | None = None,
) -> Path:
    """Create ``root/data`` (PNGs) and ``root/artifacts`` (embeddings, metrics, predictions)."""
    n_cls = len(class_names)
    per = sum(SPLIT_SIZES.values())
    images, _ = load_fmnist(per, list(range(n_cls)))
    y = np.repeat(np.arange(n_cls), per)
    split = np.tile(np.repeat([SPLIT_CODES[s] for s in SPLIT_SIZES], list(SPLIT_SIZES.values())), n_cls)
    split = split.astype(np.uint8)
    data = root / "data"
    ids = []
    for i, (img, s, c) in enumerate(zip(images, split, y)):
        rel = f"{list(SPLIT_SIZES)[s]}/c{c}/{i:04d}.png"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(data / rel)
        ids.append(rel)
    if task == "multilabel":
        # Multi-hot labels from two real attributes: the class itself and "bright" (mean pixel).
        labels = np.zeros((len(y), n_cls), np.uint8)
        labels[np.arange(len(y)), y] = 1
        labels[:, -1] = images.reshape(len(y), -1).mean(axis=1) > np.median(images.reshape(len(y), -1).mean(axis=1))
    else:
        labels = y
    art = root / "artifacts"
    for bname, x in _features(images).items():
        (art / "embeddings").mkdir(parents=True, exist_ok=True)
        with h5py.File(art / "embeddings" / f"{bname}.h5", "w") as f:
            f["embeddings"] = x.astype(np.float32)
            f["ids"] = np.array(ids, dtype=h5py.string_dtype())
            f["labels"] = labels
            f["split"] = split
            attrs = {"backbone": f"pixels:{bname}", "weights": "none",
                     "preprocess": {"resize": 28, "mean": [0.0], "std": [1.0]}, "image_size": 28,
                     "embed_dim": x.shape[1], "num_params": 0 if bname == "pool7" else 784 * 32,
                     "class_names": class_names, "task": task, "dataset_fingerprint": "fmnist-test",
                     "data_root": str(data.resolve()),
                     "data_root_relative": os.path.relpath(data, art / "embeddings"),
                     "versions": {"numpy": np.__version__},
                     "device": "cpu", "precision": "fp32", "seconds": 0.5, "images_per_s": 1000.0,
                     "skipped": skipped or [], "created": "2026-01-01T00:00:00+00:00"}
            for k, v in attrs.items():
                f.attrs[k] = encode_attr(v)
        for probe in probes if task == "multiclass" else ("logreg",):
            if task == "multiclass":
                metrics, rows = _fit_multiclass(x, labels, split, class_names, probe, few_shot=few_shot)
            else:
                metrics, rows = _fit_multilabel(x, labels, split, class_names)
            metrics.update(backbone=bname, backbone_spec=f"pixels:{bname}", probe=probe)
            write_json(art / "metrics" / bname / f"{probe}.json", metrics)
            write_csv(art / "predictions" / bname / f"{probe}.csv", PREDICTION_HEADER,
                      [(ids[i], a, p, f"{s:.4f}") for i, a, p, s in rows])
    return art
