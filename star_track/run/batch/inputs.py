"""Which videos a batch processes: files, folders (searched recursively, symlinked subfolders followed once),
glob patterns and ``.txt``/``.csv`` lists of paths, never the batch's own outputs; and where each one's outputs go
(the input tree mirrored)."""
from __future__ import annotations

import csv
import fnmatch
import glob
import os
from pathlib import Path
from typing import Iterable, Iterator

from ...io.claims import is_partial

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
                              ".wmv", ".flv", ".3gp"})
"""File extensions a folder or glob input is searched for."""
LIST_EXTENSIONS = frozenset({".txt", ".csv", ".lst"})
"""An input file with one of these extensions is a list of video paths (CSV: the first column)."""
def _read_list(path: Path) -> list[Path]:
    """Paths listed in a .txt (one per line, # comments) or .csv (first column; a header row is skipped)."""
    base = path.parent
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        cells = [row[0].strip() for row in csv.reader(text.splitlines()) if row and row[0].strip()]
        if cells and Path(cells[0]).suffix.lower() not in VIDEO_EXTENSIONS and not (base / cells[0]).exists():
            cells = cells[1:]  # a header ("path", "input", ...)
    else:
        cells = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [p if p.is_absolute() else base / p for p in map(Path, cells)]


def as_input_list(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str | os.PathLike]:
    """One str or PathLike is one input (iterating a str would take each character as a path, and "/" would
    scan the whole filesystem)."""
    if isinstance(inputs, (str, bytes, os.PathLike)):
        return [os.fsdecode(inputs)]
    return list(inputs)


def _dir_key(path: str) -> tuple[int, int] | None:
    """A folder's identity (device, inode), through symlinks; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _walk_dirs(root: str, seen: set[tuple[int, int]], hidden: bool = True) -> Iterator[str]:
    """``root`` and every folder under it, symlinked folders followed, but each real folder entered once: a
    symlink loop (``a/loop -> ..``) ends instead of recursing forever, and a folder already in ``seen`` (the
    output folder) is left out. ``hidden=False`` skips dot-folders (glob's ``**``)."""
    key = _dir_key(root)
    if key is None or key in seen:
        return
    seen.add(key)
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        yield dirpath
        keep = []
        for d in sorted(dirnames):
            k = _dir_key(os.path.join(dirpath, d))
            if k is not None and k not in seen and (hidden or not d.startswith(".")):
                seen.add(k)
                keep.append(d)
        dirnames[:] = keep


def _files_in(folder: str) -> list[str]:
    try:
        return sorted(os.path.join(folder, e.name) for e in os.scandir(folder) if not e.is_dir())
    except OSError:
        return []


def _glob_base(pattern: str) -> tuple[str, int]:
    """The folder a glob pattern searches from (its parts before the first wildcard) and that part's index."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return (str(Path(*parts[:first])) if first else os.curdir), first


def _glob(pattern: str, seen: set[tuple[int, int]]) -> Iterator[str]:
    """glob.glob(pattern, recursive=True), but loop-safe: ``**`` follows symlinked folders once each (Python's
    glob follows a symlink loop until the path is too long) and skips the folders in ``seen``."""
    base, first = _glob_base(pattern)
    parts = Path(pattern).parts
    relative = not first

    def expand(folder: str, rest: tuple[str, ...]) -> Iterator[str]:
        if not rest:
            yield folder
            return
        head, tail = rest[0], rest[1:]
        if head == "**":
            for d in _walk_dirs(folder, set(seen), hidden=False):
                yield from expand(d, tail)
                if not tail:  # a trailing ** matches the files too
                    yield from (f for f in _files_in(d) if not os.path.basename(f).startswith("."))
        elif glob.has_magic(head):
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                return
            for name in names:
                if fnmatch.fnmatch(name, head) and (head.startswith(".") or not name.startswith(".")):
                    yield from expand(os.path.join(folder, name), tail)
        elif os.path.lexists(os.path.join(folder, head)):
            yield from expand(os.path.join(folder, head), tail)

    for path in expand(base, parts[first:]):
        yield os.path.relpath(path) if relative else path


def _is_video(path: str) -> bool:
    name = os.path.basename(path)
    if is_partial(name):  # a batch's own staged output
        return False
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS and os.path.isfile(path)


def _inside(path: str, folder: str) -> bool:
    """True when the real path of ``path`` is ``folder`` or under it."""
    p, f = os.path.realpath(path), os.path.realpath(folder)
    return p == f or p.startswith(f.rstrip(os.sep) + os.sep)


def find_videos(inputs: str | os.PathLike | Iterable[str | os.PathLike], *, out_dir: str | os.PathLike | None = None,
                exclude: Iterable[str] = ()) -> list[tuple[Path, Path]]:
    """Expand ``inputs`` (files, folders searched recursively for :data:`VIDEO_EXTENSIONS`, glob patterns,
    ``.txt``/``.csv`` lists of paths; one str or PathLike is one input) into ``(video, mirror root)`` pairs, in
    order, without duplicates (a file reached by two paths, e.g. through a symlink, counts once).

    Folders and ``**`` follow symlinked subfolders, each real folder once (a symlink loop ends). A path that does
    not exist is kept (it becomes a failed row); a folder or glob that holds no video adds nothing. The mirror
    root is the folder for a folder input, else the video's own folder.

    The batch's own outputs are never inputs: a folder or glob search leaves out ``out_dir`` (unless the search
    starts inside it), the paths in ``exclude`` (the outputs the manifest records) and staged partial files.
    Files named one by one (or in a list) are taken as given.
    """
    out = os.fspath(out_dir) if out_dir is not None else None
    skip = {os.path.abspath(e) for e in exclude}

    def pruned(root: str) -> set[tuple[int, int]]:
        """The folders a search from ``root`` does not enter: the output folder, unless ``root`` is in it."""
        key = _dir_key(out) if out is not None and not _inside(root, out) else None
        return {key} if key is not None else set()

    def searched(paths: Iterable[str], root: str) -> list[str]:
        return [v for v in paths if _is_video(v) and os.path.abspath(v) not in skip
                and (out is None or _inside(root, out) or not _inside(v, out))]

    found: list[tuple[Path, Path]] = []
    for item in as_input_list(inputs):
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            files = [f for d in _walk_dirs(s, pruned(s)) for f in _files_in(d)]
            found += [(Path(v), p) for v in sorted(searched(files, s))]
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            found += [(v, v.parent) for v in _read_list(p)]
        elif not p.exists() and glob.has_magic(s):
            base = _glob_base(s)[0]
            found += [(Path(v), Path(v).parent) for v in sorted(set(searched(_glob(s, pruned(base)), base)))]
        else:
            found.append((p, p.parent))
    seen: set[str] = set()
    unique = []
    for v, root in found:
        key = os.path.realpath(v)
        if key not in seen:
            seen.add(key)
            unique.append((Path(os.path.abspath(v)), Path(os.path.abspath(root))))
    return unique


def mirror_paths(videos: list[tuple[Path, Path]]) -> list[Path]:
    """Each video's path relative to the common folder of all mirror roots (the tree under ``out_dir``)."""
    if not videos:
        return []
    try:
        common = Path(os.path.commonpath([str(root) for _, root in videos]))
    except ValueError:  # different drives (Windows): no common folder
        return [Path(v.name) for v, _ in videos]
    return [v.relative_to(common) for v, _ in videos]
