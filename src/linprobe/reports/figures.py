"""Figures as ``data:image/png;base64,...`` URIs, so the HTML needs no other file.

Figures are drawn with matplotlib's object API (``Figure`` rendered to PNG by Agg on save): no
pyplot, no ``matplotlib.use``, so importing linprobe leaves the backend of a notebook or
application alone. Mathtext is off: class names are user data and a ``$`` in one must not be
parsed as LaTeX. The confusion-matrix image skips matplotlib entirely (a
colour-mapped array scaled up with nearest-neighbour) because a report may hold 100 of them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
import matplotlib.lines
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

_RC = {"text.parse_math": False, "font.size": 9, "axes.spines.top": False,
       "axes.spines.right": False, "svg.fonttype": "none"}


def png_uri(data: bytes) -> str:
    """PNG bytes -> data URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@contextmanager
def _figure(width: float, height: float, ncols: int = 1) -> Iterator[tuple[Figure, Any]]:
    """A standalone Figure (not registered with pyplot, freed when dropped) and its Axes (one,
    or an array of ``ncols`` side by side).

    The style applies while the figure is built and saved (``_fig_uri`` is called inside).
    """
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), dpi=96)
        yield fig, fig.subplots(1, ncols)


def _fig_uri(fig: Figure) -> str:
    """PNG data URI of a figure, reduced to a 256-colour palette.

    Plots use few colours; the palette makes the PNGs 3-4x smaller (a report can hold
    dozens of figures) with no visible change.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    buf.seek(0)
    with Image.open(buf) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return png_uri(out.getvalue())


def heatmap_uri(matrix: np.ndarray, *, max_px: int = 400) -> str:
    """(C, C) values in [0, 1] -> a viridis PNG, each cell a square block of pixels."""
    m = np.clip(np.nan_to_num(np.asarray(matrix, dtype=np.float64)), 0.0, 1.0)
    rgba = (matplotlib.colormaps["viridis"](m)[..., :3] * 255).astype(np.uint8)
    cell = max(1, max_px // max(m.shape))
    img = Image.fromarray(rgba).resize((m.shape[1] * cell, m.shape[0] * cell), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return png_uri(buf.getvalue())


def learning_curves_uri(curves: Sequence[dict]) -> str:
    """One figure of few-shot curves: items {"label", "k" (list), "mean", "std"}; log2 x axis.

    Std bands are drawn only for a few curves: with many backbones they hide the lines.
    """
    with _figure(8.0, 4.2) as (fig, ax):
        many = len(curves) > 6
        cmap = matplotlib.colormaps["tab20" if len(curves) > 10 else "tab10"]
        for i, c in enumerate(curves):
            k = np.asarray(c["k"], dtype=float)
            mean = np.asarray(c["mean"], dtype=float)
            line, = ax.plot(k, mean, marker="o", ms=3, lw=1.2, color=cmap(i % cmap.N), label=c["label"])
            if c.get("std") is not None and not many:
                std = np.asarray(c["std"], dtype=float)
                ax.fill_between(k, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_xscale("log", base=2)
        # Plain tick labels: the default log formatter emits mathtext, which is switched off.
        ks = sorted({float(k) for c in curves for k in c["k"]})
        ax.set_xticks(ks, labels=[f"{k:g}" for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("labelled examples per class (k)")
        ax.set_ylabel(curves[0].get("metric", "score") if curves else "score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(curves) > 12 else 1, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _fig_uri(fig)


def scatter_uri(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str,
                *, legend_max: int = 12) -> str:
    """2-D scatter of points (n, 2) coloured by integer labels (n,) into class_names."""
    n_cls = max(1, len(class_names))
    if n_cls <= 10:
        colours = matplotlib.colormaps["tab10"](np.arange(10))
    else:
        colours = matplotlib.colormaps["turbo"](np.linspace(0, 1, n_cls))
    labels = np.asarray(labels, dtype=int)
    with _figure(4.2, 3.6) as (fig, ax):
        # One scatter call for all points: a call per class adds up with 100 classes.
        ax.scatter(points[:, 0], points[:, 1], s=8, c=colours[labels % len(colours)], alpha=0.8,
                   linewidths=0)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(class_names) <= legend_max:
            handles = [matplotlib.lines.Line2D([], [], ls="", marker="o", ms=4, color=colours[c],
                                               label=name) for c, name in enumerate(class_names)]
            ax.legend(handles=handles, fontsize=6, loc="best", frameon=False)
        return _fig_uri(fig)


def ap_bars_uri(class_names: Sequence[str], ap: Sequence[float]) -> str:
    """Horizontal bars of per-class average precision."""
    height = 1.0 + 0.18 * len(class_names)
    with _figure(5.0, height) as (fig, ax):
        y = np.arange(len(class_names))
        ax.barh(y, ap, color="#4c72b0")
        ax.set_yticks(y, labels=list(class_names), fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("average precision")
        return _fig_uri(fig)


def pr_curves_uri(curves: dict[str, dict]) -> str:
    """Precision-recall curves, one line per class: {name: {"precision": [...], "recall": [...]}}."""
    with _figure(5.0, 4.0) as (fig, ax):
        for name, c in curves.items():
            ax.plot(c.get("recall", []), c.get("precision", []), lw=1, label=name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if len(curves) <= 12:
            ax.legend(fontsize=6, frameon=False)
        return _fig_uri(fig)


def training_curves_uri(curves: Sequence[dict], metric: str) -> str:
    """Per-epoch training loss (left) and val ``metric`` (right) of fine-tune runs, one line per
    item {"label", "group" (one colour per group: the arm), "epoch" (list), "train_loss", "val"
    (None where not scored), "chosen" (the selected epoch, or None: drawn dotted)}; the
    selected epoch is ringed on the val curve."""
    with _figure(8.0, 3.2, ncols=2) as (fig, (loss_ax, val_ax)):
        cmap = matplotlib.colormaps["tab10"]
        groups = list(dict.fromkeys(c["group"] for c in curves))
        for c in curves:
            colour = cmap(groups.index(c["group"]) % cmap.N)
            style = {"marker": "o", "ms": 3, "color": colour, "label": c["label"],
                     "lw": 1.4 if c.get("chosen") is not None else 1.0,
                     "ls": "-" if c.get("chosen") is not None else ":"}
            epoch = np.asarray(c["epoch"], dtype=float)
            loss_ax.plot(epoch, c["train_loss"], **style)
            val = np.array([np.nan if v is None else v for v in c["val"]], dtype=float)
            val_ax.plot(epoch, val, **style)
            if c.get("chosen") is not None and c["chosen"] in c["epoch"]:
                at = c["epoch"].index(c["chosen"])
                val_ax.plot([epoch[at]], [val[at]], marker="o", ms=9, mfc="none", mec=colour,
                            mew=1.5, ls="")
        for ax, label in ((loss_ax, "training loss"), (val_ax, f"val {metric}")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            # Whole epochs only: a 2-epoch run must not show ticks at 1.25, 1.5, ...
            ax.xaxis.get_major_locator().set_params(integer=True)
        val_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        return _fig_uri(fig)
