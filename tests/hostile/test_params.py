"""Hostile params.yaml: shell syntax in what dvc.yaml puts on a command line, options that do not
apply to a probe, missing weights, bad data paths. `linprobe check` must refuse each with one
line naming the key and the fix, before any work, and never run a payload."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.features.imagedata import CLASSES, write_folder
from tests.hostile.harness import expect_error, expect_ok

MARKER = "PWNED"


def write_params(tmp_path: Path, data: Path | str, *, backbones: dict | None = None,
                 probes: dict | None = None) -> Path:
    params = {"data": {"path": str(data)},
              "extract": {"image_size": 32, "batch_size": 8},
              "backbones": backbones or {"r18": {"spec": "torchvision:resnet18:none"}},
              "probes": probes if probes is not None else {"logreg": {}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


def check(tmp_path: Path, params: Path, match, **kwargs):
    """`linprobe check` fails cleanly, changes nothing, and no payload ran."""
    r = expect_error(["check", "--params", params, "--stamp", tmp_path / "check.ok"], match,
                     watch=[params.parent], cwd=tmp_path, **kwargs)
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "check.ok").exists()
    return r


SHELL_SPECS = {
    "semicolon": f"torchvision:resnet18:none; touch {MARKER}",
    "subshell": f"torchvision:$(touch {MARKER})",
    "backticks": f"torchvision:`touch {MARKER}`",
    "pipe": f"torchvision:resnet18|touch {MARKER}",
    "ampersand": f"torchvision:resnet18&touch {MARKER}",
    "quote": "torchvision:resnet18'",
    "newline": f"torchvision:resnet18\ntouch {MARKER}",
    "space": "torchvision:resnet18 --device cuda",
    "dash": "-torchvision:resnet18",
}


@pytest.mark.parametrize("spec", SHELL_SPECS.values(), ids=SHELL_SPECS.keys())
def test_spec_with_shell_syntax_is_refused(spec, folder, tmp_path):
    params = write_params(tmp_path, folder, backbones={"r18": {"spec": spec}})
    check(tmp_path, params, [r"backbones\.r18\.spec", "not a safe backbone spec",
                             r"letters, digits and _ \. : / \+ -"])


@pytest.mark.parametrize("name", [f"r18;touch {MARKER}", "$(id)", "a b", "a|b", "`x`"])
def test_backbone_name_with_shell_syntax_is_refused(name, folder, tmp_path):
    params = write_params(tmp_path, folder, backbones={name: {"spec": "torchvision:resnet18:none"}})
    check(tmp_path, params, ["not a valid backbone name", r"letters, digits, '_' and '\.'"])


@pytest.mark.parametrize("name", [f"logreg;touch {MARKER}", "log reg", "logreg&"])
def test_probe_name_with_shell_syntax_is_refused(name, folder, tmp_path):
    params = write_params(tmp_path, folder, probes={name: {}})
    check(tmp_path, params, ["not a valid probe name", r"letters, digits"])


@pytest.mark.parametrize("path", ["data'; touch PWNED; echo '", "data\nx", "-data"])
def test_data_path_that_would_escape_the_quotes_is_refused(path, tmp_path):
    params = write_params(tmp_path, path)
    check(tmp_path, params, [r"data\.path", "single quote or line break"])


@pytest.mark.parametrize("probe, options, match", [
    ("linear_svm", {"temperature": 0.1}, r"'temperature' probe option does not apply to probe "
                                         r"'linear_svm'.*Options of 'linear_svm'"),
    ("knn", {"solver": "torch"}, r"'solver' probe option does not apply to probe 'knn'"),
    ("knn", {"search": "refine"}, r"'search' probe option does not apply to probe 'knn'"),
    ("logreg", {"solver": "sklearn", "device": "cpu"},
     r"'device' probe option applies only with solver: torch"),
    ("logreg", {"C": 1.0}, r"unknown probe option\(s\) \['C'\]"),
    ("logreg", {"max_iter": "lots"}, r"'max_iter' probe option must be an int"),
    ("logreg", {"class_weight": {"zebra": 2}}, r"class_weight.*keyed by class names"),
    ("ridge", {}, r"probes\.ridge: unknown probe 'ridge'"),
])
def test_probe_options_that_do_not_apply_are_refused(probe, options, match, folder, tmp_path):
    params = write_params(tmp_path, folder, probes={probe: options})
    check(tmp_path, params, [rf"probes\.{probe}", match])


def test_missing_torchvision_weights_name_the_path(folder, tmp_path):
    hub = tmp_path / "torch-home"
    params = write_params(tmp_path, folder,
                          backbones={"r18": {"spec": "torchvision:resnet18:IMAGENET1K_V1"}})
    expected = hub / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    check(tmp_path, params, [r"backbones\.r18\.spec", "not on disk",
                             f"put it at {expected}"], env={"TORCH_HOME": str(hub)})


@pytest.mark.parametrize("spec, match", [
    ("torchvision:resnet19", r"Unknown torchvision model 'resnet19'.*resnet18"),
    ("lite:efficientnet-lite9", r"Unknown EfficientNet-Lite model"),
    ("lite:efficientnet-lite0:IMAGENET", r"take no weights part"),
    ("file:models/missing.pt", r"Backbone file not found: 'models/missing.pt'"),
    ("keras:resnet50", r"Unknown backbone family 'keras'"),
])
def test_bad_backbone_specs_are_refused_offline(spec, match, folder, tmp_path):
    params = write_params(tmp_path, folder, backbones={"b": {"spec": spec}})
    check(tmp_path, params, [r"backbones\.b\.spec", match])


def test_one_class_data_is_refused(tmp_path):
    params = write_params(tmp_path, write_folder(tmp_path / "one", per_class=6, classes=1))
    check(tmp_path, params, [r"data\.path", r"only 1 class \('tshirt'\)", "at least 2"])


def test_missing_data_path_is_refused(tmp_path):
    params = write_params(tmp_path, tmp_path / "nope")
    check(tmp_path, params, [r"data\.path", "does not exist"])


def test_all_problems_are_listed_in_one_run(folder, tmp_path):
    # Problems found against the data and the weights (option names and types are checked
    # when params.yaml loads; see the next test).
    params = write_params(tmp_path, folder,
                          backbones={"a": {"spec": "torchvision:resnet19"},
                                     "b": {"spec": "lite:efficientnet-lite9"}},
                          probes={"knn": {"selection_metric": "mAP"},
                                  "lr": {"probe": "logreg", "class_weight": {"zebra": 2}}})
    r = check(tmp_path, params, ["4 problem", r"backbones\.a", r"backbones\.b",
                                 r"probes\.knn: The 'selection_metric' probe option must be one "
                                 r"of \['accuracy'", r"probes\.lr: .*keyed by class names"])
    assert r.err.count("\n  - ") == 4


def test_every_bad_probe_entry_is_listed_when_params_load(folder, tmp_path):
    params = write_params(tmp_path, folder,
                          probes={"knn": {"tol": 1e-3}, "linear_svm": {"temperature": 0.1},
                                  "lr": {"probe": "logreg", "n_boot": 0}})
    r = check(tmp_path, params, ["3 probe entries to fix", r"probes\.knn: The 'tol'",
                                 r"probes\.linear_svm: The 'temperature'",
                                 r"probes\.lr: The 'n_boot' probe option must be an int >= 1"])
    assert r.err.count("\n  - ") == 3


def test_good_params_pass_write_the_stamp_and_print_counts(folder, tmp_path):
    params = write_params(tmp_path, folder, probes={"logreg": {}, "knn": {"temperature": 0.1}})
    stamp = tmp_path / "check.ok"
    r = expect_ok(["check", "--params", params, "--stamp", stamp], watch=[folder, params])
    assert "3 classes" in r.out and "train 18, val 6, test 6" in r.out and "OK" in r.out
    assert stamp.read_text() == "linprobe check passed\n"


def test_classes_without_test_images_are_a_warning(folder, tmp_path):
    for png in (folder / "test" / CLASSES[1]).iterdir():
        png.unlink()
    (folder / "test" / CLASSES[1]).rmdir()
    params = write_params(tmp_path, folder)
    r = expect_ok(["check", "--params", params])
    assert "linprobe: warning:" in r.err and f"class '{CLASSES[1]}' has no test images" in r.err
