"""The artifact schema: the facts every stage shares, in one place.

- task and split names, and the headline metric per task;
- :class:`ArtifactPaths`: where every artifact lives under the artifacts root;
- :class:`RunMetrics`: the metrics JSON of one train run (versioned), and :func:`read_metrics`;
- :data:`PREDICTION_HEADER` and :func:`read_predictions`: the test-predictions CSV.

This module is the bottom layer of the package: it imports nothing from linprobe and only the
standard library at import time (numpy is imported by :func:`read_predictions` when called), so
features, models, reports, pipeline and ``import linprobe`` can all use it cheaply.
"""

from __future__ import annotations

import csv
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Required, TypedDict

if TYPE_CHECKING:
    import numpy as np

TASKS: tuple[str, ...] = ("multiclass", "multilabel")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}
# The one metric a run is ranked by, per task (the leaderboard, "≈ best", `linprobe train`'s
# summary line and the few-shot curves all show this one).
HEADLINE: dict[str, str] = {"multiclass": "accuracy", "multilabel": "mAP"}


# --- file layout -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArtifactPaths:
    """Where every artifact lives under ``root`` (``artifacts/`` in dvc.yaml; a test checks that
    dvc.yaml's paths are these)::

        check.ok                                       linprobe check's stamp
        embeddings/<backbone>.h5                       linprobe extract
        probes/<backbone>/<probe>.joblib               linprobe train: the fitted pipeline
        predictions/<backbone>/<probe>.csv             linprobe train: PREDICTION_HEADER rows
        predictions/<backbone>/<probe>.scores.npy      linprobe train: (n_test, C) float32
        metrics/<backbone>/<probe>.json                linprobe train: RunMetrics (written last)
        probes/<backbone>/<arm>.safetensors            linprobe finetune: the trained network
        .finetune-ckpt/<backbone>/<arm>/               linprobe finetune: per-epoch checkpoints
        report/index.html                              linprobe report
        plots/learning_curves/<backbone>-<probe>.csv   linprobe report --plots-dir
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def check_stamp(self) -> Path:
        return self.root / "check.ok"

    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    @property
    def probes_dir(self) -> Path:
        return self.root / "probes"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def report(self) -> Path:
        return self.root / "report" / "index.html"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots" / "learning_curves"

    def embeddings(self, backbone: str) -> Path:
        return self.embeddings_dir / f"{backbone}.h5"

    def probe(self, backbone: str, probe: str) -> Path:
        return self.probes_dir / backbone / f"{probe}.joblib"

    def predictions(self, backbone: str, probe: str) -> Path:
        return self.predictions_dir / backbone / f"{probe}.csv"

    def scores(self, backbone: str, probe: str) -> Path:
        return self.predictions_dir / backbone / f"{probe}.scores.npy"

    def metrics(self, backbone: str, probe: str) -> Path:
        return self.metrics_dir / backbone / f"{probe}.json"

    def run(self, backbone: str, probe: str) -> dict[str, Path]:
        """The files one train run writes, by kind; the metrics file last (its presence means
        the others are complete)."""
        return {"probe": self.probe(backbone, probe),
                "predictions": self.predictions(backbone, probe),
                "scores": self.scores(backbone, probe),
                "metrics": self.metrics(backbone, probe)}

    def finetuned_model(self, backbone: str, arm: str) -> Path:
        """A fine-tune arm's trained network (backbone + head): safetensors, no pickle."""
        return self.probes_dir / backbone / f"{arm}.safetensors"

    def finetune_run(self, backbone: str, arm: str) -> dict[str, Path]:
        """The files one ``linprobe finetune`` run writes: :meth:`run`'s, with the trained
        network in place of the probe's joblib; the metrics file last."""
        return {"model": self.finetuned_model(backbone, arm),
                **{k: v for k, v in self.run(backbone, arm).items() if k != "probe"}}

    def finetune_checkpoints(self, backbone: str, arm: str) -> Path:
        """Folder of a fine-tune run's per-epoch checkpoints. Outside every DVC out (a hidden
        folder of the root), so a re-run after a kill resumes although DVC removed the outs."""
        return self.root / ".finetune-ckpt" / backbone / arm

    def metrics_files(self) -> list[Path]:
        """Every run's metrics file, sorted by (backbone, probe)."""
        return sorted(self.metrics_dir.glob("*/*.json"))

    @staticmethod
    def run_of(metrics_file: Path) -> tuple[str, str]:
        """(backbone, probe) of a ``metrics/<backbone>/<probe>.json`` path."""
        return metrics_file.parent.name, metrics_file.stem

    @staticmethod
    def learning_curve(plots_dir: str | Path, backbone: str, probe: str) -> Path:
        """One run's few-shot curve under a ``--plots-dir`` (`dvc plots` draws one per file)."""
        return Path(plots_dir) / f"{backbone}-{probe}.csv"


# --- metrics JSON ------------------------------------------------------------------------------

# Bump when a key changes meaning or type; files without the key are version 1.
SCHEMA_VERSION = 1


class RunMetrics(TypedDict, total=False):
    """``metrics/<backbone>/<probe>.json``, schema version 1: one train run's results.

    Written by ``linprobe train``; read by the report, :func:`linprobe.load_results` and
    ``dvc metrics``. Optional keys may be absent (files of older versions, hand edits); readers
    show them as "not available". Unknown keys are kept.
    """

    schema_version: Required[int]
    backbone: Required[str]              # the embeddings file's stem
    probe: Required[str]                 # the probe's name in params.yaml
    task: Required[str]                  # one of TASKS
    headline: Required[str]              # HEADLINE[task]
    class_names: Required[list[str]]
    test: Required[dict[str, float | None]]  # summary metrics on the test split
    backbone_spec: str
    probe_type: str                      # the registry probe the entry runs (logreg, knn, ...)
    solver: str
    n: dict[str, int]                    # samples per split
    embed_dim: int
    test_ci: dict[str, list[float | None]]  # metric -> [low, high] (bootstrap)
    val: dict[str, float | None]         # summary metrics on the held-out selection data
    selection: dict[str, Any]            # scheme, metric, params, grid, curve, ...
    per_class: dict[str, dict[str, Any]]
    missing_classes: dict[str, list[str]]
    options: dict[str, Any]
    score_kind: str                      # "probability" | "decision"
    converged: bool | None
    fit_seconds: float
    threads: dict[str, Any]              # setting, available, used {threads: fits}, rate, unit
    seed: int
    confusion_matrix: list[list[int]]    # multiclass: rows actual, columns predicted
    pr_curves: dict[str, dict[str, list[float]]]  # multilabel: class -> precision, recall
    few_shot: dict[str, Any]             # k, mean, std, seeds, metric, seconds
    # Fine-tune arms (probe "finetune" / "scratch") only:
    history: list[EpochRecord]           # every epoch of every lr in the grid, in run order
    train_cost: TrainCost


class EpochRecord(TypedDict):
    """One epoch of a fine-tune run (``RunMetrics.history``)."""

    lr: float              # the grid's peak learning rate this run trains with
    epoch: int             # 1-based
    lr_end: float          # the scheduled learning rate at the epoch's last step
    train_loss: float      # mean training loss over the epoch
    val: float | None      # the val metric (``selection.metric``) after the epoch
    seconds: float         # training + val scoring time of the epoch
    images_per_s: float    # training images per second (augmented, forward + backward)


class TrainCost(TypedDict, total=False):
    """A fine-tune run's cost (``RunMetrics.train_cost``), next to extraction's."""

    seconds: float         # all epochs of all lrs, training + val scoring
    images_per_s: float    # training images per second over all epochs
    epochs: int            # epochs run (all lrs)
    device: str
    precision: str


def _json_types(hint: Any) -> tuple[type, ...]:
    """The Python types a JSON value of annotation ``hint`` may decode to."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _json_types(arg))
    if origin is not None:
        return (origin,)
    if hint is Any:
        return (object,)
    if typing.is_typeddict(hint):
        return (dict,)
    return {float: (int, float), type(None): (type(None),)}.get(hint, (hint,))


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False  # JSON true is not a number
    return isinstance(value, kinds)


_HINTS = typing.get_type_hints(RunMetrics)
_KEY_TYPES: dict[str, tuple[type, ...]] = {k: _json_types(h) for k, h in _HINTS.items()}
# Keys the report cannot do without; headline, backbone, probe and schema_version are filled in
# (from the task and the file's path) when absent, as files of older versions may lack them.
_NEEDED = ("task", "class_names", "test")
_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object"}
_FIX = ("Re-run `linprobe train` for this backbone and probe (or `dvc repro`) to rewrite it "
        "instead of editing it by hand")


def check_metrics(data: Any, path: str | Path) -> RunMetrics:
    """``data`` (a decoded metrics JSON) as :class:`RunMetrics`, or ValueError naming ``path``.

    Optional keys of the wrong JSON type are dropped (shown as "not available"); a file of a
    newer schema version than this linprobe reads is refused.
    """
    def fail(key: str, want: str, got: Any) -> ValueError:
        shown = repr(got)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ValueError(f"metrics file {path}: {key} must be {want}, got {shown}. {_FIX}")

    if not isinstance(data, dict):
        raise fail("the top level", "a JSON object", type(data).__name__)
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail("key 'schema_version'", "an int >= 1", version)
    if version > SCHEMA_VERSION:
        raise ValueError(f"metrics file {path} has schema_version {version}, but this linprobe "
                         f"reads versions up to {SCHEMA_VERSION}; upgrade linprobe (pip install "
                         f"-U linprobe), or re-run `linprobe train` with this version to "
                         f"rewrite it")
    for key in _NEEDED:
        if key not in data:
            raise ValueError(f"metrics file {path}: key {key!r} is missing. {_FIX}")
        if not _is(data[key], _KEY_TYPES[key]):
            raise fail(f"key {key!r}", _TYPE_NAMES[_KEY_TYPES[key][0]], data[key])
    if data["task"] not in TASKS:
        raise fail("key 'task'", " or ".join(map(repr, TASKS)), data["task"])
    if not all(isinstance(c, str) for c in data["class_names"]):
        raise fail("key 'class_names'", "a list of strings", data["class_names"])
    for name, value in data["test"].items():
        if value is not None and not _is(value, (int, float)):
            raise fail(f"key 'test.{name}'", "a number or null", value)
    out = {k: v for k, v in data.items() if k not in _KEY_TYPES or _is(v, _KEY_TYPES[k])}
    # The template iterates over these entries as objects.
    curve = out.get("selection", {}).get("curve", [])
    if not isinstance(curve, list) or not all(isinstance(p, dict) for p in curve):
        raise fail("key 'selection.curve'", "a list of objects", curve)
    backbone, probe = ArtifactPaths.run_of(Path(path))
    defaults = {"schema_version": version, "headline": HEADLINE[data["task"]],
                "backbone": backbone, "probe": probe}
    return typing.cast(RunMetrics, {**defaults, **out})


def read_metrics(path: str | Path) -> RunMetrics:
    """Read and check ``metrics/<backbone>/<probe>.json`` (see :func:`check_metrics`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"metrics file {path} is not valid JSON ({exc}); re-run `linprobe "
                         f"train` for this backbone and probe (or `dvc repro`) to rewrite it"
                         ) from exc
    return check_metrics(data, path)


def looks_like_metrics(data: Any) -> bool:
    """Whether decoded JSON is a metrics file ``linprobe train`` wrote (any version): the keys
    every version has written."""
    return isinstance(data, dict) and {"backbone", "probe", "task", "headline"} <= set(data)


# --- predictions CSV ---------------------------------------------------------------------------

# Columns of predictions/<backbone>/<probe>.csv, one row per test sample in the embeddings file's
# order: class names (multi-label: '|'-joined, empty for none); score of the predicted class
# (multi-label: the highest score).
PREDICTION_HEADER: tuple[str, ...] = ("id", "actual", "predicted", "score")


@dataclass
class Predictions:
    """Test predictions of one run: ids, actual, predicted (class names; multilabel '|'-joined)
    and score, each (n,)."""

    ids: np.ndarray
    actual: np.ndarray
    predicted: np.ndarray
    score: np.ndarray

    def wrong(self, task: str) -> np.ndarray:
        """(n,) bool: the predicted class (multilabel: label set) differs from the actual one.
        For display only (error gallery, accuracy CI); runs are compared by models.compare."""
        import numpy as np

        if task != "multilabel":
            return np.asarray(self.actual != self.predicted, dtype=bool)
        labels = lambda v: set(filter(None, v.split("|")))  # noqa: E731
        return np.array([labels(a) != labels(p) for a, p in zip(self.actual, self.predicted)],
                        dtype=bool)


def read_predictions(path: str | Path) -> Predictions:
    """Read a predictions CSV; errors name the file (missing, or a header without
    id,actual,predicted)."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist; run `linprobe train` "
                                "first")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not set(PREDICTION_HEADER[:3]) <= set(reader.fieldnames):
            raise ValueError(
                f"predictions file {path} must have the header {','.join(PREDICTION_HEADER)}; "
                f"got {reader.fieldnames}. Re-run `linprobe train` to rewrite it."
            )
        rows = list(reader)
    score = [float(r["score"]) if r.get("score") not in (None, "") else np.nan for r in rows]
    return Predictions(
        ids=np.array([r["id"] for r in rows], dtype=object),
        actual=np.array([r["actual"] for r in rows], dtype=object),
        predicted=np.array([r["predicted"] for r in rows], dtype=object),
        score=np.array(score, dtype=np.float64),
    )
