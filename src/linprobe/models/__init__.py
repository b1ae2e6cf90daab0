"""Linear probes on cached embeddings: selection on val, refit, test scored once.

Public entry points: :func:`train_probe` (the ``train`` stage), the probe registry
:data:`PROBES` and the probes' options dataclasses, :func:`bootstrap_ci`,
:func:`paired_bootstrap`, and :func:`compare_runs` / :func:`paired_compare` (the one comparison
of two runs, which the report's "≈ best" uses). Never imports torch.
"""

from .compare import compare_runs, paired_compare
from .options import FewShot, KnnOptions, LinearOptions, LogregOptions, ProbeOptions
from .probes import PROBES, get_probe
from .train import train_probe
from .uncertainty import bootstrap_ci, paired_bootstrap

__all__ = ["PROBES", "FewShot", "KnnOptions", "LinearOptions", "LogregOptions", "ProbeOptions",
           "bootstrap_ci", "compare_runs", "get_probe", "paired_bootstrap", "paired_compare",
           "train_probe"]
