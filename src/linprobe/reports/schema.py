"""The shape a metrics JSON must have before the report reads it.

Metrics files are written by `linprobe train`, but they are plain JSON that people edit, merge
or copy between projects. A wrong type deep in the template would surface as a traceback; here
each key the report uses is checked once, and a mistake names the file, the key, what was found
and the fix. Keys the report treats as optional may be missing, but not of the wrong type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_NUMBER = (int, float)
# key -> (required, JSON type(s)); bool is refused where a number is expected (see _is).
_TOP: dict[str, tuple[bool, type | tuple[type, ...]]] = {
    "task": (True, str), "class_names": (True, list), "test": (True, dict),
    "headline": (False, str), "backbone_spec": (False, str), "test_ci": (False, dict),
    "val": (False, dict), "selection": (False, dict), "per_class": (False, dict),
    "confusion_matrix": (False, list), "pr_curves": (False, dict), "few_shot": (False, dict),
    "n": (False, dict), "embed_dim": (False, int), "fit_seconds": (False, _NUMBER),
    "missing_classes": (False, dict), "options": (False, dict), "converged": (False, bool),
}
_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", int: "an integer",
               bool: "true/false", _NUMBER: "a number"}


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and kind is not bool:
        return False
    return isinstance(value, kind)


def validate_metrics(metrics: Any, path: Path) -> dict[str, Any]:
    """``metrics`` if it has the shape the report reads; else ValueError naming ``path``."""
    def fail(key: str, want: str, got: Any) -> ValueError:
        shown = repr(got)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ValueError(f"metrics file {path}: {key} must be {want}, got {shown}. Re-run "
                          "`linprobe train` for this backbone and probe (or `dvc repro`) to "
                          "rewrite it instead of editing it by hand")

    if not isinstance(metrics, dict):
        raise fail("the top level", "a JSON object", type(metrics).__name__)
    for key, (required, kind) in _TOP.items():
        if key not in metrics:
            if required:
                raise ValueError(f"metrics file {path}: key {key!r} is missing. Re-run `linprobe "
                                 "train` for this backbone and probe (or `dvc repro`) to rewrite "
                                 "it instead of editing it by hand")
            continue
        if not _is(metrics[key], kind):
            raise fail(f"key {key!r}", _TYPE_NAMES[kind], metrics[key])
    if metrics["task"] not in ("multiclass", "multilabel"):
        raise fail("key 'task'", "'multiclass' or 'multilabel'", metrics["task"])
    if not all(isinstance(c, str) for c in metrics["class_names"]):
        raise fail("key 'class_names'", "a list of strings", metrics["class_names"])
    for name, value in metrics["test"].items():
        if value is not None and not _is(value, _NUMBER):
            raise fail(f"key 'test.{name}'", "a number or null", value)
    curve = metrics.get("selection", {}).get("curve", [])
    if not isinstance(curve, list) or not all(isinstance(p, dict) for p in curve):
        raise fail("key 'selection.curve'", "a list of objects", curve)
    cm = metrics.get("confusion_matrix", [])
    if not all(isinstance(row, list) and all(_is(v, _NUMBER) for v in row) for row in cm):
        raise fail("key 'confusion_matrix'", "a list of lists of numbers", cm)
    return metrics
