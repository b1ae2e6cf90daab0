"""extract.engine / extract.ray_address in params.yaml: validated, and what `linprobe extract
--params` runs when no --engine flag is given (how `dvc repro` picks the Ray engine while the
stage's command and its one out, the merged .h5, stay as they are)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from linprobe.pipeline.cli import _engine
from linprobe.pipeline.params import ParamsError, load_params
from tests.shipped import SHIPPED_PARAMS

REPO = Path(__file__).resolve().parents[2]


def _params(tmp_path: Path, **extract) -> Path:
    raw = yaml.safe_load(SHIPPED_PARAMS.read_text())
    raw["extract"].update(extract)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _args(params: Path | None, engine=None, address=None) -> argparse.Namespace:
    return argparse.Namespace(params=params, engine=engine, ray_address=address)


def test_engine_defaults_to_local_and_is_read_from_params(tmp_path):
    assert load_params(SHIPPED_PARAMS).extract.engine == "local"
    assert _engine(_args(None)) == ("local", None)
    ray = _params(tmp_path, engine="ray", ray_address="auto")
    assert _engine(_args(ray)) == ("ray", "auto")
    assert _engine(_args(ray, engine="ray", address="10.0.0.1:6379")) == ("ray", "10.0.0.1:6379")


def test_flags_win_over_params(tmp_path):
    ray = _params(tmp_path, engine="ray", ray_address="auto")
    assert _engine(_args(ray, engine="local")) == ("local", None)


@pytest.mark.parametrize("extract, match", [
    ({"engine": "spark"}, r"extract\.engine must be one of \['local', 'ray'\], got 'spark'"),
    ({"ray_address": 6379}, r"extract\.ray_address must be a string"),
])
def test_bad_engine_settings_name_the_key(tmp_path, extract, match):
    with pytest.raises(ParamsError, match=match):
        load_params(_params(tmp_path, **extract))


def test_shards_flag_needs_the_ray_engine(capsys):
    from linprobe.pipeline.cli import main

    assert main(["extract", "--backbone", "x", "--data", "d", "--out", "e.h5",
                 "--shards", "4"]) == 2
    assert "--shards 4 is for --engine ray" in capsys.readouterr().err
