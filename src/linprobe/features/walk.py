"""Walking an image folder: every directory once, every file once, nothing dropped silently.

Layouts (see :mod:`linprobe.features.datasets`)::

    root/<class>/**/<image>            or            root/{train,val,test}/<class>/**/<image>

Symlinks are followed (datasets are often assembled from links), but each directory is known by
its (st_dev, st_ino): a symlink loop, or a second link to a folder already walked, is pruned and
noted instead of multiplying its images. A file reached twice (a hard link, or a symlink to a
file already listed) is counted once and noted. Files that are not used (hidden, unsupported
format, not inside a class folder, broken link, unreadable folder) go to ``left_out`` with the
reason. The walk is deterministic: names sorted, real files before symlinks within a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from linprobe.features.store import SPLIT_CODES, SPLITS

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
# Folder names that mean a split but are not spelled like one ("Train", "validation", ...).
_SPLIT_LIKE = {"train", "training", "val", "valid", "validation", "dev", "test", "testing"}
_LOOSE = "not inside a class folder"


@dataclass
class FolderListing:
    """What an image folder holds: ``classes[split][class]`` = sorted ids (split "" when the
    folder has no split folders); ``left_out``: (id, reason) of unused files; ``reached_twice``:
    (id, id of the first path to the same folder or file) of what was walked or counted once."""

    root: Path
    classes: dict[str, dict[str, list[str]]]
    left_out: list[tuple[str, str]] = field(default_factory=list)
    reached_twice: list[tuple[str, str]] = field(default_factory=list)


class _Walker:
    """Shared state of one folder walk: identities seen, files left out, paths reached twice."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirs: dict[tuple[int, int], str] = {}  # (dev, ino) -> id of the first path there
        self.files: dict[tuple[int, int], str] = {}
        self.left_out: list[tuple[str, str]] = []
        self.twice: list[tuple[str, str]] = []

    def rel(self, path: str | Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def leave(self, path: str | Path, reason: str) -> None:
        self.left_out.append((self.rel(path), reason))

    def claim(self, path: Path, table: dict[tuple[int, int], str]) -> bool:
        """Record ``path``'s identity in ``table``; False (noted) if it was reached before."""
        try:
            st = os.stat(path)  # follows symlinks: the identity of what the link points to
        except OSError as exc:
            self.leave(path, f"cannot be read ({exc.strerror or exc})")
            return False
        key = (st.st_dev, st.st_ino)
        if key in table:
            self.twice.append((self.rel(path), table[key]))
            return False
        table[key] = self.rel(path)
        return True

    def images(self, top: Path) -> list[str]:
        """Sorted ids of the image files below ``top`` (``top`` itself already claimed)."""
        found = []

        def unreadable(exc: OSError) -> None:
            self.leave(exc.filename, f"folder cannot be read ({exc.strerror})")

        for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable, followlinks=True):
            here = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                if name.startswith("."):
                    self.leave(here / name, "hidden folder")
                elif self.claim(here / name, self.dirs):
                    keep.append(name)
            dirnames[:] = keep  # os.walk descends only into the folders kept here
            # Real files first, so a symlink to a file of the same folder is the one left out.
            for name in sorted(filenames, key=lambda n: (os.path.islink(here / n), n)):
                path = here / name
                ext = os.path.splitext(name)[1].lower()
                if name.startswith("."):
                    self.leave(path, "hidden file")
                elif ext not in IMAGE_EXTENSIONS:
                    self.leave(path, f"unsupported format ({ext or 'no extension'})")
                elif self.claim(path, self.files):
                    found.append(self.rel(path))
        return sorted(found)

    def entries(self, folder: Path) -> list[Path]:
        """Visible subfolders of ``folder``; its visible files are left out (not in a class)."""
        dirs = []
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                self.leave(p, "hidden " + ("folder" if p.is_dir() else "file"))
            elif p.is_dir():
                dirs.append(p)
            else:
                self.leave(p, _LOOSE)
        return dirs


def _check_names(root: Path, names: list[str]) -> None:
    """Refuse class folders that are really misspelt split folders ('Train', 'validation')."""
    bad = sorted(n for n in names if n.lower() in _SPLIT_LIKE and n not in SPLIT_CODES)
    if bad:
        raise ValueError(
            f"{root} has folders {bad} that look like split folders, not classes; split folders "
            f"must be named exactly {list(SPLITS)} (lowercase): rename them, and put the class "
            "folders inside"
        )


def _classes(w: _Walker, folder: Path, dirs: list[Path] | None = None) -> dict[str, list[str]]:
    """{class: ids} of ``folder/<class>/...`` (``dirs``: its subfolders, if already listed);
    every class folder is claimed before any is walked, so a link from one class into another
    (or back up to the root) is pruned."""
    cdirs = [c for c in (w.entries(folder) if dirs is None else dirs) if w.claim(c, w.dirs)]
    classes = {}
    for cdir in cdirs:
        ids = w.images(cdir)
        if not ids:
            raise ValueError(
                f"class folder {cdir} contains no images (extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
            )
        classes[cdir.name] = ids
    if not classes:
        raise ValueError(
            f"{folder} has no class subfolders; expected {folder}/<class>/<image> "
            f"(optionally under {'/'.join(SPLITS)}/), or pass a CSV manifest instead"
        )
    return classes


def list_folder(root: Path) -> FolderListing:
    """Walk image folder ``root`` (an absolute path); ValueError naming the folder and the fix
    for layouts that cannot be read unambiguously."""
    w = _Walker(root)
    w.claim(root, w.dirs)
    tops = w.entries(root)
    split_dirs = [d.name for d in tops if d.name in SPLIT_CODES]
    if not split_dirs:
        _check_names(root, [d.name for d in tops])
        found = {"": _classes(w, root, tops)}
    else:
        others = sorted(d.name for d in tops if d.name not in SPLIT_CODES)
        if others:
            raise ValueError(
                f"{root} mixes split folders {split_dirs} with other folders {others}; put every "
                f"class folder under one of {list(SPLITS)}, or use no split folders at all"
            )
        if "train" not in split_dirs:
            raise ValueError(
                f"{root} has split folders {split_dirs} but no 'train' folder; add it"
            )
        splits = [s for s in SPLITS if s in split_dirs and w.claim(root / s, w.dirs)]
        found = {s: _classes(w, root / s) for s in splits}
    return FolderListing(root, found, w.left_out, w.twice)


def one_level_down(root: Path, names: list[str]) -> Path | None:
    """The folder the user probably meant when ``root`` has a single class folder that itself
    holds split folders or several folders (the data is one level down), else None."""
    if len(names) != 1:
        return None
    inner = root / names[0]
    if not inner.is_dir():
        return None
    subs = [p.name for p in inner.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(s.lower() in _SPLIT_LIKE for s in subs) or len(subs) >= 2:
        return inner
    return None
