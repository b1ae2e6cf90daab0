"""What dvc.yaml's ``finetune@<backbone>-<arm>`` stages need from params.yaml.

The section itself is parsed and validated by :meth:`FinetuneConfig.from_params` (when
params.yaml loads); this module holds the pipeline's side: which runs the section asks for, the
keys the stage lists as DVC params (DVC refuses to run a stage whose listed key is absent), and
the `linprobe check` problems a valid section can still have.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import yaml

from linprobe.finetune.config import AUGMENT, ARMS, FinetuneConfig
from linprobe.pipeline.params import Params

# finetune.* keys dvc.yaml's stage lists one by one (a test checks it): every setting but the
# lists that choose the runs (editing those must not re-run the other runs), `workers`, which
# changes the speed of decoding, not the result, and `threads`, which changes the speed (and on
# CPU the last bits of each step, as any other thread count of the machine would: not a reason
# to train again).
NOT_STAGE_PARAMS = ("backbones", "arms", "workers", "threads")
STAGE_KEYS: tuple[str, ...] = tuple(
    k for k in [f.name for f in fields(FinetuneConfig) if f.name not in AUGMENT.values()]
    + ["augment"] if k not in NOT_STAGE_PARAMS)


def finetune_runs(params: Params) -> list[tuple[str, str]]:
    """(backbone, arm) of every fine-tune run params.yaml asks for (none when off)."""
    return [(b, a) for b in params.finetune.backbones for a in params.finetune.arms]


def _defaults() -> dict[str, Any]:
    """STAGE_KEYS' default values, as they are written in params.yaml."""
    d = FinetuneConfig().to_dict()
    d["augment"] = {key: d[field] for key, field in AUGMENT.items()}
    return {k: d[k] for k in STAGE_KEYS}


def check_finetune(params: Params) -> list[str]:
    """Problems of an enabled ``finetune`` section: a setting dvc.yaml's stage reads is absent
    (DVC would stop at that stage, after the extractions), or a probe entry is named like an arm
    (both runs would write ``metrics/<backbone>/<arm>.json``)."""
    if not params.finetune.backbones:
        return []
    problems = []
    try:
        raw = yaml.safe_load(params.source.read_text(encoding="utf-8")).get("finetune") or {}
    except (OSError, AttributeError):
        raw = None  # not a file (params built in code): nothing for DVC to read either
    if isinstance(raw, dict):
        missing = {k: v for k, v in _defaults().items() if k not in raw}
        if missing:
            shown = ", ".join(f"{k}: {json.dumps(v)}" for k, v in missing.items())  # YAML flow
            problems.append(f"finetune is missing {', '.join(missing)}: dvc.yaml's finetune "
                            f"stage reads every finetune setting, so DVC stops without them; "
                            f"add them (the defaults: {shown})")
    for arm in params.finetune.arms:
        if arm in params.probes:
            problems.append(f"probes.{arm}: a probe entry may not be named like the fine-tune "
                            f"arm {arm!r} (one of {list(ARMS)}): both would write "
                            f"metrics/<backbone>/{arm}.json; rename the probe entry")
    return problems
