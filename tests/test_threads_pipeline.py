"""Explicit thread control end to end: params.yaml / --threads, recorded in the HDF5 attrs, the
metrics JSON and the report's metadata (real small extraction, training and report)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from linprobe.cpus import available_cores
from linprobe.features.extract import extract_embeddings
from linprobe.features.store import read_embeddings
from linprobe.pipeline.cli import build_parser, extract_configs
from linprobe.pipeline.params import ParamsError, extract_config, parse_params
from linprobe.reports.build import build_report
from tests.features.imagedata import write_folder

R18 = "torchvision:resnet18:none"
SPLITS = {"train": 8, "val": 2, "test": 3}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", *args],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """artifacts/ with one backbone extracted on 1 thread, one on 'auto', a logreg on each."""
    root = tmp_path_factory.mktemp("threads")
    data = write_folder(root / "data", per_class=0, classes=3, splits=SPLITS)
    art = root / "artifacts"
    for name, threads in (("one", 1), ("auto", "auto")):
        extract_embeddings(R18, data, art / "embeddings" / f"{name}.h5", image_size=32,
                           batch_size=8, threads=threads, progress=False)
    return art


def test_extraction_records_its_threads_and_rate(runs):
    one = read_embeddings(runs / "embeddings" / "one.h5").attrs["threads"]
    auto = read_embeddings(runs / "embeddings" / "auto.h5").attrs["threads"]
    n_batches = -(-3 * sum(SPLITS.values()) // 8)
    assert one["setting"] == 1 and one["used"] == {"1": n_batches} and one["unit"] == "img/s"
    assert auto["setting"] == "auto" and auto["available"] == available_cores()
    assert sum(auto["used"].values()) == n_batches
    assert all(1 <= int(k) <= available_cores() for k in auto["used"])
    assert one["rate"] > 0 and auto["rate"] > 0


def test_train_threads_option_and_flag_are_recorded_and_reported(runs, tmp_path):
    params = {"data": {"path": "unused"}, "backbones": {"one": {"spec": R18}},
              "probes": {"logreg": {"threads": 1, "few_shot": False, "n_boot": 20,
                                    "grid": [0.1, 1.0]}}}
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    r = cli("train", "--embeddings", str(runs / "embeddings" / "one.h5"), "--probe", "logreg",
            "--out-dir", str(runs), "--params", str(pfile))
    assert r.returncode == 0, r.stderr
    m = json.loads((runs / "metrics" / "one" / "logreg.json").read_text())
    assert m["threads"]["setting"] == 1 and m["threads"]["used"] == {"1": 3}  # 2 C + refit
    assert m["threads"]["unit"] == "it/s" and m["options"]["threads"] == 1
    assert "logreg fits" in r.stderr and "it/s" in r.stderr          # the per-fit progress bar

    r = cli("train", "--embeddings", str(runs / "embeddings" / "auto.h5"), "--probe", "logreg",
            "--out-dir", str(runs), "--params", str(pfile), "--threads", "auto")
    assert r.returncode == 0, r.stderr
    m = json.loads((runs / "metrics" / "auto" / "logreg.json").read_text())
    assert m["threads"]["setting"] == "auto" and sum(m["threads"]["used"].values()) == 3

    html = build_report(runs, tmp_path / "report" / "index.html").read_text()
    meta = html[html.index('<section id="metadata">'):]
    assert "Probe fitting threads" in meta
    assert re.search(r"auto of \d+ cores: \d threads? x \d; [\d.]+ img/s", meta)   # extraction
    assert re.search(r"1 of \d+ cores: 1 thread x 3; [\d.]+ it/s", meta)         # fits


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_threads_flags_end_in_one_clear_line(tmp_path, value):
    for args in (["extract", "--backbone", R18, "--data", str(tmp_path / "d"), "--out",
                  str(tmp_path / "o.h5")],
                 ["train", "--embeddings", str(tmp_path / "x.h5"), "--probe", "logreg",
                  "--out-dir", str(tmp_path)],
                 ["finetune", "--backbone", "b", "--arm", "scratch", "--out-dir", str(tmp_path)]):
        r = cli(*args, "--threads", value)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.count("linprobe: error: ") == 1
        assert (f"argument --threads: must be 'auto' or an integer >= 1 (threads per process), "
                f"got {value!r}") in r.stderr


def test_params_extract_threads(tmp_path):
    raw = {"data": {"path": "d"}, "backbones": {"r18": {"spec": R18}}, "probes": {"logreg": {}},
           "extract": {"threads": 1}}
    p = parse_params(raw)
    assert extract_config(p.extract, p.backbones["r18"]).threads == 1
    for bad in ("many", 0, True):
        raw["extract"]["threads"] = bad
        with pytest.raises(ParamsError, match=r"extract\.threads must be"):
            parse_params(raw)
    # `linprobe extract --params` reads extract.threads; --threads replaces it.
    raw["extract"]["threads"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    base = ["extract", "--backbone", R18, "--data", "d", "--out", "o.h5",
            "--params", str(tmp_path / "params.yaml"), "--name", "r18"]
    assert extract_configs(build_parser().parse_args(base))[0].threads == 1
    args = build_parser().parse_args(base + ["--threads", "auto"])
    assert extract_configs(args)[0].threads == "auto"
