"""The facts every stage shares: task and split names, the headline metric per task.

This module is the bottom layer of the package (it imports nothing from linprobe, numpy only at
most), so features, models, reports and pipeline all read these names from here.
"""

from __future__ import annotations

TASKS: tuple[str, ...] = ("multiclass", "multilabel")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}
# The one metric a run is ranked by, per task (the leaderboard, "≈ best", `linprobe train`'s
# summary line and the few-shot curves all show this one).
HEADLINE: dict[str, str] = {"multiclass": "accuracy", "multilabel": "mAP"}
