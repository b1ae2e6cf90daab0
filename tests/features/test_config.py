"""features.config: the library's extraction and split settings (defaults, choices, validation),
and the one place params.yaml and `linprobe extract` take theirs from."""

from __future__ import annotations

import subprocess
import sys

import pytest

from linprobe.features import croploss
from linprobe.features.config import (
    DEVICES,
    ON_ERROR,
    PRECISIONS,
    RESIZE_MODES,
    ExtractConfig,
    SplitConfig,
    check_init_seed,
    is_random_init,
    with_options,
)


def test_defaults_are_the_documented_ones():
    assert ExtractConfig() == ExtractConfig(
        image_size=None, resize="crop", batch_size=64, device="auto", precision="auto",
        on_error="fail", num_workers=None, layer=None, init_seed=None)
    assert SplitConfig() == SplitConfig(val_fraction=0.1, test_fraction=0.2, split_seed=0)


def test_choice_lists():
    assert DEVICES == ("auto", "cpu", "cuda")
    assert PRECISIONS == ("auto", "float32", "bfloat16", "float16")
    assert ON_ERROR == ("fail", "skip")
    assert RESIZE_MODES is croploss.RESIZE_MODES  # re-exported, not copied


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": 0}, r"The 'batch_size' parameter must be an int >= 1\. Got 0 instead\."),
    ({"batch_size": True}, r"'batch_size' parameter must be an int >= 1\. Got True"),
    ({"image_size": 4}, r"'image_size' parameter must be None or an int >= 8\. Got 4"),
    ({"resize": "fit"}, r"'resize' parameter must be one of \['crop', 'pad', 'stretch'\]"),
    ({"device": "tpu"}, r"'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"precision": "fp8"}, r"'precision' parameter must be one of \['auto', 'float32'"),
    ({"on_error": "ignore"}, r"'on_error' parameter must be one of \['fail', 'skip'\]"),
    ({"num_workers": -1}, r"'num_workers' parameter must be None or an int >= 0"),
    ({"layer": ""}, r"'layer' parameter must be None or a module name"),
    ({"init_seed": -1}, r"'init_seed' parameter must be None or an int >= 0\. Got -1"),
])
def test_extract_config_refuses_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        ExtractConfig(**kw)


@pytest.mark.parametrize("kw, match", [
    ({"val_fraction": 1.0}, r"'val_fraction' parameter must be a float in the range \[0, 1\)"),
    ({"test_fraction": -0.1}, r"'test_fraction' parameter must be a float in the range"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, r"val_fraction \+ test_fraction must be < 1"),
    ({"split_seed": -3}, r"'split_seed' parameter must be an int >= 0\. Got -3"),
    ({"split_seed": 1.5}, r"'split_seed' parameter must be an int >= 0\. Got 1\.5"),
])
def test_split_config_refuses_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        SplitConfig(**kw)


def test_device_index_and_precision_aliases_are_accepted():
    assert ExtractConfig(device="cuda:1").device == "cuda:1"
    assert ExtractConfig(precision="bf16") == ExtractConfig(precision="bfloat16")


@pytest.mark.parametrize("spec, random", [
    ("torchvision:resnet18:none", True),
    ("torchvision:resnet18:NONE", True),
    ("timm:resnet18:none", True),
    ("torchvision:resnet18", False),
    ("torchvision:resnet18:IMAGENET1K_V1", False),
    ("lite:efficientnet-lite0", False),
    ("file:models/none", False),
    ("file:models/x:none", False),  # a path, not a weights part
])
def test_is_random_init(spec, random):
    assert is_random_init(spec) is random


def test_init_seed_is_refused_for_pretrained_specs_only():
    check_init_seed("torchvision:resnet18:none", 3)
    check_init_seed("lite:efficientnet-lite0", None)
    with pytest.raises(ValueError, match=r"'init_seed' parameter seeds random-init weights only, "
                                         r"and backbone 'lite:efficientnet-lite0' is pretrained"):
        check_init_seed("lite:efficientnet-lite0", 0)


def test_with_options_routes_fields_and_names_the_renamed_seed():
    ex, sp = with_options(ExtractConfig(), SplitConfig(), {"batch_size": 8, "split_seed": 2})
    assert ex == ExtractConfig(batch_size=8) and sp == SplitConfig(split_seed=2)
    with pytest.raises(TypeError, match=r"'seed' was split in two: 'split_seed' .* 'init_seed'"):
        with_options(ExtractConfig(), SplitConfig(), {"seed": 1})
    with pytest.raises(TypeError, match=r"unexpected option 'batchsize'; options: batch_size"):
        with_options(ExtractConfig(), SplitConfig(), {"batchsize": 1})


def test_config_and_cli_help_import_no_torch():
    code = ("import sys; import linprobe.features.config, linprobe.pipeline.cli as c; "
            "c.build_parser().format_help(); assert 'torch' not in sys.modules, 'torch loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)
