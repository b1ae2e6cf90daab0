"""The `linprobe` command: thin entry points that dvc.yaml (and users) call.

Heavy imports (torch, sklearn) happen inside each command so that `linprobe report` never loads
torch and `linprobe --help` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import NoReturn

from linprobe.cpus import parse_threads
from linprobe.diskio import WriteError
from linprobe.features.config import (
    DEFAULT_INIT_SEED, DEVICES, ENGINES, IMAGE_SIZE_MIN, ON_ERROR, PRECISIONS, RESIZE_MODES,
    ExtractConfig, SplitConfig,
)
from linprobe.pipeline.interrupt import interrupted, run_interruptibly
from linprobe.pipeline.outputs import claim_outputs
from linprobe.pipeline.params import ParamsError, load_params


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= ``low``, else "must be <what>, got ..."."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_seed = _int_at_least(0, "an integer >= 0")


def _threads(text: str) -> int | str:
    """`--threads`: auto or a count >= 1 (the config warns about more than the cores)."""
    try:
        return parse_threads(text, warn=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1 (threads per "
                                         f"process), got {text!r}") from None


def _image_size(text: str) -> int | None:
    """`--image-size`: a pixel count, or auto/none for the weights' own size."""
    if text.lower() in ("auto", "none", "null", ""):
        return None
    value = _positive_int(text)
    if value < IMAGE_SIZE_MIN:
        raise argparse.ArgumentTypeError(f"must be at least {IMAGE_SIZE_MIN} pixels, got {value}")
    return value


def _shard(text: str):
    """`--shard I/N` (features.shards)."""
    from linprobe.features.shards import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--shard ")) from None


def cmd_extract(args: argparse.Namespace) -> None:
    from linprobe.pipeline.distributed import torchrun_shard

    if args.seed is not None:
        raise ValueError("--seed was renamed to --split-seed (it seeds the train/val/test split; "
                         "random-init backbones take --init-seed)")
    if (args.params is None) != (args.name is None):
        raise ParamsError("--params and --name go together: the backbone's entry is "
                          "backbones.<name> in the params file")
    args.engine, args.ray_address = _engine(args)
    ranked = torchrun_shard()  # this rank's shard when torchrun started 2+ processes
    if ranked is not None or args.engine == "ray":
        if args.shard is not None:
            raise ValueError(f"--shard {args.shard} cannot be combined with "
                             f"{'torchrun' if ranked else '--engine ray'}, which shards the data "
                             "itself; drop --shard")
        if ranked is not None and args.engine == "ray":
            raise ValueError("--engine ray cannot run under torchrun; use one or the other")
    if args.shards is not None and args.engine != "ray":
        raise ValueError(f"--shards {args.shards} is for --engine ray; for other engines use "
                         "--shard I/N per process, or torchrun (one shard per rank)")
    args.shard = ranked or args.shard
    if ranked is not None:
        _extract_ranked(args)
        return
    with claim_outputs("extract", args):
        _extract(args)


def extract_configs(args: argparse.Namespace) -> tuple[ExtractConfig, SplitConfig]:
    """The library's configs from `linprobe extract`'s arguments (and the backbone's entry in
    --params for what a dvc.yaml command line cannot carry: layer, init_seed, and extract.threads,
    which changes no output)."""
    layer, init_seed = args.layer, args.init_seed
    threads = "auto" if args.threads is None else args.threads
    if args.params is not None:
        params = load_params(args.params)
        if args.name not in params.backbones:
            raise ParamsError(f"{params.source}: backbones.{args.name} is not defined; defined "
                              f"backbones: {', '.join(params.backbones)}")
        entry = params.backbones[args.name]
        layer = layer if layer is not None else entry.layer
        init_seed = init_seed if init_seed is not None else entry.init_seed
        threads = params.extract.threads if args.threads is None else threads
    config = ExtractConfig(
        image_size=args.image_size, resize=args.resize, batch_size=args.batch_size,
        device=args.device, precision=args.precision, on_error=args.on_error,
        num_workers=args.workers, layer=layer, init_seed=init_seed, threads=threads,
    )
    return config, SplitConfig(args.val_fraction, args.test_fraction, args.split_seed)


def _engine(args: argparse.Namespace) -> tuple[str, str | None]:
    """(engine, ray address): the flags, else extract.engine / extract.ray_address of --params."""
    engine, address = args.engine, args.ray_address
    if args.params is not None and (engine is None or address is None):
        extract = load_params(args.params).extract
        engine = engine or extract.engine
        if engine == "ray":  # the params' address serves the params' (or the flag's) ray engine
            address = address or extract.ray_address
    engine = engine or "local"
    if address is not None and engine != "ray":
        raise ValueError(f"--ray-address {address} needs --engine ray (params: extract.engine: "
                         "ray); add it, or drop the address")
    return engine, address


def _extract(args: argparse.Namespace) -> None:
    from linprobe.features.extract import extract_embeddings

    config, split = extract_configs(args)
    if args.engine == "ray":
        from linprobe.pipeline.ray_engine import extract_on_ray

        out = extract_on_ray(args.backbone, args.data, args.out, config, split,
                             shards=args.shards, address=args.ray_address)
    else:
        out = extract_embeddings(args.backbone, args.data, args.out, config, split,
                                 shard=args.shard)
        if args.shard is not None:
            print(f"shard {args.shard} written to {out}; once all {args.shard.count} are, "
                  f"run `linprobe merge --out {args.out}`")
            return
    print(f"embeddings written to {out}")


def _extract_ranked(args: argparse.Namespace) -> None:
    """A torchrun rank: its shard under the lock of its shard file, then rank 0 merges."""
    from linprobe.pipeline.distributed import extract_on_ranks

    config, split = extract_configs(args)
    out = extract_on_ranks(args.backbone, args.data, args.out, config, split,
                           timeout_s=args.wait_timeout,
                           claim=lambda: claim_outputs("extract", args))
    print(f"embeddings written to {out}" if out is not None else
          f"shard {args.shard} done; rank 0 merges it into {args.out}")


def cmd_merge(args: argparse.Namespace) -> None:
    from linprobe.features.merge import merge_shards

    with claim_outputs("merge", args):
        out = merge_shards(args.out, args.shards, remove=args.remove_shards)
    print(f"embeddings written to {out}")


def cmd_train(args: argparse.Namespace) -> None:
    from linprobe.models.blocks import torchrun_world

    # Under torchrun only rank 0 writes the artifacts (streamed logreg), so only it locks them.
    first = torchrun_world() < 2 or os.environ.get("RANK") == "0"
    with claim_outputs("train", args) if first else contextlib.nullcontext():
        _train(args)


def _train(args: argparse.Namespace) -> None:
    from linprobe.models.train import train_probe

    # --probe is an entry name of params.yaml with --params (its probe: and options are read
    # there), else a registry name run with default options.
    probe, options, seed = args.probe, None, args.seed
    if args.params:
        params = load_params(args.params)
        if args.probe not in params.probes:
            raise ParamsError(f"{params.source}: probes.{args.probe} is not defined; "
                              f"defined probes: {', '.join(params.probes)}")
        probe, options = params.probes[args.probe].probe, params.probes[args.probe].options
        seed = params.seed if seed is None else seed
    else:
        from linprobe.models.probes import get_probe

        try:
            get_probe(probe)
        except ValueError as exc:
            raise ValueError(f"{exc} Without --params, --probe names a probe; an entry of "
                             "params.yaml needs --params params.yaml.") from None
    if args.threads is not None:
        options = _with_threads(options, args.threads)
    # A worker thread: liblinear/lbfgs fits run minutes in C code that never checks for Ctrl-C.
    metrics = run_interruptibly("train", train_probe, args.embeddings, probe, args.out_dir,
                                options=options, seed=0 if seed is None else seed,
                                name=args.probe)
    if metrics is None:      # a torchrun rank other than 0: rank 0 reports
        return
    headline = metrics["headline"]
    value = metrics["test"].get(headline)
    print(f"{metrics.get('backbone')} / {args.probe}: test {headline} = {value:.4f}"
          if isinstance(value, float) else f"trained {args.probe}")


def _with_threads(options, threads: int | str):
    """The probe's options (a dataclass, a dict or None) with ``threads`` replaced."""
    from dataclasses import replace

    if options is None or isinstance(options, dict):
        return {**(options or {}), "threads": threads}
    return replace(options, threads=threads)


def cmd_finetune(args: argparse.Namespace) -> None:
    from linprobe.finetune.run import check_run, finetune_from_params

    check_run(load_params(args.params), args.backbone, args.arm)  # names become paths below
    with claim_outputs("finetune", args):
        metrics = run_interruptibly("finetune", finetune_from_params, args.params, args.backbone,
                                    args.arm, args.out_dir, threads=args.threads)
    headline = metrics["headline"]
    value = metrics["test"].get(headline)
    print(f"{args.backbone} / {args.arm}: test {headline} = {value:.4f}"
          if isinstance(value, float) else f"trained {args.arm}")


def cmd_report(args: argparse.Namespace) -> None:
    with claim_outputs("report", args):
        _report(args)


def _report(args: argparse.Namespace) -> None:
    from linprobe.reports.build import build_report, write_learning_curves
    from linprobe.reports.collect import stale_runs

    only = None
    if args.params is not None:
        # Only the runs params.yaml still asks for: DVC keeps the outputs of a removed
        # backbone's or probe's stages, and they must not be ranked beside fresh ones.
        params = load_params(args.params)
        from linprobe.pipeline.finetune_stage import finetune_runs

        only = {(b, p) for b in params.backbones for p in params.probes}
        only |= set(finetune_runs(params))
        stale = stale_runs(args.artifacts, only)
        if stale:
            print(f"linprobe: warning: {len(stale)} stale run(s) not in {params.source} left out of the "
                  f"report: {', '.join(stale)}", file=sys.stderr)

    def work() -> Path:
        out = build_report(args.artifacts, args.out, params_file=args.params, only=only)
        if args.plots_dir is not None:
            write_learning_curves(args.artifacts, args.plots_dir, only=only)
        return out

    out = run_interruptibly("report", work)
    print(f"report written to {Path(out).resolve()}")


def cmd_backbones(args: argparse.Namespace) -> None:
    from linprobe.features.backbones import DEFAULT_LISTED, format_backbones, list_backbones

    families = DEFAULT_LISTED + (("timm",) if args.timm else ())
    rows = list_backbones(families, pattern=args.pattern, include_random=args.random)
    print(format_backbones(rows))


def cmd_check(args: argparse.Namespace) -> None:
    from linprobe.pipeline.checks import STAMP_TEXT, dataset_warnings, run_checks

    params = load_params(args.params)
    found = run_checks(params)
    for note in found.notes:
        print(note)
    if found.dataset is not None:
        for warning in dataset_warnings(found.dataset, params.extract.resize):
            print(f"linprobe: warning: {warning}", file=sys.stderr)
    if found.problems:
        raise ParamsError(f"{params.source}: {len(found.problems)} problem(s) to fix before any "
                          "work:\n  - " + "\n  - ".join(found.problems))
    if args.stamp is not None:
        from linprobe.models.persist import write_text

        write_text(args.stamp, STAMP_TEXT)
    from linprobe.pipeline.finetune_stage import finetune_runs

    tuned = len(finetune_runs(params))
    print(f"{params.source}: OK ({len(params.backbones)} backbones x {len(params.probes)} probes"
          + (f", {tuned} fine-tune runs)" if tuned else ")"))


class _Parser(argparse.ArgumentParser):
    """argparse with linprobe's one error format (``linprobe: error: ...``, exit 2) for every
    subcommand, so scripts and users see the same prefix for argument and data errors."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"linprobe: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="linprobe", description=(
        "Compare frozen pretrained vision backbones with linear probes on your images."))
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ex = sub.add_parser("extract", help="run one backbone over a dataset, write embeddings (HDF5)")
    ex.add_argument("--backbone", required=True,
                    help="spec, e.g. lite:efficientnet-lite0, torchvision:resnet50[:WEIGHTS|:none]")
    ex.add_argument("--data", required=True, help="image folder or CSV manifest (path,label[,split])")
    ex.add_argument("--out", required=True, type=Path, help="output .h5 file")
    # Defaults and choices are the library's (features.config); None means "decided there".
    x, s = ExtractConfig(), SplitConfig()
    ex.add_argument("--image-size", type=_image_size, default=x.image_size,
                    help="input size in px (default: the weights' own)")
    ex.add_argument("--resize", choices=RESIZE_MODES, default=x.resize,
                    help="non-square images: centre crop (the weights' protocol), pad (letterbox "
                         "the whole image) or stretch (default: %(default)s)")
    ex.add_argument("--batch-size", type=_positive_int, default=x.batch_size,
                    help="default: %(default)s")
    ex.add_argument("--device", choices=DEVICES, default=x.device, help="default: %(default)s")
    ex.add_argument("--precision", choices=PRECISIONS, default=x.precision,
                    help="default: %(default)s (bfloat16 on CUDA, float32 on CPU)")
    ex.add_argument("--workers", type=int, default=x.num_workers,
                    help="DataLoader workers (default: picked for the cores and device)")
    ex.add_argument("--on-error", choices=ON_ERROR, default=x.on_error,
                    help="unreadable image: stop (fail) or record and leave it out (skip) "
                         "(default: %(default)s)")
    ex.add_argument("--layer", default=x.layer,
                    help="intermediate layer name (default: penultimate)")
    ex.add_argument("--val-fraction", type=float, default=s.val_fraction,
                    help="val share when the data defines no split (default: %(default)s)")
    ex.add_argument("--test-fraction", type=float, default=s.test_fraction,
                    help="test share when the data defines no split (default: %(default)s)")
    ex.add_argument("--split-seed", type=_seed, default=s.split_seed,
                    help="seed of the split when the data defines none (default: %(default)s)")
    ex.add_argument("--init-seed", type=_seed, default=x.init_seed,
                    help="seed of random-init (:none) weights (default: backbones.<--name>."
                         f"init_seed, else {DEFAULT_INIT_SEED}); refused for pretrained weights")
    ex.add_argument("--threads", type=_threads, default=None,
                    help="threads for the forward pass and decoding: auto (follow the free "
                         "cores) or a count; default: params extract.threads, else auto")
    ex.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # renamed
    ex.add_argument("--params", type=Path, default=None,
                    help="params.yaml to read backbones.<--name>.layer and .init_seed from")
    ex.add_argument("--name", default=None, help="the backbone's name in params.yaml")
    ex.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                    help="embed only shard I of N (0-based) into OUT.shards/; then `linprobe "
                         "merge --out OUT` (under torchrun each rank takes RANK/WORLD_SIZE)")
    ex.add_argument("--engine", choices=ENGINES, default=None,
                    help="local (default; also each torchrun rank) or ray: one Ray task per "
                         "shard, then merge (params: extract.engine)")
    ex.add_argument("--ray-address", default=None,
                    help="--engine ray: the cluster to join (default: RAY_ADDRESS, else a local "
                         "instance on this machine; params: extract.ray_address)")
    ex.add_argument("--shards", type=_positive_int, default=None,
                    help="--engine ray: number of shards (default: one per GPU of the cluster, "
                         "else one per node)")
    ex.add_argument("--wait-timeout", type=float, default=24 * 3600.0,
                    help="torchrun: seconds rank 0 waits for the other ranks' shards after its "
                         "own before giving up (default: %(default)s)")
    ex.set_defaults(func=cmd_extract)

    mg = sub.add_parser("merge", help="copy the shard files of --out into the one --out file")
    mg.add_argument("--out", required=True, type=Path,
                    help="the .h5 file whose shards (OUT.shards/) `extract --shard` wrote")
    mg.add_argument("--shards", type=_positive_int, default=None,
                    help="N of the I/N shards (default: the one N found)")
    mg.add_argument("--remove-shards", action="store_true",
                    help="delete the shard files once the merged file is written")
    mg.set_defaults(func=cmd_merge)

    tr = sub.add_parser("train", help="fit one probe on an embeddings file, score it")
    tr.add_argument("--embeddings", required=True, type=Path)
    tr.add_argument("--probe", required=True,
                    help="with --params: an entry name of its probes; without: a probe (logreg, "
                         "linear_svm, knn, ovr_logreg, ovr_linear_svm)")
    tr.add_argument("--out-dir", required=True, type=Path, help="artifacts root")
    tr.add_argument("--params", type=Path, default=None,
                    help="params.yaml to read probes.<probe> (its probe and options) and seed from")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--threads", type=_threads, default=None,
                    help="threads per fit: auto (the free cores, re-read before each fit) or a "
                         "count; replaces the probe's 'threads' option")
    tr.set_defaults(func=cmd_train)

    ft = sub.add_parser("finetune", help="train a fine-tune reference arm (finetune: pretrained "
                        "weights, scratch: random init), score it like a probe")
    ft.add_argument("--params", type=Path, default=Path("params.yaml"),
                    help="reads data, extract, backbones, finetune and seed (default: %(default)s)")
    ft.add_argument("--backbone", required=True, help="a backbone name of the params' backbones:")
    ft.add_argument("--arm", required=True, choices=("finetune", "scratch"))
    ft.add_argument("--out-dir", required=True, type=Path, help="artifacts root")
    ft.add_argument("--threads", type=_threads, default=None,
                    help="threads per training batch: auto (follow the free cores) or a count; "
                         "default: params finetune.threads, else auto")
    ft.set_defaults(func=cmd_finetune)

    rp = sub.add_parser("report", help="write the HTML report from the artifacts")
    rp.add_argument("--artifacts", required=True, type=Path)
    rp.add_argument("--out", required=True, type=Path)
    rp.add_argument("--params", type=Path, default=None, help="params.yaml, shown in the report")
    rp.add_argument("--plots-dir", type=Path, default=None,
                    help="also write few-shot learning curves here as CSV (for `dvc plots`)")
    rp.set_defaults(func=cmd_report)

    bb = sub.add_parser("backbones", help="list the backbones linprobe can load")
    bb.add_argument("pattern", nargs="?", default=None,
                    help="shell-style filter on the model name, e.g. 'resnet*'")
    bb.add_argument("--timm", action="store_true", help="include timm models (pip install timm)")
    bb.add_argument("--random", action="store_true", help="also list random-init (:none) specs")
    bb.set_defaults(func=cmd_backbones)

    ck = sub.add_parser("check", help="validate params.yaml before `dvc repro`")
    ck.add_argument("--params", type=Path, default=Path("params.yaml"))
    ck.add_argument("--stamp", type=Path, default=None,
                    help="write this file when every check passes (the DVC check stage's output)")
    ck.set_defaults(func=cmd_check)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt as exc:
        # The stage's own cleanup has run (locks released, partial files kept to resume); a
        # worker thread may still be inside a solver, so exit 130 at once.
        interrupted(getattr(exc, "what", None))
    except (ValueError, FileNotFoundError, NotADirectoryError, LookupError, WriteError) as exc:
        # Bad input: one clear line (the message names the file/param and the fix);
        # LINPROBE_DEBUG=1 shows the traceback for bug reports.
        if os.environ.get("LINPROBE_DEBUG"):
            raise
        print(f"linprobe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
