"""The fine-tune reference arms: train a backbone end to end, score it like a probe.

Protocol: the network (the registry's backbone, pretrained for ``finetune``, the same
architecture with random init for ``scratch``, plus a new linear head on the probes' embedding)
is trained on train at each learning rate of the grid, scored on val after every epoch; the
(lr, epoch) with the best val metric (the headline metric of the task) is chosen and test is
scored once with that checkpoint. The data split is extraction's (same data params, same code).
Artifacts, ``<arm>`` standing where a probe's name stands (paths from
:meth:`linprobe.schema.ArtifactPaths.finetune_run`): the metrics JSON, predictions CSV and scores
of :mod:`linprobe.models.runfiles`, plus the network as ``probes/<backbone>/<arm>.safetensors``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from linprobe.features.config import ExtractConfig, SplitConfig
from linprobe.features.datasets import load_dataset
from linprobe.features.extract import (_device_name, cudnn_autotune, resolve_device,
                                       resolve_precision)
from linprobe.features.loader import DecodedBatches, decode_pool
from linprobe.finetune.config import ARMS, FinetuneConfig
from linprobe.finetune.data import checked, default_workers, loader
from linprobe.finetune.loop import Setup, Split, predict, train_lr
from linprobe.finetune.model import arm_spec, build_net, save_bytes, set_trainable
from linprobe.schema import HEADLINE, SCHEMA_VERSION, SPLIT_CODES, ArtifactPaths, RunMetrics
from linprobe.threads import ThreadController

_CHECK_FORMAT = 1  # bump when a checkpoint's meaning changes: older ones are not resumed


def finetune_arm(data: str | Path, spec: str, arm: str, out_dir: str | Path,
                 config: FinetuneConfig | None = None, *, backbone: str | None = None,
                 extract: ExtractConfig | None = None, split: SplitConfig | None = None,
                 seed: int = 0, progress: bool = True) -> RunMetrics:
    """Train ``arm`` (``finetune`` | ``scratch``) of backbone ``spec`` on the images of ``data``
    (folder or CSV manifest), write its artifacts under ``out_dir`` as ``<backbone>/<arm>``
    (``backbone``: the run's backbone name, default the spec's model) and return the metrics.

    ``extract`` supplies image_size, resize, device, precision, layer and init_seed (as for
    extraction), ``split`` the data split; a killed run resumes from its last epoch checkpoint.
    """
    from linprobe.models.options import ProbeOptions
    from linprobe.models.runfiles import add_test_details, missing_classes, score_run, write_run
    from linprobe.models.selection import SCORERS

    cfg, ex, sp = config or FinetuneConfig(), extract or ExtractConfig(), split or SplitConfig()
    if arm not in ARMS:
        raise ValueError(f"The 'arm' parameter must be one of {list(ARMS)}. Got {arm!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"The 'seed' parameter must be an int >= 0. Got {seed!r} instead.")
    arm_spec(spec, arm)  # a refused arm fails before the data is read
    name = backbone or spec.split(":")[1].replace("/", "_")
    dev = resolve_device(ex.device)
    prec = resolve_precision(ex.precision, dev)
    ds = load_dataset(data, val_fraction=sp.val_fraction, test_fraction=sp.test_fraction,
                      split_seed=sp.split_seed)
    masks = {s: ds.split == code for s, code in SPLIT_CODES.items()}
    n = {s: int(m.sum()) for s, m in masks.items()}
    if not n["val"] or not n["test"]:
        raise ValueError(f"dataset {data} has {n['val']} val and {n['test']} test images; "
                         "fine-tuning chooses the epoch and learning rate on val and scores "
                         "test once, so it needs both: set data.val_fraction and "
                         "data.test_fraction > 0 or give the images a val/test split")
    if cfg.batch_size > n["train"]:
        raise ValueError(f"The 'batch_size' parameter ({cfg.batch_size}) is larger than the "
                         f"{n['train']} training images of {data}; use a batch_size <= "
                         f"{n['train']} (finetune.batch_size)")
    C, paths = len(ds.class_names), ds.paths()

    def part(s: str) -> Split:
        return Split([paths[i] for i in np.flatnonzero(masks[s])], ds.labels[masks[s]])

    # Made before the network is built, so that its first reading of the free cores spans
    # that time (as extraction's).
    threads = ThreadController(cfg.threads, unit="img")
    template, bb = build_net(spec, arm, C, image_size=ex.image_size, layer=ex.layer,
                            init_seed=ex.init_seed, seed=seed)
    # scratch trains every layer: frozen random blocks would only handicap it.
    unfreeze = cfg.unfreeze_blocks() if arm == "finetune" else None
    n_trainable, n_blocks = set_trainable(template, unfreeze)
    pre = replace(bb.preprocess, resize_mode=ex.resize)
    # Threads are no part of a run's identity: a checkpoint resumes under another count.
    settings = {k: v for k, v in cfg.to_dict().items() if k != "threads"}
    identity = {"format": _CHECK_FORMAT, "spec": bb.spec, "arm": arm, "config": settings,
                "preprocess": pre.to_dict(), "layer": ex.layer, "init_seed": ex.init_seed,
                "data": ds.fingerprint(), "seed": seed, "device": dev.type, "precision": prec}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    layout = ArtifactPaths(out_dir)
    workers = default_workers(dev, cfg.workers)
    # In-process decoding runs on a pool as wide as the most threads a batch may get.
    width = threads.threads if workers == 0 else 1
    t0 = time.perf_counter()
    with decode_pool(width) as pool, cudnn_autotune(dev):
        def batches(p: list[Path]):
            return checked(loader(DecodedBatches(p, cfg.batch_size, pre, pool, width), dev,
                                   workers), p, cfg.batch_size)

        setup = Setup(make_net=lambda: copy.deepcopy(template), config=cfg, train=part("train"),
                      val=part("val"), pre=pre, task=ds.task, n_classes=C, device=dev,
                      precision=prec, seed=seed, checkpoints=layout.finetune_checkpoints(name, arm),
                      key=key, score=SCORERS[HEADLINE[ds.task]], batches=batches,
                      pool=pool if workers == 0 else None, threads=width, workers=workers,
                      progress=progress, controller=threads)
        results = [train_lr(setup, i, lr) for i, lr in enumerate(cfg.lrs)]
        train_seconds = time.perf_counter() - t0
        best = max(results, key=lambda r: r.val)  # the first of equals
        net = setup.make_net().to(dev, memory_format=torch.channels_last)
        net.load_state_dict(best.state)
        test = part("test")
        with threads.scope():
            scores = predict(net, batches(test.paths), setup)   # test: scored once
    test_m, val_m, pred, test_ci = score_run(
        ds.task, ds.class_names, test.labels, scores, "probability", setup.val.labels,
        best.val_scores, n_boot=ProbeOptions.n_boot, alpha=ProbeOptions.alpha, seed=seed)
    history = [h for r in results for h in r.history]
    per_epoch = n["train"] // cfg.batch_size * cfg.batch_size   # images trained on per epoch
    step_s = sum(per_epoch / h["images_per_s"] for h in history if h["images_per_s"] > 0)
    opt = {"adamw": "AdamW", "sgd": "SGD"}[cfg.optimizer]
    what = "fine-tune" if arm == "finetune" else "from scratch"
    part_trained = "" if unfreeze is None else \
        f", last {unfreeze} of {n_blocks} blocks"
    result: RunMetrics = {
        "schema_version": SCHEMA_VERSION, "backbone": name, "backbone_spec": spec,
        "probe": arm, "probe_type": arm, "task": ds.task, "headline": HEADLINE[ds.task],
        "class_names": ds.class_names, "n": n, "embed_dim": int(bb.embed_dim),
        "test": test_m["summary"], "test_ci": test_ci, "val": val_m,
        "selection": {"scheme": "val", "metric": HEADLINE[ds.task],
                      "params": {"lr": best.lr, "epoch": best.epoch},
                      "grid": {"lr": list(cfg.lrs), "epoch": list(range(1, cfg.epochs + 1))},
                      "curve": [{"lr": r.lr, "epoch": r.epoch, "score": _js(r.val)}
                                for r in results]},
        "per_class": test_m["per_class"],
        "missing_classes": missing_classes(ds.labels, masks, ds.class_names, ds.task),
        "options": {**cfg.to_dict(), "image_size": int(pre.crop), "resize": pre.resize_mode,
                    "trainable_params": int(n_trainable), "blocks": n_blocks,
                    "weights": bb.weights, "loaded_spec": bb.spec},
        "score_kind": "probability", "solver": f"{opt} {what}{part_trained}",
        "converged": None, "fit_seconds": round(train_seconds, 3), "seed": seed,
        "history": history,
        "train_cost": {"seconds": round(sum(h["seconds"] for h in history), 3),
                       "images_per_s": round(per_epoch * len(history) / step_s, 2)
                       if step_s > 0 else 0.0,
                       "epochs": len(history), "device": _device_name(dev), "precision": prec},
        "threads": threads.record(),
    }
    add_test_details(result, ds.task, test_m)
    meta = {"spec": spec, "arm": arm, "class_names": ds.class_names, "task": ds.task,
            "preprocess": pre.to_dict(), "layer": ex.layer, "lr": best.lr, "epoch": best.epoch}
    blob = save_bytes(net, meta)
    ids = np.array([ds.ids[i] for i in np.flatnonzero(masks["test"])], dtype=object)
    write_run(layout.finetune_run(name, arm), ((lambda f: f.write(blob)), "wb"), result,
              ds.class_names, ds.task, ids, test.labels, pred, scores)
    shutil.rmtree(setup.checkpoints, ignore_errors=True)  # the run is complete
    for folder in (setup.checkpoints.parent, setup.checkpoints.parent.parent):
        try:
            folder.rmdir()  # the backbone's and then the root's checkpoint folder, when empty
        except OSError:
            break
    return result


def _js(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def finetune_from_params(params_file: str | Path, backbone: str, arm: str,
                         out_dir: str | Path, *, progress: bool = True,
                         threads: int | str | None = None) -> RunMetrics:
    """``linprobe finetune``: the run of backbone ``backbone`` (a name in ``backbones:``) and
    ``arm`` with the data, extract, backbone, finetune and seed settings of a params file;
    ``threads`` (``--threads``) replaces ``finetune.threads`` when given."""
    from linprobe.pipeline.params import extract_config, load_params

    params = load_params(params_file)
    check_run(params, backbone, arm)
    entry = params.backbones[backbone]
    config = params.finetune if threads is None else replace(params.finetune, threads=threads)
    return finetune_arm(params.data.path, entry.spec, arm, out_dir, config,
                        backbone=backbone,
                        extract=extract_config(params.extract, entry),
                        split=params.data.split_config(), seed=params.seed, progress=progress)


def check_run(params, backbone: str, arm: str) -> None:
    """Refuse a (backbone, arm) that the params file's ``backbones`` and ``finetune`` sections
    do not ask for (before any output path is made from the names)."""
    from linprobe.pipeline.params import ParamsError

    src, ft = params.source, params.finetune
    if backbone not in params.backbones:
        raise ParamsError(f"{src}: backbones.{backbone} is not defined; defined backbones: "
                          f"{', '.join(params.backbones)}")
    if backbone not in ft.backbones:
        raise ParamsError(f"{src}: finetune.backbones does not list {backbone!r} "
                          f"(it lists {list(ft.backbones)}); add it there to fine-tune it")
    if arm not in ft.arms:
        raise ParamsError(f"{src}: finetune.arms does not list {arm!r} (it lists "
                          f"{list(ft.arms)}); add it there to run it")
