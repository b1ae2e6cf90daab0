"""`linprobe check`: everything params.yaml asks for, checked in seconds before any work.

Each check returns the problems it found as messages that name the params key and the fix, so
one run lists them all instead of one per `dvc repro`. Nothing is loaded or downloaded: backbone
weights are looked up on disk, probe entries are checked against the data's task and classes
(their options were checked when params.yaml loaded), and the data is listed (not decoded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from linprobe.features.store import SPLIT_CODES
from linprobe.pipeline.params import Params

# Errors a check may meet in user input (ImportError: an optional extra such as timm missing).
_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, LookupError, ImportError)


# The check stage's output. Constant on purpose: the extract stages depend on it, and DVC
# re-runs a stage only when a dependency's content changes, so a re-run of `check` (any params
# edit) never re-runs extractions; a failed check deletes it and stops `dvc repro` first.
STAMP_TEXT = "linprobe check passed\n"


@dataclass
class CheckReport:
    """What `linprobe check` found: ``problems`` stop the run; ``notes`` are printed; the
    listed ``dataset`` (None when it could not be listed) feeds the dataset warnings."""
    problems: list[str]
    notes: list[str]
    dataset: Any | None


def check_backbones(params: Params) -> list[str]:
    """Every backbone spec parses and its weights are on disk (offline; nothing downloaded)."""
    from linprobe.features.backbones import check_spec

    problems = []
    for name, bb in params.backbones.items():
        try:
            check_spec(bb.spec)
        except _USER_ERRORS as exc:
            problems.append(f"backbones.{name}.spec {bb.spec!r}: {exc}")
    return problems


def check_devices(params: Params) -> list[str]:
    """`cuda` asked for (extraction, or the torch probe solver) on a machine without a GPU."""
    from linprobe.models.options import SolverOptions

    wants = (["extract.device"] if params.extract.device == "cuda" else []) + [
        f"probes.{name}.device" for name, entry in params.probes.items()
        if isinstance(entry.options, SolverOptions) and entry.options.solver == "torch"
        and entry.options.device == "cuda"]
    if not wants:
        return []
    import torch

    if torch.cuda.is_available():
        return []
    from linprobe.models.torch_lbfgs import no_cuda_message

    return [f"{key}: " + (no_cuda_message("cuda") if key.startswith("probes.") else
                          "is 'cuda' but torch finds no CUDA GPU; set it to auto or cpu")
            for key in wants]


def load_data(params: Params) -> tuple[Any | None, list[str]]:
    """(the dataset listing, problems): the data path lists into labelled, split images."""
    from linprobe.features.datasets import load_dataset

    d = params.data
    try:
        ds = load_dataset(d.path, val_fraction=d.val_fraction, test_fraction=d.test_fraction,
                          split_seed=d.split_seed)
    except _USER_ERRORS as exc:
        return None, [f"data.path {d.path!r}: {exc}"]
    return ds, []


def check_probes(params: Params, ds: Any | None) -> list[str]:
    """Every probe supports the data's task and its options fit the data (class names, the
    task's selection metrics); the options themselves were checked when params.yaml loaded."""
    from linprobe.models.options import resolve_options
    from linprobe.models.probes import get_probe

    if ds is None:
        return []
    problems = []
    for name, entry in params.probes.items():
        try:
            get_probe(entry.probe, ds.task)
            resolve_options(entry.options, ds.task, ds.class_names)
        except _USER_ERRORS as exc:
            problems.append(f"probes.{name}: {exc}")
    return problems


def split_counts(ds: Any) -> dict[str, np.ndarray]:
    """{split: (C,) images per class} (multilabel: positives per class)."""
    out = {}
    for split, code in SPLIT_CODES.items():
        rows = ds.split == code
        out[split] = (ds.labels[rows].sum(axis=0) if ds.task == "multilabel" else
                      np.bincount(ds.labels[rows], minlength=len(ds.class_names)))
    return out


def describe_data(ds: Any, path: str) -> str:
    """One line: classes and images per split."""
    counts = split_counts(ds)
    sizes = ", ".join(f"{s} {int((ds.split == code).sum())}"
                      for s, code in SPLIT_CODES.items())
    return (f"data {path}: {len(ds.class_names)} classes ({ds.task}), {len(ds)} images: {sizes}; "
            f"per class min/max in train: {int(counts['train'].min())}/"
            f"{int(counts['train'].max())}")


def dataset_warnings(ds: Any, resize: str) -> list[str]:
    """Warnings about the data that do not stop the run, the same ones extraction prints: the
    listing's (files left out, links reached twice, classes without val/test images; see
    ``features.scan``) and the crop-loss warning (``features.croploss``) for ``resize``."""
    from linprobe.features.croploss import crop_loss_summary, crop_warning, read_sizes, sample_paths

    # Whether an image counts as cut is relative to a square image's crop, so any backbone's
    # resize/crop gives the same verdict: a plain square crop (resize == crop) stands for all.
    summary = crop_loss_summary(read_sizes(sample_paths(ds.paths())), 1, 1, n_images=len(ds))
    warning = crop_warning(summary, resize)
    return list(ds.scan.warnings) + ([warning] if warning else [])


def run_checks(params: Params) -> CheckReport:
    """All checks of `linprobe check`, cheapest first; nothing is written."""
    from linprobe.pipeline.finetune_stage import check_finetune

    problems = check_devices(params) + check_finetune(params)
    ds, data_problems = load_data(params)
    problems += data_problems
    problems += check_probes(params, ds)
    problems += check_backbones(params)
    if ds is None or data_problems:
        return CheckReport(problems, [], None)
    return CheckReport(problems, [describe_data(ds, params.data.path)], ds)
