"""The shape a metrics JSON must have before the report reads it.

Metrics files are written by `linprobe train`, but they are plain JSON that people edit, merge
or copy between projects. A wrong type deep in the template would surface as a traceback; here
the keys every run needs, and the entries the template walks, are checked once, and a mistake
names the file, the key, what was found and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_NUMBER = (int, float)
# Keys every run must have (the report has nothing to show without them). Optional keys that
# are missing or malformed are shown as "not available" by the sections, never trusted.
_REQUIRED: dict[str, type] = {"task": str, "class_names": list, "test": dict}
_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object"}


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
    for key, kind in _REQUIRED.items():
        if key not in metrics:
            raise ValueError(f"metrics file {path}: key {key!r} is missing. Re-run `linprobe "
                             "train` for this backbone and probe (or `dvc repro`) to rewrite "
                             "it instead of editing it by hand")
        if not _is(metrics[key], kind):
            raise fail(f"key {key!r}", _TYPE_NAMES[kind], metrics[key])
    if metrics["task"] not in ("multiclass", "multilabel"):
        raise fail("key 'task'", "'multiclass' or 'multilabel'", metrics["task"])
    if not all(isinstance(c, str) for c in metrics["class_names"]):
        raise fail("key 'class_names'", "a list of strings", metrics["class_names"])
    for name, value in metrics["test"].items():
        if value is not None and not _is(value, _NUMBER):
            raise fail(f"key 'test.{name}'", "a number or null", value)
    # The template iterates over these entries as objects.
    selection = metrics.get("selection")
    curve = selection.get("curve", []) if isinstance(selection, dict) else []
    if not isinstance(curve, list) or not all(isinstance(p, dict) for p in curve):
        raise fail("key 'selection.curve'", "a list of objects", curve)
    return metrics
