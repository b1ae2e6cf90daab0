"""FinetuneConfig and params.yaml's finetune: section: defaults, and errors that name the key."""

from __future__ import annotations

import pytest

from linprobe.finetune.config import ARMS, FinetuneConfig
from linprobe.pipeline.params import ParamsError, parse_params

_BASE = {"data": {"path": "data/x"}, "backbones": {"lite0": {"spec": "lite:efficientnet-lite0"}},
         "probes": {"logreg": {}}}


def test_off_by_default_and_parsed_into_params():
    assert parse_params(_BASE).finetune == FinetuneConfig()
    assert FinetuneConfig().backbones == () and FinetuneConfig().arms == ARMS
    got = parse_params({**_BASE, "finetune": {
        "backbones": ["lite0"], "arms": ["scratch"], "lrs": [3e-4], "unfreeze": 2,
        "augment": {"scale": [0.5, 1], "hflip": False}, "class_weight": "balanced"}}).finetune
    assert got.backbones == ("lite0",) and got.arms == ("scratch",) and got.lrs == (3e-4,)
    assert got.unfreeze_blocks() == 2 and got.crop_scale == (0.5, 1.0) and not got.hflip
    assert got.random_resized_crop and got.class_weight == "balanced"
    assert FinetuneConfig().unfreeze_blocks() is None
    assert FinetuneConfig().threads == "auto"
    assert parse_params({**_BASE, "finetune": {"threads": "2"}}).finetune.threads == 2


@pytest.mark.parametrize("section, message", [
    ({"epochs": 0}, "finetune.epochs must be an int >= 1. Got 0"),
    ({"lrs": []}, "finetune.lrs must be a non-empty list"),
    ({"lrs": [0.1, -1]}, "finetune.lrs must be a list of distinct numbers > 0"),
    ({"arms": ["probe"]}, "finetune.arms must be a non-empty list of distinct names"),
    ({"unfreeze": "some"}, "finetune.unfreeze must be 'all' or an int >= 0"),
    ({"optimizer": "adam"}, "finetune.optimizer must be one of ['adamw', 'sgd']"),
    ({"warmup_epochs": 10}, "finetune.warmup_epochs must be a number in [0, epochs=10)"),
    ({"augment": {"scale": [0, 1]}}, "finetune.augment.scale must be [low, high]"),
    ({"augment": {"flip": True}}, "finetune.augment.flip is not a known setting"),
    ({"augment": {"hflip": "yes"}}, "finetune.augment.hflip must be true or false"),
    ({"crop_scale": [0.5, 1]}, "finetune.crop_scale is not a known setting"),
    ({"class_weight": "auto"}, "finetune.class_weight must be null or 'balanced'"),
    ({"batch_size": True}, "finetune.batch_size must be an int >= 1"),
    ({"threads": 0}, "finetune.threads must be 'auto' or an int >= 1"),
    ({"threads": "many"}, "finetune.threads must be 'auto' or an int >= 1"),
    ({"backbones": ["lite2"]}, "finetune.backbones names 'lite2', which is not in backbones:"),
])
def test_bad_settings_name_the_key(section, message):
    with pytest.raises(ParamsError, match="params.yaml: " + message.replace("[", r"\[")
                       .replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
                       .replace("=", "=")):
        parse_params({**_BASE, "finetune": section})


def test_library_errors_are_sklearn_style():
    with pytest.raises(ValueError, match=r"The 'epochs' parameter must be an int >= 1\. Got -1"):
        FinetuneConfig(epochs=-1)
    assert FinetuneConfig(lrs=[1, 2]).lrs == (1.0, 2.0)   # lists become tuples (hashable)
    assert FinetuneConfig().to_dict()["lrs"] == [1e-4, 1e-3]
