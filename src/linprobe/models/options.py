"""Probe options as frozen dataclasses: each field's default and check live in one class.

``ProbeOptions`` holds what every probe accepts; ``LinearOptions`` adds what the C-searched linear
probes use (``logreg``, ``linear_svm``, ``ovr_*``), ``SolverOptions`` the choice of solver (its
subclasses ``LogregOptions``, ``SvmOptions`` and ``OvrOptions`` name the probe), and
``KnnOptions`` the vote temperature. The registry (:mod:`.probes`) names each probe's class, so an
option a probe does not use (``temperature`` on an SVM) is refused instead of silently ignored.
Constructing a class checks its values; :func:`options_from_dict` also checks the option names;
:func:`resolve_options` adds the checks that need the data (task, class names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from linprobe.cpus import parse_threads
from linprobe.features.config import DEVICES

NORMALIZATIONS: tuple[str, ...] = ("standard", "l2", "none")
SELECTION_METRICS: dict[str, tuple[str, ...]] = {
    "multiclass": ("accuracy", "balanced_accuracy", "macro_f1"),
    "multilabel": ("mAP", "micro_ap")}
SCHEMES: tuple[str, ...] = ("val", "kfold")
SEARCHES: tuple[str, ...] = ("auto", "grid", "refine", "path")
SOLVERS: tuple[str, ...] = ("sklearn", "torch")
SOLVER_DEVICES: tuple[str, ...] = DEVICES  # the extractor's choices: one list of devices
C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 2, 13))
K_GRID: tuple[int, ...] = (1, 5, 10, 20, 50, 100)

# Names an old params.yaml may still use: {old: (new, why)}.
RENAMED = {"val_fraction": ("holdout_fraction", "the share of train held out for selection "
                            "when the data has no val split; data.val_fraction is a different "
                            "thing, the val split's share of the data")}


def _bad(name: str, must: str, got: Any) -> ValueError:
    return ValueError(f"The {name!r} probe option must be {must}. Got {got!r} instead.")


def _int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, Integral) or v < low:
        raise _bad(name, f"an int >= {low}", v)
    return int(v)


def _real(name: str, v: Any, low: float, high: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, Real) or not (
            v > low and (high is None or v < high)):
        rng = f"in ({low}, {high})" if high is not None else f"> {low}"
        raise _bad(name, f"a float {rng}", v)
    return float(v)


def _choice(name: str, v: Any, choices: tuple) -> None:
    if not isinstance(v, str) or v not in choices:
        raise _bad(name, f"one of {list(choices)}", v)


def _set(obj: Any, name: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass (only ever from its __post_init__)."""
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class FewShot:
    """The few-shot curve: ``k`` labelled train images per class, ``seeds`` draws per k."""
    k: tuple[int, ...] = (1, 2, 4, 8, 16)
    seeds: int = 3

    def __post_init__(self) -> None:
        ks, got = self.k, {"k": self.k, "seeds": self.seeds}
        if not (isinstance(ks, (list, tuple)) and ks and all(
                isinstance(k, Integral) and not isinstance(k, bool) and k >= 1 for k in ks)):
            raise _bad("few_shot", "a dict whose 'k' is a non-empty list of ints >= 1", got)
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, Integral) or self.seeds < 1:
            raise _bad("few_shot", "a dict whose 'seeds' is an int >= 1", got)
        _set(self, "k", tuple(sorted({int(k) for k in ks})))
        _set(self, "seeds", int(self.seeds))


def _few_shot(fs: Any) -> FewShot | None:
    """``few_shot`` as given: False/None (off), a FewShot, or a {"k", "seeds"} dict."""
    if fs is False or fs is None or isinstance(fs, FewShot):
        return fs or None
    if not isinstance(fs, Mapping) or set(fs) - {"k", "seeds"}:
        raise _bad("few_shot", 'False or a dict {"k": [ints >= 1], "seeds": int >= 1}', fs)
    return FewShot(**fs)


@dataclass(frozen=True)
class ProbeOptions:
    """What every probe accepts: feature normalisation, the searched grid, how held-out data
    is chosen for the search, the few-shot curve and the test bootstrap."""
    searched: ClassVar[str] = "C"         # the hyper-parameter ``grid`` holds values of

    normalize: str = "standard"           # standard | l2 | none
    grid: tuple = C_GRID                  # values of ``searched``, tried in ascending order
    scheme: str = "val"                   # val (val split, else holdout_fraction of train) | kfold
    folds: int = 5                        # kfold only
    holdout_fraction: float = 0.2         # share of train held out when the data has no val split
    selection_metric: str | None = None   # None: accuracy (multiclass) / mAP (multilabel)
    few_shot: FewShot | None = FewShot()  # None (YAML: false) switches the curve off
    n_boot: int = 1000                    # bootstrap resamples of the test set
    alpha: float = 0.05                   # 1 - confidence of the test intervals
    threads: int | str = "auto"           # per fit: auto (the free cores, re-read before each
                                          # fit; linprobe.threads) | a fixed count

    def __post_init__(self) -> None:
        _choice("normalize", self.normalize, NORMALIZATIONS)
        _set(self, "threads", parse_threads(self.threads, "threads", "probe option"))
        _choice("scheme", self.scheme, SCHEMES)
        if self.selection_metric is not None:
            _choice("selection_metric", self.selection_metric,
                    tuple(m for ms in SELECTION_METRICS.values() for m in ms))
        _set(self, "folds", _int("folds", self.folds, 2))
        _set(self, "n_boot", _int("n_boot", self.n_boot, 1))
        _set(self, "holdout_fraction", _real("holdout_fraction", self.holdout_fraction, 0.0, 1.0))
        _set(self, "alpha", _real("alpha", self.alpha, 0.0, 1.0))
        _set(self, "grid", self._grid(self.grid))
        _set(self, "few_shot", _few_shot(self.few_shot))

    def _grid(self, grid: Any) -> tuple:
        ok = isinstance(grid, (list, tuple)) and len(grid) > 0 and all(
            isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in grid)
        if not ok:
            raise _bad("grid", f"a non-empty list of positive {self.searched} values", grid)
        return tuple(sorted({float(v) for v in grid}))

    def refine_steps_to_run(self) -> int:
        """Log-space bisection steps around the best grid value (0: the grid as given)."""
        return 0


@dataclass(frozen=True)
class LinearOptions(ProbeOptions):
    """A linear classifier searched over its inverse regularisation C."""
    class_weight: str | dict[str, float] | None = None   # None | balanced | {class name: weight}
    search: str = "auto"                  # auto (path with solver torch, else grid) | grid
    #                                       | refine (bisect the log grid around the best C)
    #                                       | path (torch solvers; see models/selection.py)
    refine_steps: int = 3
    max_iter: int = 1000
    tol: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("search", self.search, SEARCHES)
        solver = getattr(self, "solver", "sklearn")
        if self.search == "path" and solver != "torch":
            raise ValueError("The 'search' probe option 'path' needs solver: torch (it relies on "
                             "the torch solvers' warm starts and minimum iterations). Got solver "
                             f"{solver!r}; set solver: torch or search: grid.")
        _set(self, "refine_steps", _int("refine_steps", self.refine_steps, 0))
        _set(self, "max_iter", _int("max_iter", self.max_iter, 1))
        _set(self, "tol", _real("tol", self.tol, 0.0))
        cw = self.class_weight
        if isinstance(cw, Mapping):
            if not all(isinstance(k, str) for k in cw) or not all(
                    isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in cw.values()):
                raise _bad("class_weight", "a dict of class name: positive weight", cw)
            _set(self, "class_weight", {k: float(v) for k, v in cw.items()})
        elif cw not in (None, "balanced"):
            raise _bad("class_weight", 'None, "balanced" or a {class name: weight} dict', cw)

    def refine_steps_to_run(self) -> int:
        return self.refine_steps if self.search == "refine" else 0

    def resolved_search(self) -> str:
        """``search`` with ``auto`` resolved: ``path`` with the torch solver, else ``grid``."""
        if self.search != "auto":
            return self.search
        return "path" if getattr(self, "solver", "sklearn") == "torch" else "grid"


@dataclass(frozen=True)
class SolverOptions(LinearOptions):
    """A linear probe fitted by a torch L-BFGS solver (the default: warm starts along the C
    path, CPU or GPU) or by sklearn's solver (the reference the tests check it against)."""
    solver: str = "torch"                 # torch (L-BFGS, GPU-capable) | sklearn (the reference)
    device: str = "auto"                  # torch solver only: auto | cpu | cuda

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("solver", self.solver, SOLVERS)
        _choice("device", self.device, SOLVER_DEVICES)
        if self.device != "auto" and self.solver != "torch":
            raise ValueError(f"The 'device' probe option applies only with solver: torch. Got "
                             f"solver {self.solver!r}; remove 'device' or set solver: torch.")


@dataclass(frozen=True)
class LogregOptions(SolverOptions):
    """Logistic regression: torch L-BFGS (:mod:`.torch_lbfgs`, the default) or sklearn's lbfgs
    (the reference). With ``chunk_mb`` the torch solver streams the file in blocks of about
    that many MiB instead of loading it (:mod:`.streaming`): memory bounded by the block."""
    chunk_mb: float | None = None         # None: load the file | MiB per streamed block

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk_mb is None:
            return
        _set(self, "chunk_mb", _real("chunk_mb", self.chunk_mb, 0.0))
        if self.solver != "torch":
            raise ValueError(f"The 'chunk_mb' probe option streams the file through the torch "
                             f"solver. Got solver {self.solver!r}; set solver: torch or remove "
                             f"chunk_mb.")
        if self.scheme != "val" or self.few_shot is not None:
            raise ValueError("The 'chunk_mb' probe option (streamed fit) selects C on the val "
                             "split and has no few-shot curve. Got scheme "
                             f"{self.scheme!r}, few_shot {self.few_shot!r}; set scheme: val "
                             "and few_shot: false, or remove chunk_mb.")


@dataclass(frozen=True)
class SvmOptions(SolverOptions):
    """Linear SVM (squared hinge): torch L-BFGS (:mod:`.torch_svm`, the default) or sklearn's
    liblinear (the reference). liblinear cannot warm-start along the C grid and needs hundreds of
    dual iterations per fit at large C; the L-BFGS path reaches the same objective and choices
    (tests/models/test_torch_svm.py, benchmarks/svm_solvers.py) many times faster."""


@dataclass(frozen=True)
class OvrOptions(SolverOptions):
    """One-vs-rest logistic regression / linear SVM (multilabel or multiclass): the K binary
    problems fitted together by torch L-BFGS (:mod:`.torch_ovr`, the default) or one by one by
    sklearn's ``OneVsRestClassifier`` (the reference)."""


@dataclass(frozen=True)
class KnnOptions(ProbeOptions):
    """Cosine k-NN searched over n_neighbors; votes weighted by exp(similarity / temperature)."""
    searched: ClassVar[str] = "n_neighbors"

    normalize: str = "none"               # cosine similarity is scale-free already
    grid: tuple = K_GRID
    temperature: float = 0.07

    def __post_init__(self) -> None:
        super().__post_init__()
        _set(self, "temperature", _real("temperature", self.temperature, 0.0))

    def _grid(self, grid: Any) -> tuple:
        values = super()._grid(grid)
        if not all(v.is_integer() for v in values):
            raise _bad("grid", f"a non-empty list of positive {self.searched} values", grid)
        return tuple(int(v) for v in values)


OPTION_CLASSES: tuple[type[ProbeOptions], ...] = (ProbeOptions, LinearOptions, SolverOptions,
                                                  LogregOptions, KnnOptions)
KNOWN_OPTIONS: frozenset[str] = frozenset(f.name for c in OPTION_CLASSES for f in fields(c))

# Why an option does not apply, where the option's name alone does not say it.
_NO_SOLVER = "k-NN has no solver to choose"
_WHY = {"solver": _NO_SOLVER,
        "device": _NO_SOLVER,
        "temperature": "only k-NN weights votes by a temperature",
        "chunk_mb": "only logreg (solver: torch) streams the file",
        "search": "k-NN's n_neighbors grid is searched as given, never refined",
        "refine_steps": "k-NN's n_neighbors grid is searched as given, never refined"}


def option_names(cls: type[ProbeOptions]) -> list[str]:
    """The options a probe with options class ``cls`` accepts, sorted."""
    return sorted(f.name for f in fields(cls))


def options_from_dict(cls: type[ProbeOptions], options: Mapping[str, Any] | None,
                      probe: str) -> ProbeOptions:
    """``cls(**options)`` after refusing renamed, unknown and not applicable option names."""
    options = dict(options or {})
    for old, (new, why) in RENAMED.items():
        if old in options:
            raise ValueError(f"The {old!r} probe option was renamed to {new} ({why}); "
                             f"rename it.")
    unknown = sorted(set(options) - KNOWN_OPTIONS, key=str)
    if unknown:
        raise ValueError(f"unknown probe option(s) {unknown}; known options: "
                         f"{sorted(KNOWN_OPTIONS)}")
    accepted = option_names(cls)
    for name in sorted(set(options) - set(accepted)):
        why = f" ({_WHY[name]})" if name in _WHY else ""
        raise ValueError(f"The {name!r} probe option does not apply to probe {probe!r}{why}; "
                         f"remove it. Options of {probe!r}: {accepted}.")
    return cls(**options)


def resolve_options(opts: ProbeOptions, task: str, class_names: list[str]) -> ProbeOptions:
    """The checks that need the data, and its defaults: the selection metric for ``task``, and
    ``class_weight`` keyed by class index (the labels the estimator sees) instead of name."""
    metric = opts.selection_metric or SELECTION_METRICS[task][0]
    _choice("selection_metric", metric, SELECTION_METRICS[task])
    opts = replace(opts, selection_metric=metric)
    if isinstance(opts, LinearOptions):   # the metrics record the search that ran
        opts = replace(opts, search=opts.resolved_search())
    cw = getattr(opts, "class_weight", None)
    if not isinstance(cw, dict):
        return opts
    if task == "multilabel":
        raise _bad("class_weight", 'None or "balanced" for multilabel data (each class is its '
                   "own binary problem)", cw)
    if set(cw) - set(class_names):
        raise _bad("class_weight", f"a dict keyed by class names {class_names}", cw)
    by_index = {class_names.index(k): v for k, v in cw.items()}
    # replace() would re-run __post_init__, which wants names: set the field on the copy.
    _set(opts, "class_weight", by_index)
    return opts
