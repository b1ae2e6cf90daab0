"""Probe options: defaults and validation with messages that name the option and the fix."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from .probes import NORMALIZATIONS, ProbeSpec

SELECTION_METRICS = {"multiclass": ("accuracy", "balanced_accuracy", "macro_f1"),
                     "multilabel": ("mAP", "micro_ap")}

DEFAULTS: dict[str, Any] = {
    "normalize": None,          # None -> the probe's default (standard; none for knn)
    "class_weight": None,       # None | "balanced" | {class_name: weight}
    "grid": None,               # None -> the probe's default grid
    "search": "grid",           # "grid" | "refine" (log-space bisection around the best C)
    "refine_steps": 3,
    "scheme": "val",            # "val" (given val split, else a stratified fraction of train) | "kfold"
    "folds": 5,
    "val_fraction": 0.2,
    "selection_metric": None,   # None -> accuracy (multiclass) / mAP (multilabel)
    "solver": "sklearn",        # logreg only: "sklearn" (reference) | "torch" (L-BFGS, GPU-capable)
    "device": "auto",           # torch solver: "auto" | "cpu" | "cuda"
    "max_iter": 1000,
    "tol": 1e-4,
    "temperature": 0.07,
    "few_shot": {"k": [1, 2, 4, 8, 16], "seeds": 3},   # False disables
    "n_boot": 1000,
    "alpha": 0.05,
}


# Which options each probe accepts: an option that does not apply (temperature on an SVM, a
# solver or a C refinement on k-NN) is refused rather than silently ignored.
_COMMON = frozenset({"normalize", "grid", "scheme", "folds", "val_fraction", "selection_metric",
                     "few_shot", "n_boot", "alpha"})
_LINEAR = _COMMON | {"class_weight", "search", "refine_steps", "max_iter", "tol"}
PROBE_OPTIONS: dict[str, frozenset[str]] = {
    "logreg": _LINEAR | {"solver", "device"},
    "linear_svm": _LINEAR,
    "knn": _COMMON | {"temperature"},
    "ovr_logreg": _LINEAR,
    "ovr_linear_svm": _LINEAR,
}

_WHY = {"solver": "the torch solver is for 'logreg' only",
        "device": "the torch solver is for 'logreg' only",
        "temperature": "only k-NN weights votes by a temperature",
        "search": "k-NN's n_neighbors grid is searched as given, never refined",
        "refine_steps": "k-NN's n_neighbors grid is searched as given, never refined"}


def check_applicable(options: dict | None, probe: str) -> None:
    """Raise ValueError for an option unknown to linprobe or not used by ``probe``."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown probe option(s) {unknown}; known options: {sorted(DEFAULTS)}")
    accepted = PROBE_OPTIONS[probe]
    for name in sorted(set(options) - accepted):
        why = f" ({_WHY[name]})" if name in _WHY else ""
        raise ValueError(f"The {name!r} probe option does not apply to probe {probe!r}{why}; "
                         f"remove it. Options of {probe!r}: {sorted(accepted)}.")
    if "device" in options and options.get("solver", DEFAULTS["solver"]) != "torch":
        raise ValueError(f"The 'device' probe option applies only with solver: torch. Got "
                         f"solver {options.get('solver', DEFAULTS['solver'])!r}; remove "
                         "'device' or set solver: torch.")


def _bad(name: str, must: str, got: Any) -> ValueError:
    return ValueError(f"The {name!r} probe option must be {must}. Got {got!r} instead.")


def _int(opts: dict, name: str, low: int) -> None:
    v = opts[name]
    if isinstance(v, bool) or not isinstance(v, Integral) or v < low:
        raise _bad(name, f"an int >= {low}", v)


def _real(opts: dict, name: str, low: float, high: float | None = None) -> None:
    v = opts[name]
    if isinstance(v, bool) or not isinstance(v, Real) or not (v > low and (high is None or v < high)):
        rng = f"in ({low}, {high})" if high is not None else f"> {low}"
        raise _bad(name, f"a float {rng}", v)


def _choice(opts: dict, name: str, choices: tuple) -> None:
    if opts[name] not in choices:
        raise _bad(name, f"one of {list(choices)}", opts[name])


def resolve_options(options: dict | None, spec: ProbeSpec, task: str,
                    class_names: list[str]) -> dict[str, Any]:
    """Defaults filled in and every value checked; raises ValueError naming the bad option."""
    options = dict(options or {})
    check_applicable(options, spec.name)
    opts = {**DEFAULTS, **options}
    opts["normalize"] = opts["normalize"] or spec.default_normalize
    opts["selection_metric"] = opts["selection_metric"] or SELECTION_METRICS[task][0]
    _choice(opts, "normalize", NORMALIZATIONS)
    _choice(opts, "search", ("grid", "refine"))
    _choice(opts, "scheme", ("val", "kfold"))
    _choice(opts, "selection_metric", SELECTION_METRICS[task])
    _choice(opts, "solver", ("sklearn", "torch"))
    _choice(opts, "device", ("auto", "cpu", "cuda"))
    for name, low in (("refine_steps", 0), ("folds", 2), ("max_iter", 1), ("n_boot", 1)):
        _int(opts, name, low)
    _real(opts, "val_fraction", 0.0, 1.0)
    _real(opts, "alpha", 0.0, 1.0)
    _real(opts, "tol", 0.0)
    _real(opts, "temperature", 0.0)
    opts["grid"] = _grid(opts["grid"], spec)
    if task == "multilabel" and isinstance(opts["class_weight"], dict):
        raise _bad("class_weight", 'None or "balanced" for multilabel data (each class is its '
                   "own binary problem)", opts["class_weight"])
    opts["class_weight"] = _class_weight(opts["class_weight"], class_names)
    opts["few_shot"] = _few_shot(opts["few_shot"])
    return opts


def _grid(grid: Any, spec: ProbeSpec) -> list:
    if grid is None:
        return list(spec.default_grid)
    ok = isinstance(grid, (list, tuple)) and len(grid) > 0 and all(
        isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in grid)
    if spec.param == "n_neighbors":
        ok = ok and all(float(v).is_integer() for v in grid)
    if not ok:
        raise _bad("grid", f"a non-empty list of positive {spec.param} values", grid)
    return sorted({int(v) if spec.param == "n_neighbors" else float(v) for v in grid})


def _class_weight(cw: Any, class_names: list[str]) -> Any:
    """None, "balanced", or {class name: weight} mapped to {class index: weight}."""
    if cw is None or cw == "balanced":
        return cw
    if isinstance(cw, dict):
        unknown = sorted(set(cw) - set(class_names))
        if unknown:
            raise _bad("class_weight", f"a dict keyed by class names {class_names}", cw)
        return {class_names.index(k): float(v) for k, v in cw.items()}
    raise _bad("class_weight", 'None, "balanced" or a {class name: weight} dict', cw)


def _few_shot(fs: Any) -> dict | None:
    if fs is False or fs is None:
        return None
    if not isinstance(fs, dict) or set(fs) - {"k", "seeds"}:
        raise _bad("few_shot", 'False or a dict {"k": [ints >= 1], "seeds": int >= 1}', fs)
    fs = {**DEFAULTS["few_shot"], **fs}
    ks, seeds = fs["k"], fs["seeds"]
    if not (isinstance(ks, (list, tuple)) and ks and all(
            isinstance(k, Integral) and not isinstance(k, bool) and k >= 1 for k in ks)):
        raise _bad("few_shot", "a dict whose 'k' is a non-empty list of ints >= 1", fs)
    if isinstance(seeds, bool) or not isinstance(seeds, Integral) or seeds < 1:
        raise _bad("few_shot", "a dict whose 'seeds' is an int >= 1", fs)
    return {"k": sorted(set(int(k) for k in ks)), "seeds": int(seeds)}
