"""The report's "probe vs fine-tune" section, from real fine-tune runs (2 epochs at 32 px) next to
real probe runs on the same demo images: the arms beside the best probe with CIs and paired
differences, training curves and costs; the leaderboard, per-run details and `--params`
selection cover the arms; real headless Chromium shows it without errors."""

from __future__ import annotations

import html as htmllib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from selenium.webdriver.common.by import By

from linprobe.features.config import ExtractConfig
from linprobe.finetune.config import FinetuneConfig
from linprobe.models.compare import compare_runs
from linprobe.reports.build import build_report
from tests.reports.browser import chromium, open_page
from tests.reports.realruns import DEMO_CLASSES, build_artifacts

CLASSES = list(DEMO_CLASSES[:4])
# One thread: tiny runs on a busy 2-core machine, where threads only contend.
TINY = FinetuneConfig(backbones=("lite0",), epochs=2, lrs=(1e-3, 3e-3), batch_size=16, threads=1)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Probe logreg on mnv3 and lite0, and lite0's finetune and scratch arms (two lrs each)."""
    from linprobe.finetune.run import finetune_arm

    root = tmp_path_factory.mktemp("ft")
    art = build_artifacts(root, CLASSES, probes=("logreg",))
    for arm in ("finetune", "scratch"):
        finetune_arm(root / "data" / "manifest.csv", "lite:efficientnet-lite0", arm, art, TINY,
                     backbone="lite0", extract=ExtractConfig(image_size=32, device="cpu"),
                     progress=False)
    return art


@pytest.fixture(scope="module")
def report(artifacts) -> tuple[Path, str]:
    out = build_report(artifacts, artifacts.parent / "report" / "index.html")
    return out, out.read_text(encoding="utf-8")


def _section(html: str) -> str:
    return html.split('id="probe-vs-finetune"')[1].split("</section>")[0]


def test_section_sets_arms_beside_the_best_probe_with_paired_differences(artifacts, report):
    section = _section(report[1])
    assert section.count('class="card ft-backbone"') == 1 and 'id="ft-lite0"' in section
    rows = re.findall(r'<a href="#run-lite0-(\w+)">', section)
    assert rows == ["logreg", "finetune", "scratch"]  # best probe first, then the arms
    assert "best linear probe" in section
    diffs = {f"{a} − {b}" for a, b in (("finetune", "probe logreg"),
                                       ("scratch", "probe logreg"), ("finetune", "scratch"))}
    shown = dict(re.findall(r'<td class="l">([^<]+)</td>\s*<td>([+-]\d\.\d{3})</td>', section))
    assert set(shown) == diffs
    # The numbers are models.compare's paired bootstrap (the one comparison).
    for a, b in (("finetune", "logreg"), ("finetune", "scratch")):
        cmp = compare_runs(artifacts, f"lite0/{a}", f"lite0/{b}")
        label = f"{a} − {'probe ' if b == 'logreg' else ''}{b}"
        assert shown[label] == format(cmp["diff"], "+.3f")
    # Costs: each arm's training time and img/s next to the extraction's.
    assert re.search(r"extracting the embeddings took \d+\.\d s \(\d+\.\d img/s", section)
    arm_rows = section.split('href="#run-lite0-finetune"')[1].split("</tr>")[0]
    assert re.search(r"<td>\d+\.\d</td><td>\d+\.\d</td><td>4</td>", arm_rows)  # 2 lrs x 2
    # Curves: one embedded figure.
    assert len(re.findall(r'<img alt="training curves of lite0', section)) == 1


def test_leaderboard_and_per_run_details_cover_the_arms(report):
    html = report[1]
    board = html.split('id="leaderboard-table"')[1].split("</table>")[0]
    runs = set(re.findall(r'<a href="#run-(\w+-\w+)">', board))
    assert runs == {"mnv3-logreg", "lite0-logreg", "lite0-finetune", "lite0-scratch"}
    for arm in ("finetune", "scratch"):
        detail = html.split(f'id="run-lite0-{arm}"')[1].split("</details>")[0]
        assert '<table class="cm">' in detail  # confusion matrix
        assert "Misclassified test images" in detail and "not available" not in detail
    overview = html.split('id="overview"')[1].split("</table>")[0]
    assert all(f"<th>{p}</th>" in overview for p in ("finetune", "logreg", "scratch"))
    # The metadata's threads table: each arm's training batches and their rate.
    meta = html.split('<section id="metadata">')[1]
    for arm in ("finetune", "scratch"):
        assert re.search(rf'<td class="l">lite0</td><td class="l">{arm}</td>'
                         r'<td class="l">1 of \d+ cores: 1 thread x \d+; [\d.]+ img/s</td>', meta)


def test_no_section_without_arms(artifacts, tmp_path):
    only = {("mnv3", "logreg"), ("lite0", "logreg")}
    html = build_report(artifacts, tmp_path / "r.html", only=only).read_text(encoding="utf-8")
    assert 'id="probe-vs-finetune"' not in html and "Probe vs fine-tune" not in html


def test_report_params_select_the_arms_of_the_finetune_section(artifacts, tmp_path):
    params = {"data": {"path": "unused"}, "backbones": {
        "mnv3": {"spec": "torchvision:mobilenet_v3_small:none"},
        "lite0": {"spec": "lite:efficientnet-lite0"}},
        "probes": {"logreg": {}}, "finetune": {"backbones": ["lite0"], "arms": ["scratch"]}}

    def report(name: str) -> tuple[subprocess.CompletedProcess, str]:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        out = tmp_path / name
        r = subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", "report",
                            "--artifacts", str(artifacts), "--out", str(out), "--params",
                            str(tmp_path / "params.yaml")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r, out.read_text(encoding="utf-8")

    r, html = report("scratch.html")
    assert "1 stale run(s)" in r.stderr and "lite0/finetune" in r.stderr
    assert re.findall(r'<a href="#run-lite0-(\w+)">', _section(html)) == ["logreg", "scratch"]
    params["finetune"]["backbones"] = []  # off: the arms' runs are stale
    r, html = report("off.html")
    assert "2 stale run(s)" in r.stderr and 'id="probe-vs-finetune"' not in html


def test_section_in_headless_chromium(report):
    path, _ = report
    with chromium() as driver:
        load = open_page(driver, path)
        assert load.errors() == [], load.errors()
        assert load.external_requests() == []
        driver.find_element(By.CSS_SELECTOR, 'nav a[href="#probe-vs-finetune"]').click()
        section = driver.find_element(By.ID, "probe-vs-finetune")
        assert section.is_displayed()
        text = htmllib.unescape(section.text)
        assert "finetune − scratch" in text and "best linear probe" in text
        curves = section.find_element(By.CSS_SELECTOR, "img")
        assert driver.execute_script("return arguments[0].naturalWidth", curves) > 400
