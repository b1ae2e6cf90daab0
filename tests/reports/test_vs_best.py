"""The report's "≈ best" flag is models.compare's paired bootstrap of the displayed headline
metric: for multi-label runs mAP from the saved scores, not the predicted label sets."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from linprobe.models import compare_runs
from linprobe.models.metrics import mean_ap
from linprobe.models.persist import array, csv_rows, json_data, write_all
from linprobe.models.uncertainty import paired_bootstrap
from linprobe.reports import sections
from linprobe.reports.collect import load_runs
from linprobe.schema import ArtifactPaths, read_predictions
from tests.models.mosaic import mosaic_runs


def run_artifacts(art: Path, backbone: str, probe: str) -> dict[str, Path]:
    return ArtifactPaths(art).run(backbone, probe)

PROBE = "ovr_logreg"


@pytest.fixture(scope="module")
def ml_art(tmp_path_factory) -> Path:
    return mosaic_runs(tmp_path_factory.mktemp("mosaic"))


def variant(art: Path, name: str, *, scores=None, predicted=None) -> None:
    """Write run ``name``/PROBE: the real r18/PROBE run with its scores (n, C) or its CSV's
    predicted column replaced, the metrics' test mAP recomputed from the scores."""
    src, dst = run_artifacts(art, "r18", PROBE), run_artifacts(art, name, PROBE)
    metrics = json.loads(src["metrics"].read_text())
    with open(src["predictions"], newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    names = metrics["class_names"]
    Y = np.array([[n in r[1].split("|") for n in names] for r in rows], np.uint8)
    scores = np.load(src["scores"]) if scores is None else scores
    if predicted is not None:
        rows = [[r[0], r[1], p, r[3]] for r, p in zip(rows, predicted)]
    metrics["test"]["mAP"] = mean_ap(Y, scores)
    metrics["backbone"] = name
    write_all({dst["predictions"]: csv_rows(header, rows), dst["scores"]: array(scores),
               dst["metrics"]: json_data(metrics)})


def board(art: Path) -> dict[str, dict]:
    rows = sections.leaderboard(load_runs(art), {}, art)
    return {r["backbone"]: r for r in rows if r["probe"] == PROBE}


def jaccard_tie(art: Path, a: str, b: str) -> bool:
    """The rule the report used before: paired bootstrap of per-image label-set Jaccard."""
    def jac(run):
        p = read_predictions(run_artifacts(art, run, PROBE)["predictions"])
        sets = [(set(filter(None, x.split("|"))), set(filter(None, y.split("|"))))
                for x, y in zip(p.actual, p.predicted)]
        return np.array([len(s & t) / len(s | t) if s | t else 1.0 for s, t in sets])
    return not paired_bootstrap(jac(a), jac(b))["significant"]


def test_same_label_sets_worse_ranking_is_not_a_tie(ml_art, tmp_path):
    """Same predicted label sets (the Jaccard rule sees a tie), scores that rank each class's
    predicted labels first but in random order: a clearly lower mAP, not "≈ best"."""
    art = tmp_path / "artifacts"
    shutil.copytree(ml_art, art)
    metrics = json.loads(run_artifacts(art, "r18", PROBE)["metrics"].read_text())
    with open(run_artifacts(art, "r18", PROBE)["predictions"], newline="") as f:
        predicted = [r["predicted"] for r in csv.DictReader(f)]
    P = np.array([[n in p.split("|") for n in metrics["class_names"]] for p in predicted], float)
    shuffled = P + 0.5 * np.random.default_rng(0).random(P.shape)
    variant(art, "shuffled", scores=shuffled.astype(np.float32))
    assert jaccard_tie(art, "r18", "shuffled")
    rows = board(art)
    assert rows["r18"]["is_best"] and rows["shuffled"]["value"] < rows["r18"]["value"] - 0.05
    assert rows["shuffled"]["vs_best"]["significant"]
    assert not rows["shuffled"]["tied_with_best"]


def test_same_scores_other_label_sets_is_a_tie(ml_art, tmp_path):
    """The same scores (the same mAP) but every label predicted for every image (the Jaccard
    rule finds it significantly worse): "≈ best", since the mAP shown is identical."""
    art = tmp_path / "artifacts"
    shutil.copytree(ml_art, art)
    names = json.loads(run_artifacts(art, "r18", PROBE)["metrics"].read_text())["class_names"]
    variant(art, "all_labels", predicted=["|".join(names)] * 200)
    assert not jaccard_tie(art, "r18", "all_labels")
    rows = board(art)
    best, other = (("r18", "all_labels") if rows["r18"]["is_best"] else ("all_labels", "r18"))
    assert rows[best]["value"] == rows[other]["value"]
    assert rows[other]["tied_with_best"] and rows[other]["vs_best"]["diff"] == 0


def test_report_and_helper_give_the_same_comparison(ml_art, multiclass_artifacts, tmp_path):
    """The leaderboard's "vs best" is compare_runs(best, other) with the defaults, field for
    field, for multi-label and multi-class runs."""
    ml = tmp_path / "artifacts"
    shutil.copytree(ml_art, ml)
    scores = np.load(run_artifacts(ml, "r18", PROBE)["scores"])
    noise = np.random.default_rng(1).normal(scale=scores.std(), size=scores.shape)
    variant(ml, "noisy", scores=(scores + noise).astype(np.float32))
    checked = 0
    for art in (ml, multiclass_artifacts):
        rows = sections.leaderboard(load_runs(art), {}, art)
        best = {r["probe"]: r for r in rows if r["is_best"]}
        for r in rows:
            if r["is_best"]:
                continue
            b = best[r["probe"]]
            assert r["vs_best"] == compare_runs(art, f"{b['backbone']}/{b['probe']}",
                                                f"{r['backbone']}/{r['probe']}")
            assert r["tied_with_best"] == (not r["vs_best"]["significant"])
            checked += 1
    assert checked == 1 + 2  # mosaic: noisy vs r18; multiclass: 2 probes x 2 backbones


def test_runs_without_paired_outputs_show_no_comparison(ml_art, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(ml_art, art)
    variant(art, "copy", scores=np.random.default_rng(2).random((200, 10), np.float32))
    run_artifacts(art, "r18", PROBE)["scores"].unlink()   # an older run: no scores file
    rows = board(art)
    assert rows["r18"]["is_best"] and rows["r18"]["value"] > rows["copy"]["value"]
    # No mAP per resample without the best's scores: "n/a", not a comparison of something else.
    assert rows["copy"]["vs_best"] is None and not rows["copy"]["tied_with_best"]
