"""params.yaml and `linprobe extract` take their defaults and choices from the library
(features.config), and the renamed seeds: data.split_seed and backbones.<name>.init_seed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from linprobe.features.config import (
    DEVICES, ENGINES, ON_ERROR, PRECISIONS, RESIZE_MODES, ExtractConfig, SplitConfig,
)
from linprobe.pipeline.cli import build_parser, extract_configs
from linprobe.pipeline.params import ParamsError, extract_config, parse_params
from tests.shipped import SHIPPED_PARAMS

REPO = Path(__file__).resolve().parents[2]
MINIMAL = ["extract", "--backbone", "torchvision:resnet18:none", "--data", "d", "--out", "o.h5"]


def base() -> dict:
    return {
        "data": {"path": "data/x"},
        "backbones": {"r18": {"spec": "torchvision:resnet18:none"}},
        "probes": {"logreg": {}},
    }


def test_empty_params_sections_are_the_library_defaults():
    p = parse_params(base())
    assert extract_config(p.extract, p.backbones["r18"]) == ExtractConfig()
    assert p.data.split_config() == SplitConfig()


def test_empty_command_line_is_the_library_defaults():
    args = build_parser().parse_args(MINIMAL)
    assert extract_configs(args) == (ExtractConfig(), SplitConfig())


def test_cli_choices_are_the_library_choices():
    ex = build_parser()._subparsers._group_actions[0].choices["extract"]
    choices = {a.dest: tuple(a.choices) for a in ex._actions if a.choices}
    assert choices == {"resize": RESIZE_MODES, "device": DEVICES, "precision": PRECISIONS,
                       "on_error": ON_ERROR, "engine": ENGINES}


def test_params_choices_are_the_library_choices():
    for key, allowed in (("device", DEVICES), ("precision", PRECISIONS), ("on_error", ON_ERROR),
                         ("resize", RESIZE_MODES)):
        for value in allowed:
            raw = base()
            raw["extract"] = {key: value}
            assert getattr(parse_params(raw).extract, key) == value
        raw = base()
        raw["extract"] = {key: "nope"}
        with pytest.raises(ParamsError, match=re.escape(f"extract.{key} must be one of "
                                                        f"{list(allowed)}")):
            parse_params(raw)


def test_help_shows_the_library_defaults():
    text = build_parser()._subparsers._group_actions[0].choices["extract"].format_help()
    x, s = ExtractConfig(), SplitConfig()
    for default in (f"(default: {x.resize})", f"default: {x.batch_size}",
                    f"(default: {s.val_fraction})", f"(default: {s.split_seed})"):
        assert default in " ".join(text.split()), default


def test_split_seed_and_init_seed_are_read():
    raw = base()
    raw["data"]["split_seed"] = 7
    raw["backbones"]["r18"]["init_seed"] = 3
    p = parse_params(raw)
    assert p.data.split_seed == 7 and p.data.split_config().split_seed == 7
    assert extract_config(p.extract, p.backbones["r18"]).init_seed == 3


def test_old_data_seed_names_the_new_names():
    raw = base()
    raw["data"]["seed"] = 0
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert str(err.value) == ("params.yaml: data.seed was renamed to data.split_seed (it seeds the "
                              "train/val/test split; random-init backbones take "
                              "backbones.<name>.init_seed)")


@pytest.mark.parametrize("spec", ["lite:efficientnet-lite0", "torchvision:resnet18",
                                  "file:models/net.pt"])
def test_init_seed_on_a_pretrained_spec_is_refused(spec):
    raw = base()
    raw["backbones"]["r18"] = {"spec": spec, "init_seed": 0}
    with pytest.raises(ParamsError, match=r"backbones\.r18\.init_seed does nothing for the "
                                          rf"pretrained spec '{spec}'.*remove it"):
        parse_params(raw)


@pytest.mark.parametrize("key, value, match", [
    ("split_seed", -1, r"data\.split_seed must be >= 0, got -1"),
    ("split_seed", "x", r"data\.split_seed must be an integer"),
])
def test_bad_split_seed(key, value, match):
    raw = base()
    raw["data"][key] = value
    with pytest.raises(ParamsError, match=match):
        parse_params(raw)


def test_cli_reads_init_seed_from_the_params_entry(tmp_path):
    raw = base()
    raw["backbones"]["r18"].update(init_seed=5, layer="layer3")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    args = build_parser().parse_args(
        MINIMAL + ["--split-seed", "2", "--params", str(tmp_path / "params.yaml"), "--name", "r18"])
    config, split = extract_configs(args)
    assert (config.init_seed, config.layer, split.split_seed) == (5, "layer3", 2)
    # The command line wins over the entry.
    args = build_parser().parse_args(MINIMAL + ["--init-seed", "9", "--params",
                                                str(tmp_path / "params.yaml"), "--name", "r18"])
    assert extract_configs(args)[0].init_seed == 9


def _linprobe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_old_seed_flag_names_the_new_flags(tmp_path):
    r = _linprobe(*MINIMAL, "--seed", "0", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("linprobe: error: --seed was renamed to --split-seed (it seeds the "
                                "train/val/test split; random-init backbones take --init-seed)")


def test_init_seed_flag_on_a_pretrained_backbone_is_refused(tmp_path):
    r = _linprobe("extract", "--backbone", "lite:efficientnet-lite0", "--data", str(REPO / "data"
                  / "fashion-mnist-demo"), "--out", str(tmp_path / "o.h5"), "--init-seed", "1",
                  cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("linprobe: error: The 'init_seed' parameter seeds random-init "
                               "weights only, and backbone 'lite:efficientnet-lite0' is pretrained")
    assert not (tmp_path / "o.h5").exists()


def test_shipped_files_use_the_new_names():
    params = yaml.safe_load(SHIPPED_PARAMS.read_text())
    assert "split_seed" in params["data"] and "seed" not in params["data"]
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["extract"]["do"]["cmd"]
    assert "--split-seed ${data.split_seed}" in cmd and "--seed" not in cmd.replace("-seed ", "")
