"""The ``train`` stage: one probe on one backbone's embeddings -> model, metrics, predictions.

Protocol: the probe's grid is searched on held-out data (val split, a seeded fraction of train,
or k-fold; see :mod:`.selection`), the chosen value is refit on train+val, and test is scored
once. Artifacts, ``<backbone>`` being the embeddings file stem and ``<probe>`` the run's name
(the params.yaml entry name; the probe's registry name by default), each written atomically
(paths from :class:`linprobe.schema.ArtifactPaths`):

- ``probes/<backbone>/<probe>.joblib``: ``Pipeline([("normalize", ...), ("probe", clf)])``.
- ``metrics/<backbone>/<probe>.json``: :class:`linprobe.schema.RunMetrics`.
- ``predictions/<backbone>/<probe>.csv``: ``id,actual,predicted,score``, one row per test sample
  in file order. Multiclass: class names, score = probability (or decision value) of the
  predicted class. Multilabel: ``|``-joined names (empty when none), score = the max score.
- ``predictions/<backbone>/<probe>.scores.npy``: (n_test, C) float32 scores in the CSV's row
  order and ``class_names`` column order (probabilities, or decision values for SVMs; see
  ``score_kind`` in the metrics). The report uses them for PR curves and paired bootstraps.

Multi-label decision thresholds are tuned per class for F1 on the held-out scores of the
selection fits (val, or out-of-fold for kfold) and then applied to the refit model.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from linprobe.features.scan import require_classes
from linprobe.features.store import EmbeddingSet, read_embeddings
from linprobe.schema import HEADLINE, SCHEMA_VERSION, TASKS, ArtifactPaths, RunMetrics
from linprobe.threads import ThreadController, fit_scope, fit_threads

from . import metrics as M
from .fewshot import few_shot_curve
from .options import ProbeOptions, resolve_options
from . import persist
from .blocks import torchrun_world
from .probes import (ProbeSpec, assemble, get_probe, make_normalizer, normalize_fit_transform,
                     probe_options, solver_name)
from .runfiles import add_test_details, missing_classes, score_run, write_run
from .selection import SCORERS, Selection, select


def train_probe(embeddings: str | Path, probe: str, out_dir: str | Path, *,
                options: Mapping[str, Any] | ProbeOptions | None = None, seed: int = 0,
                name: str | None = None) -> RunMetrics | None:
    """Select, refit and score ``probe`` on an embeddings file; write the three artifacts.

    ``probe`` is a registry name (:data:`PROBES`); ``options`` a dict of its options or its
    options dataclass (e.g. ``LogregOptions(class_weight="balanced")``); ``name`` names the run's
    artifacts and its ``"probe"`` in the metrics (default: ``probe``), so variants of one probe
    sit side by side. Returns the metrics dict written to ``metrics/<backbone>/<name>.json``
    (None on torchrun ranks other than 0: see :mod:`.stream_train`).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The 'seed' parameter of train_probe must be an int >= 0. Got {seed!r} instead.")
    name = probe if name is None else name
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"The 'name' parameter of train_probe must be a file name (no path "
                         f"separator). Got {name!r} instead.")
    given = probe_options(probe, options)      # option errors before the file is read
    path = Path(embeddings)
    if getattr(given, "chunk_mb", None) is not None or torchrun_world() > 1:
        from .stream_train import train_streamed   # logreg streamed: the matrix stays on disk
        return train_streamed(path, probe, out_dir, given, int(seed), name)
    es = read_embeddings(path)
    _check_embeddings(es, path)
    spec = get_probe(probe, es.task)
    opts = resolve_options(given, es.task, es.class_names)
    C = len(es.class_names)
    tr, va = es.mask("train"), es.mask("val")
    tv = tr | va

    # Progress: on 70k images the fits below run for minutes.
    print(f"linprobe: {name} on {path.name}: selecting {spec.param} over {len(opts.grid)} "
          f"values on {int(tv.sum())} train+val samples x {es.embeddings.shape[1]} dims",
          file=sys.stderr, flush=True)
    X_tv, y_tv = es.embeddings[tv], es.labels[tv]           # our own float32 copy ...
    threads = _controller(opts, name)
    try:
        with fit_threads(threads):   # each fit's threads from the free cores (linprobe.threads)
            sel = select(spec, opts, seed, X_tv, y_tv, va[tv], C)   # (select never writes into it)
            t0 = time.perf_counter()
            model, refit_passes = _refit(spec, opts, seed, sel.value, X_tv, y_tv, sel.warm)
            fit_seconds = time.perf_counter() - t0
    finally:
        threads.bar.close()
    del X_tv

    X_te, y_te, ids_te = es.subset("test")
    with threads.scope():  # scoring and the few-shot fits: one choice for the block each
        test, val, pred, scores, kind, test_ci = _evaluate(model, sel, X_te, y_te, es, opts, seed)

    result = run_metrics(path, es, spec, opts, given, name, sel, test, val, test_ci, kind,
                         model, fit_seconds, threads, seed, es.embeddings.shape[1], refit_passes)
    if opts.few_shot:
        t0 = time.perf_counter()
        result["few_shot"] = few_shot_curve(      # reads only the drawn train rows
            lambda: assemble(make_normalizer(opts.normalize), spec.build(sel.value, opts, seed)),
            es.embeddings, es.labels[tr], X_te, y_te, train_rows=np.flatnonzero(tr),
            ks=list(opts.few_shot.k), seeds=opts.few_shot.seeds,
            score=lambda m, X, y: SCORERS[HEADLINE[es.task]](y, M.full_scores(m, X, C)[0]),
            metric=HEADLINE[es.task], base_seed=seed)
        result["few_shot"]["seconds"] = round(time.perf_counter() - t0, 3)

    write_run(ArtifactPaths(out_dir).run(path.stem, name), persist.model(model), result,
              es.class_names, es.task, ids_te, y_te, pred, scores)
    return result


def run_metrics(path: Path, es: EmbeddingSet, spec: ProbeSpec, opts: ProbeOptions,
                given: ProbeOptions, name: str, sel: Selection, test: dict, val: dict,
                test_ci: dict, kind: str, model: Pipeline, fit_seconds: float,
                threads: ThreadController, seed: int, embed_dim: int,
                refit_passes: int | None = None) -> RunMetrics:
    """The run's metrics (the schema's RunMetrics) from its selection, refit and test scoring:
    one builder for the in-memory and the streamed train runs."""
    tr, va, te = es.mask("train"), es.mask("val"), es.mask("test")
    result: RunMetrics = {
        "schema_version": SCHEMA_VERSION,
        "backbone": path.stem, "backbone_spec": es.attrs.get("backbone", path.stem),
        "probe": name, "probe_type": spec.name, "task": es.task, "headline": HEADLINE[es.task],
        "class_names": es.class_names,
        "n": {s: int(m.sum()) for s, m in (("train", tr), ("val", va), ("test", te))},
        "embed_dim": int(embed_dim),
        "test": test["summary"], "test_ci": test_ci,
        "val": val,
        "selection": {"scheme": sel.scheme, "metric": opts.selection_metric,
                      "params": {sel.param: sel.value}, "grid": {sel.param: list(opts.grid)},
                      "search": sel.search, "curve": sel.curve, "n_fits": sel.n_fits,
                      "n_iter": sel.n_iter, "n_passes": sel.n_passes,
                      "refit_passes": refit_passes,
                      "seconds": round(sel.seconds, 3)},
        "per_class": test["per_class"],
        "missing_classes": missing_classes(es.labels, {"train": tr, "val": va, "test": te},
                                           es.class_names, es.task),
        "options": _options_json(opts, given),
        "score_kind": kind,
        "solver": solver_name(spec, opts),
        "converged": _converged(model.named_steps["probe"]),
        "fit_seconds": round(fit_seconds, 3),
        "threads": threads.record(),
        "seed": int(seed),
    }
    add_test_details(result, es.task, test)
    return result


def _refit(spec: ProbeSpec, opts: ProbeOptions, seed: int, value, X_tv: np.ndarray,
           y_tv: np.ndarray, warm=None) -> tuple[Pipeline, int | None]:
    """Fit normaliser + classifier at the chosen value on train+val (starting from ``warm``, the
    selection's fit at that value, when given); also return the fit's passes over X_tv (torch
    solvers, else None). X_tv (n, D) must be the caller's own float32 copy: it is normalised in
    place."""
    norm, X_tv = normalize_fit_transform(opts.normalize, X_tv, inplace=True)
    clf = spec.build(value, opts, seed)
    if warm is not None:
        clf.set_params(warm_start=True)
        clf.coef_, clf.intercept_ = warm.coef_, warm.intercept_
    with fit_scope(clf):
        clf.fit(X_tv, y_tv)
    passes = getattr(clf, "n_passes_", None)
    if hasattr(clf, "to_sklearn"):      # torch solver: save the equivalent sklearn estimator
        clf = clf.to_sklearn()
    if clf.get_params().get("warm_start"):
        clf.set_params(warm_start=False)  # a user refitting the saved model starts cold
    return assemble(norm, clf), passes


def _controller(opts: ProbeOptions, name: str) -> ThreadController:
    """The fits' thread controller, with a progress bar (one step per fit) on stderr: the
    current solver rate (iterations/s), the threads, and a note when the machine turns busy."""
    from tqdm.auto import tqdm

    if getattr(opts, "solver", None) == "torch":
        import torch  # noqa: F401 - loaded now, so limit_threads scopes its threads too

    c = ThreadController(opts.threads, unit="it")
    c.bar = tqdm(unit="fit", desc=f"{name} fits", file=sys.stderr, dynamic_ncols=True,
                 leave=False)
    return c


def _evaluate(model: Pipeline, sel: Selection, X_te: np.ndarray, y_te: np.ndarray,
              es: EmbeddingSet, opts: ProbeOptions, seed: int):
    """Score test once: (test metrics, val summary, test predictions, scores (n, C), score
    kind, bootstrap CIs of the headline metrics)."""
    scores, kind = M.full_scores(model, X_te, len(es.class_names))
    pred = None if es.task == "multilabel" else model.predict(X_te)
    test, val, pred, test_ci = score_run(es.task, es.class_names, y_te, scores, kind,
                                         sel.eval_y, sel.eval_scores, n_boot=opts.n_boot,
                                         alpha=opts.alpha, seed=seed, pred=pred)
    return test, val, pred, scores, kind, test_ci


def _check_embeddings(es: EmbeddingSet, path: Path) -> None:
    """Clear errors for files a probe cannot be trained on."""
    n, C = len(es.ids), len(es.class_names)
    if es.task not in TASKS:
        raise ValueError(f"{path}: attribute 'task' must be 'multiclass' or 'multilabel', got {es.task!r}")
    if C == 0:
        raise ValueError(f"{path} has no 'class_names' attribute; re-run the extraction")
    if es.embeddings.ndim != 2 or es.embeddings.shape[0] != n or es.embeddings.shape[1] == 0:
        raise ValueError(f"{path}: 'embeddings' must be (N={n}, D>0); got {es.embeddings.shape}")
    if not np.isfinite(es.embeddings).all():
        raise ValueError(f"{path}: 'embeddings' contains NaN or inf values; re-run the extraction")
    want = (n, C) if es.task == "multilabel" else (n,)
    if es.labels.shape != want:
        raise ValueError(f"{path}: 'labels' of a {es.task} file must have shape {want}, "
                         f"got {es.labels.shape}")
    lo, hi = (0, 1) if es.task == "multilabel" else (0, C - 1)
    if n and (es.labels.min() < lo or es.labels.max() > hi):
        raise ValueError(f"{path}: 'labels' must lie in [{lo}, {hi}] for {C} classes")
    for split in ("train", "test"):
        if not es.mask(split).any():
            raise ValueError(f"{path} has no '{split}' samples; a probe needs train and test splits")
    if es.task == "multiclass":
        fix = "Re-extract from a dataset with 2 or more classes."
        require_classes(es.class_names, f"embeddings file {path}", fix)
        in_train = np.unique(es.labels[es.mask("train")])
        require_classes([es.class_names[k] for k in in_train], f"the train split of {path}",
                        "Re-extract with training images of 2 or more classes.")


def _options_json(opts: ProbeOptions, given: ProbeOptions) -> dict:
    """Every option of the run, resolved; class weights keyed by class name as given."""
    out = asdict(opts)
    if "class_weight" in out:
        out["class_weight"] = asdict(given)["class_weight"]
    out["grid"] = list(opts.grid)
    if opts.few_shot:
        out["few_shot"]["k"] = list(opts.few_shot.k)
    return out


def _converged(clf) -> bool | None:
    """False when an iterative solver stopped at its max_iter (None when it has no such notion)."""
    est = getattr(clf, "estimators_", [clf])
    runs = [(np.max(e.n_iter_), e.max_iter) for e in est if hasattr(e, "n_iter_")]
    return all(bool(n < cap) for n, cap in runs) if runs else None
