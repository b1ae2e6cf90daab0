"""Build the self-contained HTML report from the pipeline's artifacts.

Public entry point: :func:`build_report` (called by ``linprobe report``). The output is one HTML
file: CSS, the sort script and every figure are inline, so it opens offline anywhere.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path
from typing import Any

import jinja2
from threadpoolctl import threadpool_limits

from linprobe import __version__
from linprobe.features.store import EmbeddingSet, read_embeddings
from linprobe.models.persist import write_csv, write_text
from linprobe.reports import sections
from linprobe.reports.collect import Only, load_backbone_attrs, load_runs, stale_runs
from linprobe.reports.finetune_section import probe_vs_finetune
from linprobe.reports.gallery import Thumbnails
from linprobe.schema import ArtifactPaths
from linprobe.threads import describe

_TEMPLATES = Path(__file__).parent / "templates"
# Every report carries <meta name="generator" content="linprobe X.Y.Z">: how linprobe recognises
# a file it may replace (pipeline/outputs.py).
GENERATOR = "linprobe"
LEARNING_CURVE_HEADER = ("k", "mean", "std")


def _git_revision(where: Path) -> str | None:
    """Short commit hash (+ '-dirty') of the repository holding ``where``; None outside git."""
    try:
        rev = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "") if rev else None


def _load_embeddings(artifacts: Path, name: str) -> EmbeddingSet | None:
    path = ArtifactPaths(artifacts).embeddings(name)
    try:
        return read_embeddings(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES),
                             autoescape=True,  # class and file names are user data
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["hp"] = lambda v: _fmt(v, ".3g")  # hyper-parameter values: 0.316, 1e-04, 50
    env.filters["si"] = _si
    return env.get_template("report.html.j2").render(**context)


def _fmt(value: Any, spec: str = ".3f") -> str:
    """Format a number; None -> 'n/a'; anything else (a string in a metrics file) as text."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def _si(value: float | None) -> str:
    """12_345_678 -> '12.3M' (parameter counts)."""
    if value is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def write_learning_curves(artifacts: str | Path, out_dir: str | Path, *,
                          only: Only = None) -> list[Path]:
    """Few-shot curve of each run as ``<out_dir>/<backbone>-<probe>.csv`` with ``k,mean,std``.

    One file per run because `dvc plots` draws one curve per file (a plots directory declared in
    dvc.yaml). Stale files of runs that no longer exist (or are not in ``only``) are removed.
    Returns the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for lc in sections.learning_curves_data(load_runs(artifacts, only)):
        for c in lc["curves"]:
            std = c["std"] if c["std"] is not None else [""] * len(c["k"])
            path = ArtifactPaths.learning_curve(out_dir, c["label"], lc["probe"])
            written.append(write_csv(path, LEARNING_CURVE_HEADER, zip(c["k"], c["mean"], std)))
    for stale in set(out_dir.glob("*.csv")) - set(written):
        stale.unlink()
    return written


def build_report(
    artifacts: str | Path,
    out: str | Path,
    *,
    params_file: str | Path | None = None,
    gallery_limit: int = 12,
    tsne_max: int = 600,
    mmd_permutations: int = 200,
    only: Only = None,
) -> Path:
    """Render ``out`` (one self-contained HTML file) from ``artifacts``; return its path.

    artifacts: the DVC artifacts directory (``metrics/``, ``predictions/``, ``embeddings/``).
    params_file: shown verbatim in the run metadata when given. gallery_limit: misclassified
    thumbnails per run. tsne_max: t-SNE is drawn when the test split has at most this many
    samples. mmd_permutations: permutations of the train-vs-test MMD test. only: the
    (backbone, probe) runs of params.yaml (probes and fine-tune arms); other runs (left behind
    when one is removed from params) are left out and counted in the report's header.
    Raises FileNotFoundError (naming the path, suggesting `dvc repro`) when there is nothing to
    report. The file is written to a temporary name and renamed, so a failed run never leaves
    a half-written report in place of the previous one.
    """
    for name, value, low in (("gallery_limit", gallery_limit, 0), ("tsne_max", tsne_max, 0),
                             ("mmd_permutations", mmd_permutations, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"The {name!r} parameter of build_report must be an int >= {low}. "
                             f"Got {value!r} instead.")
    artifacts = Path(artifacts)
    out = Path(out)
    runs = load_runs(artifacts, only)
    stale = stale_runs(artifacts, only)
    backbones = sorted({r.backbone for r in runs})
    attrs = load_backbone_attrs(artifacts, backbones)

    views, summary = [], None
    for name in backbones:
        es = _load_embeddings(artifacts, name)
        if es is None:
            views.append({"backbone": name, "missing": True})
            continue
        if summary is None:
            summary = sections.dataset_summary(es, attrs, attrs[name].get("data_root"))
        # One BLAS/OpenMP thread: the matrices are small (<= a few thousand rows), and on a
        # busy machine (DVC running other stages) spinning thread pools made PCA/t-SNE ~5x
        # slower in benchmarks/report.py.
        with threadpool_limits(limits=1):
            views.append(sections.embedding_views(name, es, tsne_max=tsne_max,
                                                  mmd_perm=mmd_permutations))
        del es  # one backbone's matrix in memory at a time

    data_roots = {b: a.get("data_root") for b, a in attrs.items()}
    params_text = None
    if params_file is not None and Path(params_file).is_file():
        params_text = Path(params_file).read_text(encoding="utf-8", errors="replace")
    board = sections.leaderboard(runs, attrs, artifacts)
    thumbnails = Thumbnails()  # this build's cache: images may change on disk between builds
    context = {
        "title": "linprobe report",
        "generator": f"{GENERATOR} {__version__}",
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "artifacts": str(artifacts.resolve()),
        "git_revision": _git_revision(artifacts.resolve()),
        "linprobe_version": __version__,
        "python": platform.python_version(),
        "params_file": str(params_file) if params_file is not None else None,
        "params_text": params_text,
        "leaderboard": board,
        "stale_runs": stale,
        "overview": sections.overview(board),
        "finetune": probe_vs_finetune(runs, attrs, artifacts),
        "probes": sorted({r.probe for r in runs}),
        "summary": summary,
        "learning_curves": sections.learning_curves(runs),
        "views": views,
        "runs": [sections.run_detail(r, data_roots.get(r.backbone), gallery_limit=gallery_limit,
                                     thumbnails=thumbnails) for r in runs],
        "backbones": [{"name": b, "attrs": attrs[b], "threads": describe(attrs[b].get("threads"))}
                      for b in backbones],
        "fit_threads": [{"backbone": r.backbone, "probe": r.probe,
                         "threads": describe(r.metrics.get("threads"))} for r in runs],
    }
    # Temp file + rename: a failed build leaves the previous report untouched.
    return write_text(out, _render(context))
