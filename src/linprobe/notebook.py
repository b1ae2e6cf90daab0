"""Results in a notebook: an embeddings file as numpy arrays, every run as a pandas DataFrame.

Reached as ``linprobe.load_embeddings`` and ``linprobe.load_results`` (imported on first use, so
``import linprobe`` stays cheap). Reads the files the pipeline writes, at the paths and in the
format of :mod:`linprobe.schema`; writes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linprobe.schema import SPLITS, ArtifactPaths, RunMetrics, read_metrics

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Embeddings:
    """One embeddings file in memory.

    embeddings: (N, D) float32; labels: (N,) int64 class indices, or (N, C) uint8 multi-hot;
    ids: (N,) str image paths; split: (N,) str 'train' | 'val' | 'test';
    class_names: C names (label k is class_names[k]); task: 'multiclass' | 'multilabel';
    attrs: the file's metadata (backbone, preprocess, versions, ...).
    """

    embeddings: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    split: np.ndarray
    class_names: list[str]
    task: str
    attrs: dict[str, Any] = field(default_factory=dict)


def load_embeddings(path: str | Path) -> Embeddings:
    """Read ``artifacts/embeddings/<backbone>.h5`` (or any file of that layout).

    >>> e = load_embeddings("artifacts/embeddings/lite0.h5")
    >>> X_train = e.embeddings[e.split == "train"]
    """
    import numpy as np

    from linprobe.features.store import read_embeddings

    es = read_embeddings(path)
    return Embeddings(embeddings=es.embeddings, labels=es.labels, ids=es.ids,
                      split=np.asarray(SPLITS, dtype=object)[es.split],
                      class_names=list(es.class_names), task=es.task, attrs=es.attrs)


def _num(value: Any) -> float:
    """A JSON number as float; NaN for null, absent or anything else."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else math.nan


def _row(m: RunMetrics) -> dict[str, Any]:
    """One run's DataFrame row (see :func:`load_results`)."""
    headline, test = m["headline"], m["test"]
    ci = m.get("test_ci", {}).get(headline)
    ci = ci if isinstance(ci, list) and len(ci) == 2 else [None, None]
    selection, n = m.get("selection", {}), m.get("n", {})
    params = selection.get("params") if isinstance(selection.get("params"), dict) else {}
    row: dict[str, Any] = {
        "backbone": m["backbone"], "probe": m["probe"],
        "probe_type": m.get("probe_type", m["probe"]), "task": m["task"],
        "headline": headline, "test": _num(test.get(headline)),
        "ci_low": _num(ci[0]), "ci_high": _num(ci[1]),
        "val": _num(m.get("val", {}).get(headline)),
        "params": params,
        "fit_seconds": _num(m.get("fit_seconds")),
        "n_train": _num(n.get("train")), "n_val": _num(n.get("val")),
        "n_test": _num(n.get("test")), "embed_dim": _num(m.get("embed_dim")),
        "backbone_spec": m.get("backbone_spec"), "solver": m.get("solver"),
        "converged": m.get("converged"),
        "seed": m.get("seed"),
    }
    row.update({f"test_{k}": _num(v) for k, v in test.items()})
    return row


def load_results(artifacts_dir: str | Path = "artifacts") -> pd.DataFrame:
    """Every run under ``artifacts_dir`` (``metrics/<backbone>/<probe>.json``), one row each,
    sorted by (backbone, probe).

    Columns: backbone, probe, probe_type, task, headline (the metric's name: accuracy or mAP),
    test (its test value), ci_low / ci_high (its 95% bootstrap CI), val (its value on the
    selection data), params (the selected hyper-parameters, a dict such as {'C': 0.1}),
    fit_seconds, n_train, n_val, n_test, embed_dim, backbone_spec, solver, converged, seed, and one
    ``test_<metric>`` column per test metric (test_accuracy, test_macro_f1, test_mAP, ...).
    Missing values are NaN (numbers) or None. Runs of backbones or probes since removed from
    params.yaml are included; filter them with ``df[df.backbone.isin([...])]``.

    >>> df = load_results("artifacts")
    >>> df.pivot(index="backbone", columns="probe", values="test")
    """
    import pandas as pd

    layout = ArtifactPaths(artifacts_dir)
    files = layout.metrics_files()
    if not files:
        raise FileNotFoundError(
            f"no metrics files under {layout.metrics_dir} (looked for "
            f"{layout.metrics('<backbone>', '<probe>')}); run `dvc repro` (or `linprobe train`) "
            "first, or pass the artifacts folder that holds them")
    rows = [_row(read_metrics(path)) for path in files]
    return pd.DataFrame(rows).reset_index(drop=True)
