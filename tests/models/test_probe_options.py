"""Probe options as frozen dataclasses: each probe accepts only its own options, checked when
the options are built (params load or the library call), before any file is read or written."""

from __future__ import annotations

import dataclasses
import json

import pytest

from linprobe.models.options import (C_GRID, K_GRID, FewShot, KnnOptions, LinearOptions,
                                     LogregOptions, OvrOptions, ProbeOptions, SvmOptions,
                                     resolve_options)
from linprobe.models.probes import PROBES, probe_options
from linprobe.models.train import train_probe

from .conftest import blobs, split_names, write_h5

FAST = {"n_boot": 50, "few_shot": False}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    X, y = blobs(12, 3, 6, sep=4.0)
    return write_h5(tmp_path_factory.mktemp("opts") / "b.h5", X, y, split_names(y), list("abc"))


@pytest.mark.parametrize("instance", [ProbeOptions(), LinearOptions(), LogregOptions(),
                                      SvmOptions(), OvrOptions(), KnnOptions(), FewShot()],
                         ids=lambda o: type(o).__name__)
def test_options_are_frozen(instance):
    field = dataclasses.fields(instance)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, field, getattr(instance, field))


def test_each_probe_declares_its_options_class_with_its_defaults():
    assert {n: s.options for n, s in PROBES.items()} == {
        "logreg": LogregOptions, "linear_svm": SvmOptions, "knn": KnnOptions,
        "ovr_logreg": OvrOptions, "ovr_linear_svm": OvrOptions}
    # The torch L-BFGS path is every linear probe's default; sklearn stays the reference.
    for cls in (LogregOptions, SvmOptions, OvrOptions):
        assert cls().solver == "torch" and cls().search == "auto"
        assert cls().resolved_search() == "path"
        assert cls(solver="sklearn").resolved_search() == "grid"
    assert LinearOptions().grid == C_GRID and LinearOptions().normalize == "standard"
    assert KnnOptions().grid == K_GRID and KnnOptions().normalize == "none"
    assert PROBES["knn"].param == "n_neighbors" and PROBES["logreg"].param == "C"
    assert LogregOptions().few_shot == FewShot(k=(1, 2, 4, 8, 16), seeds=3)
    assert LogregOptions(few_shot=False).few_shot is None
    # Given values are normalised: grids sorted and de-duplicated, few-shot k likewise.
    assert KnnOptions(grid=[10, 1.0, 10]).grid == (1, 10)
    assert LogregOptions(few_shot={"k": [4, 1, 4]}).few_shot == FewShot(k=(1, 4), seeds=3)


# Every option that exists but does not apply to a probe, with the reason given where the
# name alone does not say it.
NOT_APPLICABLE = [
    ("linear_svm", "temperature", 0.1, "only k-NN weights votes by a temperature"),
    ("ovr_logreg", "temperature", 0.1, "only k-NN weights votes by a temperature"),
    ("logreg", "temperature", 0.1, "only k-NN weights votes by a temperature"),
    ("knn", "search", "refine", "k-NN.s n_neighbors grid is searched as given, never refined"),
    ("knn", "refine_steps", 2, "k-NN.s n_neighbors grid is searched as given, never refined"),
    ("knn", "solver", "torch", "k-NN has no solver to choose"),
    ("knn", "device", "cpu", "k-NN has no solver to choose"),
    ("knn", "class_weight", "balanced", None),
    ("knn", "max_iter", 10, None),
    ("knn", "tol", 1e-3, None),
]


@pytest.mark.parametrize("probe, option, value, why", NOT_APPLICABLE)
def test_an_option_that_does_not_apply_is_refused(probe, option, value, why, small, tmp_path):
    msg = (rf"The '{option}' probe option does not apply to probe '{probe}'"
           + (rf" \({why}\)" if why else "") + rf"; remove it\. Options of '{probe}': \[")
    with pytest.raises(ValueError, match=msg):
        train_probe(small, probe, tmp_path / "o", options={**FAST, option: value})
    assert not (tmp_path / "o").exists()
    with pytest.raises(TypeError):    # the dataclass has no such field at all
        PROBES[probe].options(**{option: value})


@pytest.mark.parametrize("build, match", [
    (lambda: LogregOptions(solver="sklearn", device="cpu"),
     r"'device' probe option applies only with solver: torch"),
    (lambda: SvmOptions(solver="sklearn", device="cpu"), r"'device' probe option applies only with solver: torch"),
    (lambda: SvmOptions(solver="liblinear"), r"'solver' probe option must be one of \['sklearn', "
                                             r"'torch'\]"),
    (lambda: KnnOptions(grid=[2.5]), r"'grid' probe option must be a non-empty list of positive "
                                     r"n_neighbors values"),
    (lambda: LinearOptions(grid=[]), r"'grid' probe option must be a non-empty list of positive C"),
    (lambda: LinearOptions(search="bisect"), r"'search' probe option must be one of \['auto', "
                                             r"'grid', 'refine', 'path'\]"),
    (lambda: ProbeOptions(normalize="zscore"), r"'normalize' probe option must be one of"),
    (lambda: KnnOptions(holdout_fraction=1.0), r"'holdout_fraction' probe option must be a float "
                                               r"in \(0.0, 1.0\)"),
    (lambda: LogregOptions(max_iter=True), r"'max_iter' probe option must be an int >= 1"),
    (lambda: KnnOptions(temperature=0), r"'temperature' probe option must be a float > 0"),
    (lambda: LinearOptions(class_weight={"a": -1}), r"'class_weight' probe option must be a dict "
                                                    r"of class name: positive weight"),
    (lambda: LogregOptions(few_shot={"k": []}),
     r"'few_shot' probe option must be a dict whose 'k'"),
    (lambda: LogregOptions(selection_metric="f2"), r"'selection_metric' probe option must be one"),
])
def test_values_are_checked_where_the_dataclass_is_built(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_old_val_fraction_name_says_it_was_renamed(small, tmp_path):
    with pytest.raises(ValueError, match=r"The 'val_fraction' probe option was renamed to "
                                         r"holdout_fraction \(the share of train held out"):
        train_probe(small, "knn", tmp_path / "o", options={"val_fraction": 0.3})
    assert not (tmp_path / "o").exists()


def test_unknown_probe_lists_the_registry_and_a_close_match():
    with pytest.raises(ValueError, match=r"unknown probe 'linear_sv'; choose one of \['knn', "
                                         r"'linear_svm', .*Did you mean: linear_svm"):
        probe_options("linear_sv")


def test_options_that_need_the_data_are_checked_against_it():
    with pytest.raises(ValueError, match=r"'selection_metric' probe option must be one of "
                                         r"\['accuracy', 'balanced_accuracy', 'macro_f1'\]"):
        resolve_options(KnnOptions(selection_metric="mAP"), "multiclass", ["a", "b"])
    with pytest.raises(ValueError, match="for multilabel data"):
        resolve_options(LinearOptions(class_weight={"a": 2}), "multilabel", ["a", "b"])
    given = LogregOptions(class_weight={"b": 3})
    resolved = resolve_options(given, "multiclass", ["a", "b"])
    assert resolved.class_weight == {1: 3.0} and resolved.selection_metric == "accuracy"
    assert given.class_weight == {"b": 3.0} and given.selection_metric is None   # untouched


def test_options_dataclass_or_dict_train_the_same_run_under_its_own_name(small, tmp_path):
    as_dict = train_probe(small, "logreg", tmp_path / "a",
                          options={**FAST, "class_weight": {"c": 2.0}})
    as_class = train_probe(small, "logreg", tmp_path / "b", name="logreg_c2",
                           options=LogregOptions(n_boot=50, few_shot=False,
                                                 class_weight={"c": 2.0}))
    assert as_class["probe"] == "logreg_c2" and as_class["probe_type"] == "logreg"
    assert as_dict["probe"] == as_dict["probe_type"] == "logreg"
    written = json.loads((tmp_path / "b" / "metrics" / "b" / "logreg_c2.json").read_text())
    assert written == as_class and (tmp_path / "b" / "probes" / "b" / "logreg_c2.joblib").is_file()
    same = {k for k in as_dict if k not in ("probe", "fit_seconds", "selection", "threads")}
    assert {k: as_dict[k] for k in same} == {k: as_class[k] for k in same}
    assert as_class["options"]["class_weight"] == {"c": 2.0}
    assert as_class["options"]["holdout_fraction"] == 0.2
    assert "val_fraction" not in as_class["options"]


def test_wrong_options_class_or_run_name_is_refused(small, tmp_path):
    with pytest.raises(ValueError, match=r"options of probe 'knn' must be a dict or a KnnOptions\. "
                                         r"Got a LogregOptions instead"):
        train_probe(small, "knn", tmp_path / "o", options=LogregOptions())
    with pytest.raises(ValueError, match=r"'name' parameter of train_probe must be a file name"):
        train_probe(small, "knn", tmp_path / "o", name="../knn")
    assert not (tmp_path / "o").exists()


def test_knn_metrics_record_only_knn_options(small, tmp_path):
    m = train_probe(small, "knn", tmp_path, options={**FAST, "grid": [1, 3]})
    assert set(m["options"]) == {f.name for f in dataclasses.fields(KnnOptions)}
    assert m["options"]["grid"] == [1, 3] and m["selection"]["search"] == "grid"
    assert m["converged"] is None
