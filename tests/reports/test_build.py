"""build_report on real artifacts: content, escaping, self-containment, tolerance, errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from linprobe.reports.build import build_report, write_learning_curves
from linprobe.schema import ArtifactPaths
from tests.reports.conftest import CLASSES, EVIL
from tests.reports.realruns import build_artifacts


def test_reports_never_import_torch():
    code = "import linprobe.reports.build, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_self_contained(report):
    _, html = report
    assert "<link" not in html
    srcs = re.findall(r'\ssrc="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", html.split("<main>")[1])
    assert "default-src 'none'" in html


def test_leaderboard_rows_and_best(report, multiclass_artifacts):
    _, html = report
    rows = re.findall(r'<tr class="lb-row( best)?">(.*?)</tr>', html, re.S)
    assert len(rows) == 4  # 2 backbones x 2 probes
    for probe in ("logreg", "knn"):
        accs = {p.parent.name: json.loads(p.read_text())["test"]["accuracy"]
                for p in ArtifactPaths(multiclass_artifacts).metrics_dir.glob(f"*/{probe}.json")}
        top = max(accs.values())
        marked = [r for flag, r in rows if flag and f"<td class=\"l\">{probe} " in r]
        assert len(marked) == 1
        assert any(f">{b}</a>" in marked[0] for b, a in accs.items() if a == top)
        assert f"{top:.3f}" in marked[0]
    # Every row carries the CI that train wrote.
    assert html.count('title="metrics file"') == 4
    assert "C=" in html and "Δ vs best" in html
    # Each row names the solver that fitted it (as train recorded it).
    assert sum("torch L-BFGS" in r for _, r in rows) == 2     # logreg's default solver
    assert sum("exact cosine k-NN" in r for _, r in rows) == 2


def test_class_names_are_escaped(report):
    _, html = report
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only the report's own sort script
    assert "&lt;b&gt;broken&lt;i&gt;.png" in html  # skipped file names too
    assert "Coat &amp; co" in html


def test_sections_present(report):
    _, html = report
    for marker in ('id="class-counts"', 'id="mmd-table"', "few-shot learning curves, probe logreg",
                   "PCA of mnv3", "t-SNE of lite0", "Most confused pairs",
                   "Misclassified test images", "not an image format Pillow can identify",
                   "probes: [logreg, knn]"):
        assert marker in html, marker
    # Counts per split from the HDF5 file: 20/8/10 per class.
    assert re.search(r"<td class=\"l\">Trouser</td><td>20</td><td>8</td><td>10</td>", html)
    assert html.count('class="run"') == 4
    assert "image not available" not in html  # every thumbnail was found and embedded


def test_thumbnails_found_after_the_repo_moves(tmp_path):
    """Data and artifacts moved together: the absolute data_root is gone, the relative one
    (from the HDF5 file) finds the images."""
    art = build_artifacts(tmp_path / "orig", CLASSES, probes=("logreg",))
    moved = tmp_path / "moved"
    shutil.move(art.parent, moved)
    html = build_report(moved / "artifacts", tmp_path / "r.html", tsne_max=0).read_text()
    assert "Misclassified test images" in html and "image not available" not in html
    assert str(moved / "data") in html  # the dataset summary shows where the images are now


def test_optional_keys_missing_say_not_available(multiclass_artifacts, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(multiclass_artifacts, art)
    for p in (art / "metrics").glob("*/*.json"):
        m = json.loads(p.read_text())
        for key in ("few_shot", "per_class", "confusion_matrix", "selection", "val", "fit_seconds"):
            m.pop(key)
        if p.parent.name == "lite0":  # malformed optional values are treated as absent
            m.update(test_ci=[0.1], per_class=[1, 2], confusion_matrix=[[1, 2], [3]],
                     selection="C=1", few_shot={"k": [1, 2], "mean": [0.5]})
        p.write_text(json.dumps(m))
    shutil.rmtree(art / "predictions")
    (art / "embeddings" / "lite0.h5").unlink()
    html = build_report(art, tmp_path / "r.html", tsne_max=0).read_text()
    assert "Few-shot results not available" in html
    assert "lite0: embeddings not available" in html
    assert "not available (no predictions file)" in html
    assert html.count('class="lb-row') == 4


def test_missing_artifacts_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing-here.*dvc repro"):
        build_report(tmp_path / "nothing-here", tmp_path / "r.html")
    (tmp_path / "empty" / "metrics").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no metrics JSON found under .*empty.*dvc repro"):
        build_report(tmp_path / "empty", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_bad_json_names_file_and_keeps_old_report(multiclass_artifacts, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(multiclass_artifacts, art)
    out = tmp_path / "index.html"
    out.write_text("previous report")
    (art / "metrics" / "mnv3" / "logreg.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"mnv3/logreg\.json is not valid JSON"):
        build_report(art, out)
    assert out.read_text() == "previous report"
    assert list(tmp_path.glob("*.tmp")) == []


def test_bad_parameter_message(multiclass_artifacts, tmp_path):
    with pytest.raises(ValueError, match=r"The 'gallery_limit' parameter of build_report must be an int >= 0. Got -1 instead."):
        build_report(multiclass_artifacts, tmp_path / "r.html", gallery_limit=-1)


def test_multilabel_report(multilabel_artifacts, tmp_path):
    html = build_report(multilabel_artifacts, tmp_path / "r.html", tsne_max=0).read_text()
    assert 'alt="AP per class"' in html and 'alt="precision-recall curves"' in html
    assert html.count('class="lb-row') == 1 and "mAP" in html


def test_learning_curves_csv(multiclass_artifacts, tmp_path):
    (tmp_path / "lc").mkdir()
    (tmp_path / "lc" / "gone-run.csv").write_text("k,mean,std\n")  # a run since removed
    paths = write_learning_curves(multiclass_artifacts, tmp_path / "lc")
    assert len(paths) == 2 * 2  # backbones x probes
    assert sorted(p.name for p in (tmp_path / "lc").iterdir()) == sorted(p.name for p in paths)
    lines = ArtifactPaths.learning_curve(tmp_path / "lc", "mnv3", "knn").read_text().splitlines()
    assert lines[0] == "k,mean,std" and len(lines) == 1 + 3  # k values
    m = json.loads(ArtifactPaths(multiclass_artifacts).metrics("mnv3", "knn").read_text())
    assert lines[3].startswith(f"4,{m['few_shot']['mean'][2]},")


def test_overview_grid_marks_best_per_probe(report):
    _, html = report
    grid = html.split('<table id="overview">')[1].split("</table>")[0]
    assert grid.count("<tr><td") == 2  # one row per backbone
    assert grid.count('class="cell-best"') == 2  # one best per probe


def test_mismatched_datasets_warn_and_bad_predictions_name_the_file(multiclass_artifacts, tmp_path):
    import h5py

    art = tmp_path / "artifacts"
    shutil.copytree(multiclass_artifacts, art)
    with h5py.File(art / "embeddings" / "lite0.h5", "a") as f:
        f.attrs["dataset_fingerprint"] = "another-dataset"
    html = build_report(art, tmp_path / "r.html", tsne_max=0).read_text()
    assert "dataset fingerprints differ" in html
    (art / "predictions" / "mnv3" / "knn.csv").write_text("path,label\nx,y\n")
    with pytest.raises(ValueError, match=r"mnv3/knn\.csv must have the header id,actual,predicted,score"):
        build_report(art, tmp_path / "r.html")


def test_git_revision_in_metadata(multiclass_artifacts, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(multiclass_artifacts, repo / "artifacts")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["init", "-q"], check=True)
    (repo / "params.yaml").write_text("seed: 0\n")
    subprocess.run(git + ["add", "params.yaml"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    rev = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    html = build_report(repo / "artifacts", tmp_path / "r.html", tsne_max=0).read_text()
    assert f"git revision {rev}" in html and f"git revision {rev}-dirty" not in html
