"""params.yaml validation: the shipped file parses, and each mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from linprobe.pipeline.params import ParamsError, load_params, parse_params
from tests.shipped import SHIPPED_PARAMS

REPO = Path(__file__).resolve().parents[2]


def base() -> dict:
    return {
        "data": {"path": "data/x"},
        "backbones": {"lite0": {"spec": "lite:efficientnet-lite0"}},
        "probes": {"logreg": {}},
    }


def test_shipped_params_are_valid():
    params = load_params(SHIPPED_PARAMS)
    assert {k: b.spec for k, b in params.backbones.items()} == {
        "lite0": "lite:efficientnet-lite0",
        "lite2": "lite:efficientnet-lite2",
        "resnet18_random": "torchvision:resnet18:none",
    }
    assert all(b.layer is None for b in params.backbones.values())
    # The demo's first report is the matrix the tool exists for: backbones x these probes.
    assert {n: e.probe for n, e in params.probes.items()} == {
        "logreg": "logreg", "linear_svm": "linear_svm", "knn": "knn"}
    assert (REPO / params.data.path).is_dir()


def test_backbone_layer_is_optional():
    raw = base()
    raw["backbones"]["r50_l3"] = {"spec": "torchvision:resnet50:none", "layer": "layer3"}
    p = parse_params(raw)
    assert p.backbones["r50_l3"].layer == "layer3" and p.backbones["lite0"].layer is None


def test_defaults_fill_in():
    p = parse_params(base())
    assert p.extract.image_size is None and p.extract.batch_size == 64
    assert p.extract.device == "auto" and p.extract.on_error == "fail"
    assert p.extract.resize == "crop"  # the weights' own evaluation protocol
    assert p.data.val_fraction == 0.1 and p.seed == 0


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d["extract"].update(batch_size="big"), "extract.batch_size must be an integer"),
    (lambda d: d["extract"].update(batch_size=0), "extract.batch_size must be in [1"),
    (lambda d: d["extract"].update(batch_size=True), "extract.batch_size must be an integer"),
    (lambda d: d["extract"].update(device="tpu"), "extract.device must be one of"),
    (lambda d: d["extract"].update(on_error="ignore"), "extract.on_error must be one of"),
    (lambda d: d["extract"].update(resize="fit"), "extract.resize must be one of ['crop', 'pad'"),
    (lambda d: d["extract"].update(imagesize=3), "extract.imagesize is not a known setting"),
    (lambda d: d.update(backbones={}), "backbones is empty"),
    (lambda d: d.update(backbones={"a/b": {"spec": "x"}}), "backbones.a/b is not a valid"),
    (lambda d: d["backbones"].update(r18={"specs": "x"}), "backbones.r18.specs is not a known"),
    (lambda d: d["backbones"].update(r18={}), "backbones.r18.spec is required"),
    (lambda d: d.update(probes=[]), "probes must be a mapping"),
    (lambda d: d["data"].pop("path"), "data.path is required"),
    (lambda d: d["data"].update(val_fraction=0.5, test_fraction=0.5), "must be < 1"),
])
def test_bad_values_name_the_key(mutate, fragment):
    raw = base()
    raw["extract"] = {}
    mutate(raw)
    with pytest.raises(ParamsError, match="params.yaml: ") as info:
        parse_params(raw)
    assert fragment in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text(yaml.safe_dump(base()))
    assert load_params(bad).source == bad
