"""The report's "probe vs fine-tune" section: is a linear probe enough, or must one fine-tune?

Per backbone that has fine-tune reference runs (``linprobe finetune``): its best linear probe and
the ``finetune`` and ``scratch`` arms side by side (test metric with its 95% CI), the paired
bootstrap difference of each arm against that probe and of finetune against scratch (one
comparison: :func:`linprobe.models.compare.paired_compare`), per-epoch training-loss and val
curves, and what each costs (training time and img/s next to extraction and probe fitting).
Arms are runs whose metrics' ``probe_type`` is one of the arms; everything else is a probe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from linprobe.finetune.config import ARMS
from linprobe.reports import figures
from linprobe.reports.collect import Run
from linprobe.reports.sections import headline_ci, number, outputs_for, paired_or_none


def is_arm(run: Run) -> bool:
    """Whether ``run`` is a fine-tune reference arm (not a linear probe)."""
    return run.metrics.get("probe_type") in ARMS


def _history(run: Run) -> list[dict[str, Any]]:
    """The run's per-epoch records that carry the numbers a curve needs."""
    history = run.metrics.get("history")
    if not isinstance(history, list):
        return []
    return [h for h in history if isinstance(h, dict) and number(h.get("epoch")) is not None
            and number(h.get("train_loss")) is not None and number(h.get("lr")) is not None]


def _curves(run: Run) -> list[dict[str, Any]]:
    """One curve per learning rate of the run's grid; the chosen (lr, epoch) is marked."""
    chosen = run.section("selection").get("params")
    chosen = chosen if isinstance(chosen, dict) else {}
    by_lr: dict[float, list[dict]] = {}
    for h in _history(run):
        by_lr.setdefault(float(h["lr"]), []).append(h)
    out = []
    for lr, records in by_lr.items():
        records.sort(key=lambda h: h["epoch"])
        picked = number(chosen.get("lr")) == lr
        out.append({"label": f"{run.probe} lr={lr:g}" + (" (chosen)" if picked else ""),
                    "group": run.probe,
                    "epoch": [int(h["epoch"]) for h in records],
                    "train_loss": [float(h["train_loss"]) for h in records],
                    "val": [number(h.get("val")) for h in records],
                    "chosen": int(chosen["epoch"]) if picked and number(chosen.get("epoch"))
                    is not None else None})
    return out


def _row(run: Run, kind: str) -> dict[str, Any]:
    ci, ci_source = headline_ci(run)
    cost = run.section("train_cost")
    sel = run.section("selection")
    return {"kind": kind, "probe": run.probe, "anchor": f"run-{run.backbone}-{run.probe}",
            "headline": run.headline, "value": run.headline_value, "ci": ci,
            "ci_source": ci_source, "solver": run.metrics.get("solver"),
            "params": sel.get("params") if isinstance(sel.get("params"), dict) else None,
            "seconds": (number(cost.get("seconds")) if cost
                        else number(run.metrics.get("fit_seconds"))),
            "images_per_s": number(cost.get("images_per_s")),
            "epochs": number(cost.get("epochs")), "device": cost.get("device")}


def probe_vs_finetune(runs: list[Run], attrs: dict[str, dict[str, Any]],
                      artifacts: str | Path) -> list[dict[str, Any]]:
    """One entry per backbone with fine-tune arms, in backbone order: {"backbone", "rows" (best
    probe first, then the arms in ARMS order), "diffs" (label, paired_compare dict or None),
    "extract" (seconds, images_per_s from the embeddings' attrs), "curves" (figure URI or
    None), "metric"}. attrs: each backbone's HDF5 attrs; artifacts: where test outputs are."""
    artifacts = Path(artifacts)
    out = []
    for backbone in sorted({r.backbone for r in runs if is_arm(r)}):
        mine = [r for r in runs if r.backbone == backbone]
        arms = sorted((r for r in mine if is_arm(r)), key=lambda r: ARMS.index(r.metrics["probe_type"]))
        scored = [r for r in mine if not is_arm(r) and r.headline_value is not None]
        best = max(scored, key=lambda r: r.headline_value) if scored else None
        outputs = {r.probe: outputs_for(r, artifacts) for r in arms + ([best] if best else [])}
        diffs = []
        for arm in arms:
            if best is not None:
                diffs.append({"a": arm.probe, "b": f"probe {best.probe}",
                              "cmp": paired_or_none(outputs[arm.probe], outputs[best.probe])})
        if {"finetune", "scratch"} <= set(outputs):
            diffs.append({"a": "finetune", "b": "scratch",
                          "cmp": paired_or_none(outputs["finetune"], outputs["scratch"])})
        curves = [c for arm in arms for c in _curves(arm)]
        metric = arms[0].section("selection").get("metric") or arms[0].headline
        a = attrs.get(backbone, {})
        out.append({
            "backbone": backbone, "metric": metric,
            "rows": ([_row(best, "best linear probe")] if best else [])
                    + [_row(r, "reference arm") for r in arms],
            "diffs": diffs,
            "extract": {"seconds": number(a.get("seconds")),
                        "images_per_s": number(a.get("images_per_s")),
                        "device": a.get("device")},
            "curves": figures.training_curves_uri(curves, str(metric)) if curves else None,
        })
    return out
