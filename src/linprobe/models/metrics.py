"""Test/val metrics for multi-class and multi-label probes (the metrics-JSON sections).

Shapes: multiclass ``y`` (n,) int class indices, ``scores`` (n, C); multilabel ``Y`` (n, C) 0/1,
``scores`` (n, C). ``C`` is always the full class list, so classes missing from a split keep
their column (see :func:`full_scores`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse
from sklearn.metrics import (accuracy_score, average_precision_score,
                             confusion_matrix, f1_score, hamming_loss,
                             precision_recall_curve, precision_recall_fscore_support,
                             top_k_accuracy_score)

MAX_PR_POINTS = 50


def full_scores(model, X: np.ndarray, n_classes: int) -> tuple[np.ndarray, str]:
    """Per-class scores (n, n_classes) float32 and their kind ("probability" | "decision").

    Columns follow class index order even when the model saw only some classes (missing
    ones get the lowest possible score, so they are never predicted).
    """
    if hasattr(model, "predict_proba"):
        raw, kind = model.predict_proba(X), "probability"
    else:
        raw, kind = model.decision_function(X), "decision"
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 1:                        # binary decision_function: score of classes_[1]
        raw = np.column_stack([-raw, raw])
    classes = getattr(model, "classes_", None)
    # Multilabel OVR has classes_ == arange(C) already; so does a model that saw every class.
    if classes is None or np.array_equal(classes, np.arange(n_classes)):
        return raw, kind
    # Missing classes: probability 0, or the lowest finite decision value (JSON/CSV-safe).
    fill = 0.0 if kind == "probability" else np.finfo(np.float32).min
    out = np.full((raw.shape[0], n_classes), fill, dtype=np.float32)
    out[:, classes.astype(int)] = raw
    return out, kind


def multiclass_metrics(y: np.ndarray, pred: np.ndarray, scores: np.ndarray | None,
                       class_names: list[str]) -> dict:
    """{"summary": {...}, "per_class": {...}, "confusion_matrix": [[...]]}."""
    labels = np.arange(len(class_names))
    summary = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": balanced_accuracy(y, pred),
        # Over classes in y or pred (sklearn's default), so a class absent from test and never
        # predicted does not count as F1 = 0; the bootstrap CI uses the same definition.
        "macro_f1": macro_f1(y, pred),
    }
    if scores is not None and len(class_names) > 5:   # top-5 of 5 classes is always 1.0
        summary["top5_accuracy"] = float(top_k_accuracy_score(y, scores, k=5, labels=labels))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                        "support": int(s[i])} for i, name in enumerate(class_names)}
    cm = confusion_matrix(y, pred, labels=labels)
    return {"summary": summary, "per_class": per_class, "confusion_matrix": cm.tolist()}


def _confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(K, K) counts, rows = true class index; one bincount, much faster than sklearn's
    general-purpose one, which matters inside a 1000-resample bootstrap."""
    k = int(max(y.max(initial=0), pred.max(initial=0))) + 1
    return np.bincount(y.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (= sklearn's balanced_accuracy_score)."""
    cm = _confusion(y, pred)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 over the classes in y or pred (= sklearn's f1_score(average="macro"))."""
    cm = _confusion(y, pred)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)            # 2tp + fp + fn
    used = denom > 0
    return float(np.mean(2 * tp[used] / denom[used]))


def confusion_weighted(y: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Confusion matrices of (y, pred) (n,) under sample weights, for many weightings at once:
    f(W (m, n)) -> (m, K, K) float64 (rows = true class), K = 1 + the largest class index.
    The weighted twin of :func:`_confusion`, exact for integer weights such as bootstrap draw
    counts: W times the (n, cells) one-hot matrix of the (true, predicted) cells that occur
    (one BLAS product; float32 sums of integers are exact below 2**24), or, when that matrix
    would be large (many classes), sums over each cell's rows."""
    y, pred = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    k = int(max(y.max(initial=0), pred.max(initial=0))) + 1
    n = len(y)
    cells, inv = np.unique(y * k + pred, return_inverse=True)
    if len(cells) * n <= 1 << 25:
        E = np.zeros((n, len(cells)), np.float32 if n < 1 << 24 else np.float64)
        E[np.arange(n), inv] = 1

        def sums(W: np.ndarray) -> np.ndarray:
            return np.atleast_2d(W).astype(E.dtype) @ E
    else:
        order = np.argsort(inv, kind="stable")
        starts = np.searchsorted(inv[order], np.arange(len(cells)))

        def sums(W: np.ndarray) -> np.ndarray:
            return np.add.reduceat(np.atleast_2d(W)[:, order], starts, axis=1)

    def f(W: np.ndarray) -> np.ndarray:
        s = sums(W)
        out = np.zeros((s.shape[0], k * k))
        out[:, cells] = s
        return out.reshape(-1, k, k)
    return f


def accuracy_weighted(y: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Accuracy of (y, pred) (n,) under sample weights: f(W (m, n)) -> (m,)."""
    correct = (np.asarray(y) == np.asarray(pred)).astype(np.float64)

    def f(W: np.ndarray) -> np.ndarray:
        W = np.atleast_2d(W).astype(np.float64)
        return (W @ correct) / W.sum(axis=1)
    return f


def balanced_accuracy_weighted(y: np.ndarray, pred: np.ndarray
                               ) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`balanced_accuracy` under sample weights: f(W (m, n)) -> (m,)."""
    cm = confusion_weighted(y, pred)

    def f(W: np.ndarray) -> np.ndarray:
        c = cm(W)
        support = c.sum(axis=2)
        recall = np.divide(np.diagonal(c, axis1=1, axis2=2), support, out=np.zeros(support.shape),
                           where=support > 0)
        return recall.sum(axis=1) / (support > 0).sum(axis=1)
    return f


def macro_f1_weighted(y: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`macro_f1` under sample weights: f(W (m, n)) -> (m,)."""
    cm = confusion_weighted(y, pred)

    def f(W: np.ndarray) -> np.ndarray:
        c = cm(W)
        denom = c.sum(axis=1) + c.sum(axis=2)            # 2tp + fp + fn
        f1 = np.divide(2 * np.diagonal(c, axis1=1, axis2=2), denom, out=np.zeros(denom.shape),
                       where=denom > 0)
        return f1.sum(axis=1) / (denom > 0).sum(axis=1)
    return f


def mean_ap(Y: np.ndarray, scores: np.ndarray) -> float:
    """Macro mAP over the classes with at least one positive in ``Y`` (NaN if none)."""
    present = Y.sum(axis=0) > 0
    if not present.any():
        return float("nan")
    return float(average_precision_score(Y[:, present], scores[:, present], average="macro"))


def mean_ap_weighted(Y: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`mean_ap` of (Y, scores) under sample weights, for many weightings at once.

    Returns f(W) -> (m,) for W (m, n) integer weights: bootstrap draw counts (a resample drawn
    with repetition is the full set weighted by its counts); NaN where no class has a positive
    of weight > 0. Y (n, C) 0/1, scores (n, C) finite.

    AP is sklearn's step-wise sum over thresholds of (recall step) x precision, tied scores
    forming one threshold. Only thresholds holding a positive add to it, so the rows sorted by
    score are cut into segments ending at those thresholds; each segment's total and positive
    weight, for every class and every weighting, come from one sparse product W @ M.
    """
    n, n_classes = Y.shape
    rows, cols, spans = [], [], []
    width = 0
    for c in range(n_classes):
        order = np.argsort(-scores[:, c], kind="stable")
        s, pos = scores[order, c], np.flatnonzero(Y[order, c] > 0)
        if pos.size == 0:
            continue
        ends = np.append(np.flatnonzero(s[1:] != s[:-1]), n - 1)     # last row of each tie
        cuts = np.unique(ends[np.searchsorted(ends, pos)])             # thresholds with a positive
        seg = np.searchsorted(cuts, np.arange(n))                      # segment of each sorted row
        inside = seg < len(cuts)                                       # rows below: no effect
        k = len(cuts)
        rows += [order[inside], order[pos]]
        cols += [width + seg[inside], width + k + seg[pos]]
        spans.append((width, k))
        width += 2 * k
    if not spans:
        return lambda W: np.full(np.shape(W)[0], np.nan)
    r, cc = np.concatenate(rows), np.concatenate(cols)
    # float32 sums of integer weights are exact below 2**24 and twice as fast as float64.
    MT = sparse.csr_matrix((np.ones(len(r), np.float32), (cc, r)), shape=(width, n))

    def f_block(W: np.ndarray) -> np.ndarray:
        seg = MT @ np.ascontiguousarray(W.T, dtype=np.float32)         # (width, m)
        total = np.zeros(W.shape[0])
        n_present = np.zeros(W.shape[0])
        for start, k in spans:
            seen = np.cumsum(seg[start:start + k], axis=0)             # weight above threshold
            gain = seg[start + k:start + 2 * k]                        # positives at threshold
            tp = np.cumsum(gain, axis=0)
            n_pos = tp[-1].astype(np.float64)
            prec = np.divide(tp, seen, out=np.zeros(tp.shape), where=seen > 0, dtype=np.float64)
            ap = np.einsum("km,km->m", gain, prec) / np.where(n_pos > 0, n_pos, 1)
            total += np.where(n_pos > 0, ap, 0.0)
            n_present += n_pos > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_present > 0, total / n_present, np.nan)

    def f(W: np.ndarray) -> np.ndarray:
        W = np.atleast_2d(W)
        # Blocks of weightings whose (width, m) segment sums stay cache-sized.
        step = max(1, (1 << 22) // width)
        return np.concatenate([f_block(W[i:i + step]) for i in range(0, len(W), step)])

    return f


def micro_ap(Y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision over all (sample, class) pairs pooled."""
    if Y.sum() == 0:
        return float("nan")
    return float(average_precision_score(Y, scores, average="micro"))


def tune_thresholds(Y: np.ndarray, scores: np.ndarray, default: float) -> np.ndarray:
    """Per-class thresholds (C,) that maximise F1 on (Y, scores); ``default`` where a class has
    no positives (F1 is undefined there) or constant scores (the model that produced them never
    saw the class, so they carry no information about where to cut)."""
    thresholds = np.full(Y.shape[1], default, dtype=np.float64)
    for c in range(Y.shape[1]):
        if Y[:, c].sum() == 0 or np.ptp(scores[:, c]) == 0:
            continue
        prec, rec, thr = precision_recall_curve(Y[:, c], scores[:, c])
        f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
        best = float(thr[int(np.argmax(f1))])
        # Put the cut halfway to the next lower score rather than exactly on the lowest kept
        # positive: the refit model's scores shift a little, and a cut on a sample is brittle.
        below = scores[:, c][scores[:, c] < best]
        thresholds[c] = (best + float(below.max())) / 2 if below.size else best
    return thresholds


def multilabel_metrics(Y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray,
                       class_names: list[str]) -> dict:
    """{"summary", "per_class", "pr_curves", "missing"}; classes without positives in Y get
    ap = null and are listed under "missing" instead of failing."""
    pred = (scores >= thresholds[None, :]).astype(np.uint8)
    summary = {
        "mAP": json_number(mean_ap(Y, scores)),
        "micro_ap": json_number(micro_ap(Y, scores)),
        "micro_f1": float(f1_score(Y, pred, average="micro", zero_division=0)),
        # Macro over the classes with positives, like mAP (F1 is undefined without them).
        "macro_f1": float(f1_score(Y, pred, labels=np.flatnonzero(Y.sum(axis=0) > 0),
                                   average="macro", zero_division=0)) if Y.any() else None,
        "hamming_loss": float(hamming_loss(Y, pred)),
        "subset_accuracy": float(accuracy_score(Y, pred)),
    }
    p, r, f, s = precision_recall_fscore_support(Y, pred, average=None, zero_division=0)
    per_class, curves, missing = {}, {}, []
    for c, name in enumerate(class_names):
        has_pos = bool(Y[:, c].sum() > 0)
        ap = float(average_precision_score(Y[:, c], scores[:, c])) if has_pos else None
        per_class[name] = {"ap": ap, "precision": float(p[c]), "recall": float(r[c]),
                           "f1": float(f[c]), "support": int(s[c]),
                           "threshold": json_number(float(thresholds[c]))}
        if has_pos:
            curves[name] = pr_curve(Y[:, c], scores[:, c])
        else:
            missing.append(name)
    return {"summary": summary, "per_class": per_class, "pr_curves": curves, "missing": missing}


def pr_curve(y: np.ndarray, score: np.ndarray, max_points: int = MAX_PR_POINTS) -> dict:
    """Precision/recall curve of one class, downsampled to <= max_points (ends kept)."""
    prec, rec, _ = precision_recall_curve(y, score)
    if len(prec) > max_points:
        keep = np.unique(np.linspace(0, len(prec) - 1, max_points).round().astype(int))
        prec, rec = prec[keep], rec[keep]
    return {"precision": [round(float(v), 5) for v in prec],
            "recall": [round(float(v), 5) for v in rec]}


def json_number(v: float) -> float | None:
    """JSON-safe: NaN/inf become null."""
    return float(v) if np.isfinite(v) else None
