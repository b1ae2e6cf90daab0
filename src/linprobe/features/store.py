"""HDF5 embedding store: one file per backbone (read by training and the report).

Layout of ``<name>.h5``::

    embeddings  (N, D) float32, chunked by rows
    ids         (N,)   UTF-8 strings, stable relative paths of the images
    labels      (N,)   int64 class index, or (N, C) uint8 multi-hot
    split       (N,)   uint8 codes, index into SPLITS
    attrs       backbone spec, weights, preprocessing, image size, embedding dim, class names,
                task, dataset fingerprint, split_seed, init_seed (random-init backbones),
                versions, device, seconds, images/s, ...

Attribute values that are not scalars or strings are stored as JSON strings and decoded on read.
The writer (``<name>.h5.partial``, verified on resume) lives in :mod:`.writer`. This module never
imports torch, so the report can read embeddings without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from linprobe.schema import SPLIT_CODES, SPLITS, TASKS  # noqa: F401  (re-exported)

_JSON_PREFIX = "json:"


def encode_attr(value: Any) -> Any:
    """Return an HDF5-storable form of ``value`` (str/int/float kept, the rest as JSON)."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
        return value
    return _JSON_PREFIX + json.dumps(value)


def decode_attr(value: Any) -> Any:
    """Inverse of :func:`encode_attr`."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str) and value.startswith(_JSON_PREFIX):
        return json.loads(value[len(_JSON_PREFIX):])
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class EmbeddingSet:
    """Everything one backbone's HDF5 file holds, in memory.

    embeddings: (N, D) float32; ids: (N,) str; labels: (N,) int64 or (N, C) uint8;
    split: (N,) uint8 codes into SPLITS.
    """

    embeddings: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]
    task: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def mask(self, split: str) -> np.ndarray:
        """Boolean (N,) mask of the rows in ``split`` ('train', 'val' or 'test')."""
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.split == SPLIT_CODES[split]

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X (n, D) float32, y (n,) or (n, C), ids (n,)) of one split."""
        m = self.mask(split)
        return self.embeddings[m], self.labels[m], self.ids[m]


def partial_path(path: str | Path) -> Path:
    """Where the writer of ``path`` streams its rows until the file is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def fresh_partial_path(path: str | Path) -> Path:
    """Where the writer of ``path`` builds a new partial file until HDF5's first flush, then
    renames it to :func:`partial_path` (a kill before that flush leaves a file without its
    signature, which no run could tell from a stranger's under the partial's name)."""
    partial = partial_path(path)
    return partial.with_name(partial.name + ".new")


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Decoded attributes of an embeddings file, without loading the arrays."""
    with h5py.File(path, "r") as f:
        return {k: decode_attr(v) for k, v in f.attrs.items()}


def read_embeddings(path: str | Path, *, load_embeddings: bool = True) -> EmbeddingSet:
    """Load an embeddings file (written by the extractor, or by another tool to the same layout).

    With ``load_embeddings=False`` the (N, D) matrix is left out (an empty (N, 0) array), which
    is enough for summaries. Files that do not follow the layout raise ValueError naming the
    file, the dataset or attribute, and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"embeddings file {path} does not exist; run `linprobe extract ... --out {path}` first"
        )
    try:
        with h5py.File(path, "r") as f:
            attrs, n = _check_layout(f, path)
            emb = f["embeddings"][...] if load_embeddings else np.empty((n, 0), np.float32)
            ids = f["ids"].asstr()[...].astype(object)
            labels, split = f["labels"][...], f["split"][...].astype(np.uint8)
    except OSError as exc:  # not HDF5, truncated, damaged chunks
        raise ValueError(f"{path} is not a readable HDF5 embeddings file ({exc}); re-run "
                         "`linprobe extract` to write it again") from None
    if not np.isin(split, list(SPLIT_CODES.values())).all():
        raise ValueError(f"{path}: 'split' must hold codes 0 (train), 1 (val), 2 (test); found "
                         f"{sorted(set(np.unique(split).tolist()) - set(SPLIT_CODES.values()))}")
    return EmbeddingSet(embeddings=emb, ids=ids, labels=labels, split=split,
                        class_names=attrs["class_names"], task=attrs["task"], attrs=attrs)


def _check_layout(f: h5py.File, path: Path) -> tuple[dict[str, Any], int]:
    """Types and shapes of the four datasets and the decodable attrs; (attrs, N)."""
    missing = [k for k in ("embeddings", "ids", "labels", "split") if k not in f]
    if missing:
        raise ValueError(f"{path} is missing datasets {missing}; re-run the extraction")
    ds = {k: f[k] for k in ("embeddings", "ids", "labels", "split")}
    for k, d in ds.items():
        if not isinstance(d, h5py.Dataset):
            raise ValueError(f"{path}: '{k}' must be a dataset, got a {type(d).__name__}")
    emb, n = ds["embeddings"], ds["ids"].shape[0] if ds["ids"].ndim == 1 else -1
    if emb.ndim != 2:
        raise ValueError(f"{path}: 'embeddings' must be a 2-D (N, D) array, got shape {emb.shape}")
    if emb.dtype != np.float32:
        raise ValueError(f"{path}: 'embeddings' must be float32 (N, D), got {emb.dtype}; convert "
                         "it, e.g. f['embeddings'] = x.astype('float32'), or re-run the extraction")
    if ds["ids"].ndim != 1 or h5py.check_string_dtype(ds["ids"].dtype) is None:
        raise ValueError(f"{path}: 'ids' must be (N,) strings (image paths), got "
                         f"{ds['ids'].dtype} {ds['ids'].shape}")
    for k in ("labels", "split"):
        if ds[k].dtype.kind not in "iu" or ds[k].ndim not in ((1, 2) if k == "labels" else (1,)):
            raise ValueError(f"{path}: '{k}' must be integer codes, got {ds[k].dtype} "
                             f"{ds[k].shape}" + ("; store class indices and the names in the "
                                                 "'class_names' attribute" if k == "labels" else ""))
    for k, d in ds.items():
        if d.shape[0] != n:
            raise ValueError(f"{path}: '{k}' has {d.shape[0]} rows but 'ids' has {n}")
    attrs = {}
    for k, v in f.attrs.items():
        try:
            attrs[k] = decode_attr(v)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: attribute {k!r} is not valid json ({exc})") from None
    names = attrs.get("class_names", [])
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise ValueError(f"{path}: attribute 'class_names' must be a list of strings, got "
                         f"{names!r:.80}")
    attrs["class_names"] = names
    attrs["task"] = attrs.get("task", "multiclass")
    if not isinstance(attrs["task"], str):
        raise ValueError(f"{path}: attribute 'task' must be one of {list(TASKS)}, got "
                         f"{attrs['task']!r:.80}")
    return attrs, n


def __getattr__(name: str) -> Any:
    # ``store.EmbeddingWriter`` keeps working; imported lazily because writer imports this module.
    if name == "EmbeddingWriter":
        from linprobe.features.writer import EmbeddingWriter

        return EmbeddingWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
