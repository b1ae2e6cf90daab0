"""Turn loaded runs and embeddings into plain dicts the template renders (one function per section).

Every function tolerates missing optional keys: the value becomes ``None`` and the template
says "not available".
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from linprobe.features.croploss import crop_warning
from linprobe.features.store import SPLITS, EmbeddingSet
from linprobe.models.compare import NotPairedError, RunOutputs, outputs_of, paired_compare
from linprobe.models.uncertainty import bootstrap_ci
from linprobe.reports import figures, stats
from linprobe.reports.collect import Run
from linprobe.reports.gallery import Thumbnails, error_gallery
from linprobe.schema import ArtifactPaths

HTML_MATRIX_MAX = 25  # up to this many classes the confusion matrix is an HTML table with labels
_KEY_ORDER = ("precision", "recall", "f1", "ap", "support")


def number(value: Any) -> float | None:
    """A JSON number as float; None for null, absent, a bool or anything else."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def headline_ci(run: Run) -> tuple[list[float] | None, str | None]:
    """95% CI of the headline metric: from the metrics file, else bootstrapped from predictions."""
    ci = run.section("test_ci").get(run.headline)
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(number(v) is not None for v in ci):
        return [float(ci[0]), float(ci[1])], "metrics file"
    if run.headline == "accuracy" and run.predictions is not None and len(run.predictions.ids):
        correct = 1.0 - run.predictions.wrong(run.task)
        # The mean of per-image correctness is the accuracy.
        ci = bootstrap_ci(lambda _, c: c.mean(), correct, correct)
        return list(ci), "bootstrap of predictions"
    return None, None


def paired_or_none(a: RunOutputs | None, b: RunOutputs | None) -> dict[str, Any] | None:
    """models.compare's paired bootstrap of a minus b on the headline metric; None when either
    lacks its test outputs or the two are not on the same test images."""
    if a is None or b is None:
        return None
    try:
        return paired_compare(a, b)
    except NotPairedError:
        return None


def _vs_best(best: RunOutputs | None, other: Run, artifacts: Path) -> dict[str, Any] | None:
    """:func:`paired_or_none` of best minus other."""
    return paired_or_none(best, outputs_for(other, artifacts))


def outputs_for(run: Run, artifacts: Path) -> RunOutputs | None:
    """The run's test outputs from what load_runs already read (scores, for multilabel, from
    disk); None when its predictions or scores are missing."""
    if run.predictions is None:
        return None
    try:
        return outputs_of(run.metrics, run.predictions,
                          ArtifactPaths(artifacts).scores(run.backbone, run.probe))
    except FileNotFoundError:
        return None


def leaderboard(runs: list[Run], attrs: dict[str, dict[str, Any]],
                artifacts: str | Path) -> list[dict[str, Any]]:
    """One row per run, with best-per-probe and "≈ best" flags: a run is tied with its probe's
    best when :func:`linprobe.models.compare.paired_compare` finds no significant difference
    (artifacts: the directory the runs' test outputs are read from)."""
    artifacts = Path(artifacts)
    by_probe: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_probe[r.probe].append(r)
    best: dict[str, Run] = {}
    for probe, group in by_probe.items():
        scored = [r for r in group if r.headline_value is not None]
        if scored:
            best[probe] = max(scored, key=lambda r: r.headline_value)
    best_outputs = {p: outputs_for(r, artifacts) for p, r in best.items()}
    rows = []
    for r in runs:
        a = attrs.get(r.backbone, {})
        ci, ci_source = headline_ci(r)
        sel = r.section("selection")
        is_best = best.get(r.probe) is r
        cmp = None if is_best or r.probe not in best else \
            _vs_best(best_outputs[r.probe], r, artifacts)
        val = r.section("val")
        rows.append({
            "backbone": r.backbone, "probe": r.probe,
            "spec": r.metrics.get("backbone_spec") or a.get("backbone"),
            "headline": r.headline, "value": r.headline_value, "ci": ci, "ci_source": ci_source,
            "val": number(val.get(r.headline, val.get(sel.get("metric", ""), None))),
            "params": sel.get("params") if isinstance(sel.get("params"), dict) else None,
            "embed_dim": r.metrics.get("embed_dim", a.get("embed_dim")),
            "num_params": number(a.get("num_params")),
            "images_per_s": number(a.get("images_per_s")),
            "fit_seconds": number(r.metrics.get("fit_seconds")),
            "solver": r.metrics.get("solver") if isinstance(r.metrics.get("solver"), str) else None,
            "is_best": is_best, "vs_best": cmp,
            "tied_with_best": bool(cmp is not None and not cmp["significant"]),
            "anchor": f"run-{r.backbone}-{r.probe}",
        })
    # Default order: grouped by probe, best first (the table is sortable for anything else).
    rows.sort(key=lambda row: (row["probe"], -(row["value"] if row["value"] is not None else -np.inf)))
    return rows


def overview(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Backbone x probe grid of headline values from leaderboard rows, best backbones first.

    {"probes": [...], "rows": [{"backbone", "mean", "cells": [row dict or None per probe]}]}.
    """
    probes = sorted({r["probe"] for r in rows})
    cells: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        cells[r["backbone"]][r["probe"]] = r
    grid = []
    for b, by_probe in cells.items():
        vals = [c["value"] for c in by_probe.values() if c["value"] is not None]
        grid.append({"backbone": b, "mean": float(np.mean(vals)) if vals else None,
                     "cells": [by_probe.get(p) for p in probes]})
    grid.sort(key=lambda g: -(g["mean"] if g["mean"] is not None else -np.inf))
    return {"probes": probes, "rows": grid}


def dataset_summary(
    es: EmbeddingSet | None, attrs: dict[str, dict[str, Any]], data_root: str | None
) -> dict[str, Any] | None:
    """Classes, counts per split (per class for multiclass), skipped files, fingerprints;
    ``data_root``: where the images are (as resolved by ``collect.load_backbone_attrs``)."""
    if es is None:
        return None
    counts = []
    for c, name in enumerate(es.class_names):
        hit = es.labels[:, c] > 0 if es.labels.ndim == 2 else es.labels == c
        counts.append({"name": name, **{s: int((hit & es.mask(s)).sum()) for s in SPLITS}})
    totals = {s: int(es.mask(s).sum()) for s in SPLITS}
    fingerprints = {b: a.get("dataset_fingerprint") for b, a in attrs.items() if a}
    skipped = es.attrs.get("skipped") if isinstance(es.attrs.get("skipped"), list) else None
    return {"task": es.task, "n_classes": len(es.class_names), "classes": counts, "totals": totals,
            "data_root": data_root, "skipped": skipped, "crop": crop_loss_rows(attrs),
            "fingerprints_differ": len({str(v) for v in fingerprints.values()}) > 1,
            "fingerprints": fingerprints}


def crop_loss_rows(attrs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backbone with a ``crop_loss`` attr: its resize mode, the summary numbers (fractions)
    and the extraction warning (None unless the crop cut a notable share of the images)."""
    rows = []
    for name, a in attrs.items():
        loss, pre = a.get("crop_loss"), a.get("preprocess")
        keys = ("mean", "p90", "share_cut", "cut_threshold")
        if not isinstance(loss, dict) or any(number(loss.get(k)) is None for k in keys):
            continue  # older file, or hand-edited: nothing trustworthy to show
        mode = str(pre.get("resize_mode", "crop")) if isinstance(pre, dict) else "crop"
        rows.append({"backbone": name, "mode": mode, **{k: float(loss[k]) for k in keys},
                     "measured": loss.get("measured"), "n_images": loss.get("n_images"),
                     "warning": crop_warning(loss, mode)})
    return rows


def embedding_views(name: str, es: EmbeddingSet, *, tsne_max: int, mmd_perm: int) -> dict[str, Any]:
    """PCA (and t-SNE when the test split is small) of test embeddings; MMD train vs test."""
    x_test, y_test, _ = es.subset("test")
    x_train, _, _ = es.subset("train")
    out: dict[str, Any] = {"backbone": name, "n_test": len(x_test), "pca": None, "tsne": None,
                           "mmd": None}
    if len(x_test) == 0:
        return out
    # Multi-label points are coloured by their first positive class (argmax of the multi-hot).
    colour = y_test.argmax(axis=1) if y_test.ndim == 2 else y_test
    z, ratio = stats.pca_2d(x_test)
    title = f"{name}: PCA ({sum(ratio) * 100:.0f}% var.)"
    out["pca"] = figures.scatter_uri(z, colour, es.class_names, title)
    if len(x_test) <= tsne_max and len(x_test) >= 5:
        out["tsne"] = figures.scatter_uri(stats.tsne_2d(x_test), colour, es.class_names,
                                          f"{name}: t-SNE")
    if len(x_train) >= 2 and len(x_test) >= 2:
        out["mmd"] = stats.mmd_test(x_train, x_test, n_perm=mmd_perm)
    return out


def learning_curves_data(runs: list[Run]) -> list[dict[str, Any]]:
    """Per probe: {"probe", "curves": [{"label" (backbone), "k", "mean", "std"|None, ...}]}."""
    by_probe: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        fs = r.metrics.get("few_shot")
        if not isinstance(fs, dict) or not fs.get("k") or len(fs.get("mean") or []) != len(fs["k"]):
            continue
        std = fs.get("std") if len(fs.get("std") or []) == len(fs["k"]) else None
        by_probe[r.probe].append({"label": r.backbone, "k": fs["k"], "mean": fs["mean"],
                                  "std": std, "metric": fs.get("metric", r.headline),
                                  "seeds": fs.get("seeds")})
    return [{"probe": p, "curves": c} for p, c in sorted(by_probe.items())]


def learning_curves(runs: list[Run]) -> list[dict[str, Any]]:
    """learning_curves_data plus one figure per probe holding every backbone's curve."""
    return [{**lc, "figure": figures.learning_curves_uri(lc["curves"])}
            for lc in learning_curves_data(runs)]


def run_detail(run: Run, data_root: str | None, *, gallery_limit: int,
               thumbnails: Thumbnails | None = None) -> dict[str, Any]:
    """Confusion matrix, per-class metrics, confused pairs, gallery; AP/PR for multi-label.

    thumbnails: the build's thumbnail cache (see ``gallery.Thumbnails``).
    """
    m = run.metrics
    names = [str(n) for n in m.get("class_names") or []]
    out: dict[str, Any] = {"backbone": run.backbone, "probe": run.probe, "task": run.task,
                           "anchor": f"run-{run.backbone}-{run.probe}", "test": run.section("test"),
                           "selection": run.section("selection") or None}
    per_class = {n: v for n, v in run.section("per_class").items() if isinstance(v, dict)} or None
    out["per_class"] = per_class
    keys = {k for v in (per_class or {}).values() for k in v}
    out["per_class_keys"] = sorted(keys, key=lambda k: (_KEY_ORDER.index(k) if k in _KEY_ORDER else 9, k))
    out["confusion"] = out["confusion_img"] = out["confused_pairs"] = None
    try:
        arr = np.asarray(m.get("confusion_matrix"), dtype=np.float64)
    except (TypeError, ValueError):  # ragged or non-numeric: treated as absent
        arr = np.empty(0)
    if names and arr.shape == (len(names), len(names)):
        norm = stats.normalise_rows(arr)
        if len(names) <= HTML_MATRIX_MAX:
            out["confusion"] = {"names": names, "rows": norm.tolist(), "counts": arr.astype(int).tolist()}
        else:
            out["confusion_img"] = figures.heatmap_uri(norm)
        out["confused_pairs"] = stats.top_confused_pairs(arr, names)
    out["ap_bars"] = out["pr_curves"] = None
    if run.task == "multilabel" and per_class:
        ap_names = [n for n in per_class if number(per_class[n].get("ap")) is not None]
        if ap_names:
            out["ap_bars"] = figures.ap_bars_uri(ap_names, [per_class[n]["ap"] for n in ap_names])
        if run.section("pr_curves"):
            out["pr_curves"] = figures.pr_curves_uri(run.section("pr_curves"))
    out["gallery"] = (error_gallery(run.predictions, run.task, data_root, limit=gallery_limit,
                                    thumbnails=thumbnails)
                      if run.predictions is not None else None)
    return out
