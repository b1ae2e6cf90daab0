"""linprobe: which frozen pretrained backbone gives the best linear-probe features for your images.

In a notebook: ``linprobe.load_embeddings(path)`` (numpy arrays) and
``linprobe.load_results(artifacts_dir)`` (a pandas DataFrame, one row per run). They are imported
on first use, so ``import linprobe`` loads no numpy, torch, scikit-learn, h5py or pandas.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_embeddings", "load_results"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from linprobe import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
