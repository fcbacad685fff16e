"""Batch processing: many videos, every core, or a Ray cluster; resumable, idempotent, one manifest.

:func:`run_batch` (and ``star-track batch``) runs :func:`~star_track.pipeline.process_video` once per input
video and writes, under ``out_dir`` mirroring the input tree, ``NAME.<format>`` (landmarks) and, when asked,
``NAME.annotated.mp4``, plus one JSON line per video in ``out_dir/manifest.jsonl``.

* **Resumable and idempotent.** A video is skipped when the manifest's latest row for it says ``ok`` with the
  same settings hash (model file, tracker options, output format and options, star-track version), the input
  has the same size and modification time, and every output is there with the size and sha256 the row
  recorded (checked, not assumed). Anything else is redone and its outputs replaced.
* **Atomic.** Each output is written to a hidden ``.NAME.partial-PID.EXT`` beside its final name (the writers'
  own partial files inside it) and renamed into place only when the whole video is done; the manifest row is
  appended (and fsync'd) after that. A batch killed at any point leaves complete outputs or none under final
  names; partial files of dead processes are removed by the next run
  (:func:`~star_track.io.claims.clean_stale_partials`).
* **Failure isolation.** An unreadable or corrupt video is a ``failed`` row with a one-line ``error`` and the
  batch goes on; a worker process that dies (a crash in native code) is replaced and its video tried again
  once, then recorded as failed.
* **Parallelism.** ``workers`` processes (default: the usable cores divided by the engine's threads, i.e. N
  workers x 1 ONNX Runtime thread), each with one :class:`~star_track.tracker.Tracker` built once and reused
  (reset per video). ``ray_address`` runs the same per-video task (:func:`run_task`) as Ray tasks instead:
  Ray does placement, retries (``max_retries``) and back-pressure.
* **Never the user's files.** An existing output file the manifest does not record (written or claimed) is
  never replaced: that video is a failed row saying so. The batch's own outputs are never inputs.

Manifest rows (``manifest.jsonl``, one JSON object per line; the latest row of an input wins, and the file is
compacted to one row per input at the start of each run): ``input``, ``outputs`` (kind -> ``{"path", "bytes",
"sha256"}``), ``frames``, ``frames_with_faces``, ``face_records``, ``max_faces``, ``video_seconds``, ``seconds``,
``status`` (``ok``, ``failed``, ``interrupted``; :func:`run_batch` also returns ``skipped`` rows, which are not
written; ``started`` rows are written before a video is dispatched), ``error``, ``settings`` (hash),
``input_bytes``, ``input_mtime_ns``, ``worker`` (host:pid), ``finished`` (UTC ISO time), ``claimed`` (kind ->
output path the batch owns).
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import fnmatch
import glob
import hashlib
import itertools
import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .errors import ClusterError, MissingDependency, OutputError, StarTrackError, VideoError
from .hashing import sha256_file

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
                              ".wmv", ".flv", ".3gp"})
"""File extensions a folder or glob input is searched for."""
LIST_EXTENSIONS = frozenset({".txt", ".csv", ".lst"})
"""An input file with one of these extensions is a list of video paths (CSV: the first column)."""
MANIFEST = "manifest.jsonl"
FORMATS = ("csv", "json", "npz", "parquet")
CLUSTER_HINT = 'pip install "star-track[cluster]"'


class BatchWarning(UserWarning):
    """A problem :func:`run_batch` worked around (a bad manifest line, --workers above the cores)."""


def _warn(message: str, on_warning: Callable[[str], Any] | None) -> None:
    if on_warning is not None:
        on_warning(message)
    else:
        import warnings

        warnings.warn(message, BatchWarning, stacklevel=3)


class BatchRows(list):
    """The rows :func:`run_batch` returns (a list of dicts), plus :attr:`signal`: the SIGINT/SIGTERM that
    stopped the batch early, else None."""

    signal: int | None = None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self if r["status"] == "failed"]


@dataclass(frozen=True)
class VideoTask:
    """One video's work, as sent to a worker process or a Ray task (plain, picklable values)."""

    input: str
    outputs: dict[str, str]
    """Output kind (``landmarks``, ``video``) -> final path."""
    settings: str
    tracker_kwargs: dict[str, Any]
    video_options: dict[str, Any] = field(default_factory=dict)
    """``codec``, ``crf``, ``preset``, ``audio`` (bool), ``draw`` (bool), ``ellipses`` (bool)."""


# -- inputs --------------------------------------------------------------------------------------------------
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


def _as_list(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str | os.PathLike]:
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
    if name.startswith(".") and ".partial-" in name:  # a batch's own staged output
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
    for item in _as_list(inputs):
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


def _mirror(videos: list[tuple[Path, Path]]) -> list[Path]:
    """Each video's path relative to the common folder of all mirror roots (the tree under ``out_dir``)."""
    if not videos:
        return []
    try:
        common = Path(os.path.commonpath([str(root) for _, root in videos]))
    except ValueError:  # different drives (Windows): no common folder
        return [Path(v.name) for v, _ in videos]
    return [v.relative_to(common) for v, _ in videos]


# -- settings ------------------------------------------------------------------------------------------------
def settings_hash(tracker_kwargs: dict[str, Any], landmarks_format: str, video_options: dict[str, Any] | None,
                  ) -> str:
    """A short hash of everything that changes the outputs: the model file's bytes, the detector (file bytes
    when a path), the tracker options, the output format and the annotated-video options, star-track's
    version."""
    from . import __version__
    from .model.registry import resolve_model

    kw = dict(tracker_kwargs)
    model = resolve_model(kw.pop("model", None))
    kw["model_sha256"] = sha256_file(model)
    det = kw.get("detector", "full")
    if det not in ("full", "short") and Path(str(det)).is_file():
        kw["detector"] = sha256_file(det)
    payload = {"tracker": kw, "format": landmarks_format, "video": video_options, "version": __version__}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(threads: int | None = None) -> int:
    """Usable cores // the engine's threads per worker (at least 1): the CPU used fully, not oversubscribed."""
    return max(1, usable_cores() // max(1, threads or 1))


# -- the per-video task (runs in a worker process or a Ray task) ----------------------------------------------
_TRACKERS: dict[str, Any] = {}
"""This process's Tracker per settings hash: models are loaded once per worker."""
_STOP: Any = None
"""In a pool worker: the batch's stop event (set by the parent on SIGINT/SIGTERM)."""
_PARENT: int | None = None
"""In a pool worker: the parent's pid; the current video stops when the parent is gone (SIGKILL)."""
_BUSY = threading.Event()
"""Set while :func:`run_task` runs (an orphaned pool worker exits once it is clear)."""


def _init_worker(stop_event: Any, parent: int) -> None:
    """Pool worker set-up: Ctrl-C at the terminal reaches the whole process group, but only the parent acts
    on it (through ``stop_event``); one OpenCV thread, as the engine has one."""
    global _STOP, _PARENT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _STOP, _PARENT = stop_event, parent
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="star-track-parent-watch").start()
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)


def _watch_parent(parent: int) -> None:
    """A pool worker whose parent died (SIGKILL) would wait for work forever: once its current video has
    stopped (at the next frame, its partial files removed), it exits."""
    while os.getppid() == parent:
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while _BUSY.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(0)


def _should_stop() -> bool:
    if _STOP is not None and _STOP.is_set():
        return True
    return _PARENT is not None and os.getppid() != _PARENT


def _tracker_for(task: VideoTask):
    tracker = _TRACKERS.get(task.settings)
    if tracker is None:
        import warnings

        from .tracker import NonFiniteOutputWarning, Tracker

        warnings.simplefilter("ignore", NonFiniteOutputWarning)  # counted per video instead
        tracker = Tracker(**task.tracker_kwargs)
        _TRACKERS[task.settings] = tracker
    return tracker


def _staged(final: Path) -> Path:
    """The hidden name an output is written under until it is complete (removed by the next run when this
    process dies)."""
    return final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if isinstance(e, StarTrackError) else f"{type(e).__name__}: {text}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_task(task: VideoTask) -> dict[str, Any]:
    """Process one video (the unit of work of both the process pool and Ray); never raises for a bad video:
    returns its manifest row (``status`` ``ok``, ``failed`` or ``interrupted``)."""
    _BUSY.set()
    try:
        return _run_task(task)
    finally:
        _BUSY.clear()


def _run_task(task: VideoTask) -> dict[str, Any]:
    from .pipeline import StopFlag, process_video
    from .io.sink import VideoSink
    from .io.source import VideoSource

    t0 = time.perf_counter()
    row: dict[str, Any] = {"input": task.input, "outputs": {}, "frames": 0, "frames_with_faces": 0,
                           "face_records": 0, "max_faces": 0, "video_seconds": 0.0, "seconds": 0.0,
                           "status": "failed", "error": None, "settings": task.settings,
                           "worker": f"{socket.gethostname()}:{os.getpid()}", "claimed": dict(task.outputs)}
    with contextlib.suppress(OSError):
        st = os.stat(task.input)
        row["input_bytes"], row["input_mtime_ns"] = st.st_size, st.st_mtime_ns
    finals = {k: Path(p) for k, p in task.outputs.items()}
    staged = {k: _staged(p) for k, p in finals.items()}
    opts = task.video_options
    counts = {"records": 0, "max": 0, "stopped": False}

    def on_frame(_vf, faces) -> bool:
        counts["records"] += len(faces)
        counts["max"] = max(counts["max"], len(faces))
        if _should_stop():
            counts["stopped"] = True
        return bool(counts["stopped"])

    try:
        if not os.path.isfile(task.input):
            raise VideoError(f"{task.input}: no such file" if not os.path.exists(task.input)
                             else f"{task.input}: not a file")
        for p in finals.values():
            if os.path.exists(p) and os.path.samefile(p, task.input):
                raise VideoError(f"{p}: output would overwrite the input")
            p.parent.mkdir(parents=True, exist_ok=True)
        from .io.landmarks import open_landmark_writer

        with VideoSource(task.input) as source:
            tracker = _tracker_for(task)
            tracker.reset()
            tracker.fps = source.fps  # as a Tracker built for this video
            tracker.nonfinite_faces = 0
            writer = sink = None
            try:
                writer = open_landmark_writer(staged["landmarks"], tracker.scheme.num_points, tracker.scheme.name,
                                              source.fps, overwrite=True)
                if "video" in staged:
                    sink = VideoSink(staged["video"], source.fps, source.size, overwrite=True,
                                     codec=opts.get("codec"), crf=opts.get("crf"), preset=opts.get("preset"),
                                     audio_from=source if opts.get("audio", True) else None)
                summary = process_video(source, tracker, sink=sink, landmark_writer=writer,
                                        draw=opts.get("draw", True), ellipses=opts.get("ellipses", False),
                                        on_frame=on_frame, stop=StopFlag())
            finally:
                for out in (writer, sink):
                    if out is not None:
                        out.close()
        row.update(frames=summary.frames, frames_with_faces=summary.frames_with_faces,
                   face_records=counts["records"], max_faces=counts["max"],
                   video_seconds=round(summary.frames / source.fps, 4))
        if summary.interrupted or counts["stopped"]:
            row.update(status="interrupted", error="stopped before the end of the video")
        else:
            for k, final in finals.items():
                if not staged[k].is_file():
                    raise VideoError(f"{final}: nothing was written ({summary.frames} frames)")
            for k, final in finals.items():
                os.replace(staged[k], final)
                row["outputs"][k] = {"path": str(final), "bytes": final.stat().st_size,
                                     "sha256": sha256_file(final)}
            notes = []
            if summary.ended_early:
                notes.append(f"the file ended early: read {source.frames_read} of {source.frame_count} frames")
            if tracker.nonfinite_faces:
                notes.append(f"{tracker.nonfinite_faces} face(s) left out: non-finite model output")
            row.update(status="ok", error="; ".join(notes) or None)
    except Exception as e:  # noqa: BLE001 - failure isolation: one bad video is one failed row
        row.update(status="failed", error=_one_line(e), outputs={})
    finally:
        for p in staged.values():
            with contextlib.suppress(OSError):
                p.unlink()
    row["seconds"] = round(time.perf_counter() - t0, 4)
    row["finished"] = _now()
    return row


# -- manifest ------------------------------------------------------------------------------------------------
def _bad_row(row: Any) -> str | None:
    """Why a parsed manifest line is not a usable row (None when it is)."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    if not isinstance(row.get("input"), str) or not row["input"]:
        return 'no "input" path'
    if not isinstance(row.get("status"), str):
        return 'no "status"'
    for key in ("outputs", "claimed"):
        recs = row.get(key, {})
        if not isinstance(recs, dict):
            return f'"{key}" is not an object'
        for rec in recs.values():
            path = rec.get("path") if isinstance(rec, dict) and key == "outputs" else rec
            if not isinstance(path, str):
                return f'"{key}" holds a path that is not a string'
    try:
        json.dumps(row, allow_nan=False)
    except ValueError:
        return "a NaN or infinite number"
    return None


def read_manifest(out_dir: str | os.PathLike, on_warning: Callable[[str], Any] | None = None) -> dict[str, dict]:
    """The latest manifest row per input (absolute path) in ``out_dir/manifest.jsonl``.

    A line that is not a manifest row (not JSON, not UTF-8, not an object with an ``input`` path and a
    ``status``) is ignored with a warning naming the file and line (``on_warning``, else
    :class:`BatchWarning`); the next run's compaction drops it. A torn last line (a killed run) is ignored
    silently.
    """
    rows: dict[str, dict] = {}
    path = Path(out_dir) / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return rows
    except IsADirectoryError:
        raise OutputError(f"{path}: is a folder, not the batch's manifest") from None
    except OSError as e:
        raise OutputError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    lines = data.split(b"\n")
    bad = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            why = _bad_row(row)
        except UnicodeDecodeError:
            why = "not UTF-8 text"
        except ValueError:
            why = "not JSON"
        if why is None:
            rows[row["input"]] = row
        elif number < len(lines):  # the last piece has no newline: a torn line, not garbage
            bad.append(f"{path}:{number}: {why}")
    for message in bad[:5]:
        _warn(f"{message}; line ignored", on_warning)
    if len(bad) > 5:
        _warn(f"{path}: {len(bad) - 5} more bad line(s) ignored", on_warning)
    return rows


def _write_manifest(out_dir: Path, rows: Iterable[dict]) -> None:
    """Rewrite the manifest atomically (temp + rename)."""
    path = out_dir / MANIFEST
    tmp = out_dir / f".{MANIFEST}.partial-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"{path}: cannot write the manifest ({e.strerror or e})") from None


def _append_manifest(f, *rows: dict) -> None:
    if not rows:
        return
    f.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))
    f.flush()
    os.fsync(f.fileno())


def _recorded_outputs(rows: dict[str, dict]) -> set[str]:
    """Every output path the manifest records as the batch's own (written, or claimed before writing)."""
    paths: set[str] = set()
    for row in rows.values():
        paths.update(rec["path"] for rec in (row.get("outputs") or {}).values())
        paths.update((row.get("claimed") or {}).values())
    return {os.path.abspath(p) for p in paths}


def is_complete(row: dict | None, task: VideoTask) -> bool:
    """True when ``row`` shows ``task`` done with the same settings and input, and every output is on disk
    with the recorded size and sha256."""
    if not row or row.get("status") != "ok" or row.get("settings") != task.settings:
        return False
    try:
        st = os.stat(task.input)
    except OSError:
        return False
    if (row.get("input_bytes"), row.get("input_mtime_ns")) != (st.st_size, st.st_mtime_ns):
        return False
    outs = row.get("outputs") or {}
    if set(outs) != set(task.outputs):
        return False
    for kind, final in task.outputs.items():
        rec = outs[kind]
        if rec.get("path") != final:
            return False
        try:
            if os.stat(final).st_size != rec.get("bytes") or sha256_file(final) != rec.get("sha256"):
                return False
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _lock(out_dir: Path):
    """One batch at a time per output folder."""
    try:
        f = open(out_dir / ".batch.lock", "w")
    except OSError as e:  # a read-only folder, a full disk: say which folder, not the lock file's OSError
        raise OutputError(f"{out_dir}: cannot write in the output folder ({e.strerror or e})") from None
    try:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock
            pass
        except OSError:
            raise OutputError(f"{out_dir}: another star-track batch is writing this folder") from None
        yield
    finally:
        f.close()


# -- the batch -----------------------------------------------------------------------------------------------
def plan(inputs: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
         landmarks_format: str = "csv", annotated_video: bool = False, settings: str = "",
         tracker_kwargs: dict[str, Any] | None = None, video_options: dict[str, Any] | None = None,
         exclude: Iterable[str] = ()) -> list[VideoTask]:
    """The tasks of a batch: one per input video, outputs under ``out_dir`` mirroring the input tree.

    Folder and glob searches never take the batch's own outputs as inputs: ``out_dir`` (when it is inside a
    searched folder) and the paths in ``exclude`` (the outputs its manifest records) are left out."""
    out = Path(os.path.abspath(out_dir))
    videos = find_videos(inputs, out_dir=out, exclude=exclude)
    tasks: list[VideoTask] = []
    # Output names are unique (case-folded, for case-insensitive file systems) and never an input's name:
    # a.mp4 -> a.csv; then a.mkv -> a.mkv.csv; then a.mkv.mp4 (its stem a.mkv is taken) -> a.mkv.mp4.csv; then
    # NAME.2.csv, NAME.3.csv, ...
    taken = {os.path.abspath(v).casefold() for v, _ in videos}
    for (video, _), rel in zip(videos, _mirror(videos)):
        base = out / rel.parent
        for stem in itertools.chain((rel.stem, rel.name), (f"{rel.name}.{n}" for n in itertools.count(2))):
            outputs = {"landmarks": str(base / f"{stem}.{landmarks_format}")}
            if annotated_video:
                outputs["video"] = str(base / f"{stem}.annotated.mp4")
            if not any(p.casefold() in taken for p in outputs.values()):
                break
        taken.update(p.casefold() for p in outputs.values())
        tasks.append(VideoTask(str(video), outputs, settings, dict(tracker_kwargs or {}), dict(video_options or {})))
    return tasks


def run_batch(inputs: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
              workers: int | None = None,
              ray_address: str | None = None, tracker_kwargs: dict[str, Any] | None = None,
              landmarks_format: str = "csv", annotated_video: bool = False,
              video_options: dict[str, Any] | None = None, max_retries: int = 2, num_gpus: float | None = None,
              on_result: Callable[[dict], Any] | None = None, progress: bool = False,
              on_warning: Callable[[str], Any] | None = None, ray_timeout: float = 30.0) -> BatchRows:
    """Track every video in ``inputs`` into ``out_dir``; return the manifest rows (skipped videos included).

    Args:
        inputs: files, folders, glob patterns, ``.txt``/``.csv`` lists of paths (:func:`find_videos`); one str
            or PathLike is one input.
        out_dir: output folder (created); outputs mirror the input tree, plus ``manifest.jsonl``.
        workers: local worker processes (default :func:`default_workers`; at most :func:`usable_cores`, with a
            warning); with Ray, the CPUs of a local runtime started here.
        ray_address: run on Ray: ``"local"`` (a runtime started here, or the one already initialised in this
            process), ``"auto"`` (the running cluster, e.g. inside ``ray job submit``) or ``"ray://host:10001"``.
        tracker_kwargs: keyword arguments of :class:`~star_track.tracker.Tracker` (``threads`` defaults to 1).
        landmarks_format: ``csv``, ``json``, ``npz`` or ``parquet``.
        annotated_video: also write ``NAME.annotated.mp4``; ``video_options``: ``codec``, ``crf``, ``preset``,
            ``audio`` (copy the input's audio, default True), ``draw`` (default True), ``ellipses``.
        max_retries: Ray's retries of a task whose worker died; locally, a video whose worker process died is
            tried once more.
        ray_timeout: seconds to wait for the cluster at ``ray_address`` to answer (:func:`check_ray_address`).
        num_gpus: GPUs each Ray task requests (default: 1 for the ``tensorrt`` and ``torch`` engines, else 0).
        on_result: called with each new row as it arrives (the CLI's progress bar).
        progress: show a progress bar over videos on stderr (on a terminal).
        on_warning: called with each one-line warning (a bad manifest line, ...); default: a
            :class:`BatchWarning`.

    Raises:
        StarTrackError: bad settings (unknown format, missing model), no video found, another batch is using
            ``out_dir``, ray not installed. Problems with single videos are rows, never exceptions.
    """
    inputs = _as_list(inputs)
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if workers > usable_cores():  # more processes than cores only adds memory and switching
            _warn(f"{workers} workers asked for, but {usable_cores()} cores are usable: using {usable_cores()}",
                  on_warning)
            workers = usable_cores()
    if landmarks_format not in FORMATS:
        raise VideoError(f"unsupported landmarks format {landmarks_format!r} (use {', '.join(FORMATS)})")
    if landmarks_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise MissingDependency('.parquet needs pyarrow (pip install "star-track[parquet]")') from None
    kwargs = {"threads": 1, **(tracker_kwargs or {})}
    vopts = {"audio": True, "draw": True, "ellipses": False, **(video_options or {})} if annotated_video else {}
    settings = settings_hash(kwargs, landmarks_format, vopts or None)
    out = Path(os.path.abspath(out_dir))
    # Outputs of earlier runs (when out_dir is, or is inside, an input folder) are not inputs; read again, with
    # warnings, under the lock.
    recorded = _recorded_outputs(read_manifest(out, lambda _: None)) if out.is_dir() else set()
    tasks = plan(inputs, out, landmarks_format=landmarks_format, annotated_video=annotated_video,
                 settings=settings, tracker_kwargs=kwargs, video_options=vopts, exclude=recorded)
    if not tasks:
        raise VideoError(f"no videos found in {', '.join(map(str, inputs)) or '(no inputs)'}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    with _lock(out):
        return _run_locked(tasks, out, workers=workers, ray_address=ray_address, max_retries=max_retries,
                           num_gpus=num_gpus, on_result=on_result, progress=progress, on_warning=on_warning,
                           ray_timeout=ray_timeout)


def _run_locked(tasks: list[VideoTask], out: Path, *, workers, ray_address, max_retries, num_gpus, on_result,
                progress, on_warning, ray_timeout) -> BatchRows:
    from .io.claims import clean_stale_partials
    from .pipeline import StopFlag

    previous = read_manifest(out, on_warning)
    _write_manifest(out, previous.values())  # compacted: one row per input
    for folder in {Path(p).parent for t in tasks for p in t.outputs.values()}:
        clean_stale_partials(folder)
    owned = _recorded_outputs(previous)
    results: dict[str, dict] = {}
    pending, refused = [], []
    for t in tasks:
        if is_complete(previous.get(t.input), t):
            results[t.input] = {**previous[t.input], "status": "skipped"}
            continue
        # A file the manifest does not record is the user's (`batch d --out-dir d` beside d/talk.csv): never
        # replaced.
        foreign = [p for p in t.outputs.values() if os.path.lexists(p) and os.path.abspath(p) not in owned]
        if foreign:
            row = _failed_row(t, f"{foreign[0]}: exists and is not an output recorded in {out / MANIFEST}; not "
                                 "replaced (move it away, or choose another --out-dir)")
            row["claimed"] = {k: p for k, p in t.outputs.items() if os.path.abspath(p) in owned}
            refused.append(row)
        else:
            pending.append(t)
    rows = BatchRows()
    # Ray is connected before the batch defers Ctrl-C (StopFlag), so a connection that waits can be interrupted.
    ray_started = _connect_ray(ray_address, workers, ray_timeout) if pending and ray_address else False
    try:
        with open(out / MANIFEST, "a", encoding="utf-8") as manifest, StopFlag() as stop, \
                _progress(progress, len(tasks), len(tasks) - len(pending) - len(refused)) as advance:
            # Claimed before any worker writes: a batch killed after an output's rename, before its row, still
            # knows the file as its own on the next run.
            _append_manifest(manifest, *({"input": t.input, "outputs": {}, "claimed": dict(t.outputs),
                                          "status": "started", "error": None, "settings": t.settings,
                                          "finished": None} for t in pending))

            def record(row: dict) -> None:
                results[row["input"]] = row
                if row["status"] in ("ok", "failed"):
                    _append_manifest(manifest, row)
                advance(row)
                if on_result is not None:
                    on_result(row)

            for row in refused:
                record(row)
            if pending:
                if ray_address:
                    _run_ray(pending, max_retries, num_gpus, record, stop)
                else:
                    _run_pool(pending, workers or default_workers(pending[0].tracker_kwargs.get("threads")), record,
                              stop)
            rows.signal = stop.signum
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    rows.extend(results[t.input] for t in tasks if t.input in results)
    return rows


def _run_pool(tasks: list[VideoTask], workers: int, record: Callable[[dict], None], stop) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # the parent may hold threads (ONNX Runtime, FFmpeg): no fork
    event = ctx.Event()
    attempts = {t.input: 0 for t in tasks}
    todo = list(tasks)
    while todo and stop.signum is None:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(event, os.getpid()))
        broken: list[VideoTask] = []
        try:
            futures: dict[Future, VideoTask] = {pool.submit(run_task, t): t for t in todo}
            todo = []
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, timeout=0.2, return_when=FIRST_COMPLETED)
                for f in done:
                    t = futures[f]
                    if f.cancelled():
                        continue
                    try:
                        record(f.result())
                    except BrokenProcessPool:
                        broken.append(t)
                    except Exception as e:  # noqa: BLE001 - e.g. a result that could not be pickled
                        record(_failed_row(t, _one_line(e)))
                if stop.signum is not None and not event.is_set():
                    event.set()  # running videos stop after their current frame
                    for f in waiting:
                        f.cancel()
        finally:
            if stop.signum is not None:
                event.set()
            pool.shutdown(wait=True, cancel_futures=True)
        for t in broken:
            attempts[t.input] += 1
            if attempts[t.input] >= 2:
                record(_failed_row(t, "the worker process died while processing it (twice)"))
            else:
                todo.append(t)


def _failed_row(t: VideoTask, error: str) -> dict:
    row: dict[str, Any] = {"input": t.input, "outputs": {}, "frames": 0, "frames_with_faces": 0,
                           "face_records": 0, "max_faces": 0, "video_seconds": 0.0, "seconds": 0.0,
                           "status": "failed", "error": error, "settings": t.settings, "worker": None,
                           "finished": _now(), "claimed": dict(t.outputs)}
    return row


def _ray_task(task: VideoTask) -> dict[str, Any]:
    """:func:`run_task` as Ray runs it (the module-level Tracker cache lives on in Ray's reused workers)."""
    return run_task(task)


def _connect_ray(address: str, workers: int | None, timeout: float) -> bool:
    """Connect to (or start) the Ray runtime ``address`` names; True when this call did (and shuts it down)."""
    try:
        import ray
    except ImportError:
        raise MissingDependency(f"--ray needs ray: {CLUSTER_HINT}") from None
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(num_cpus=workers or default_workers(), include_dashboard=False, log_to_driver=False)
    else:
        check_ray_address(address, timeout)
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray's errors, one line naming what was asked for
            raise ClusterError(f"ray {address}: cannot connect ({_one_line(e).splitlines()[0]})") from None
    return True


_GCS_CHECK = ("import sys, ray._raylet as r; "
              "r.GcsClient(address=sys.argv[1]).get_all_node_info(timeout=float(sys.argv[2]))")


def check_ray_address(address: str, timeout: float = 30.0) -> None:
    """Raise :class:`~star_track.errors.ClusterError`, naming ``address`` as given, unless a Ray cluster
    answers there within ``timeout`` seconds.

    ``ray.init`` alone waits for many minutes when nothing answers, cannot be interrupted, then ends the whole
    process from native code naming the address it resolved (``127.0.0.1`` becomes the host's IP). Here: a TCP
    connect (refused at once, or ``timeout``), then, for a cluster (GCS) address, one GCS request in a child
    process that is killed at the deadline (or on Ctrl-C) - a port that accepts connections is not yet Ray."""
    import subprocess
    import sys

    deadline = time.monotonic() + timeout
    client = address.startswith("ray://")
    try:
        if client:
            target = address[len("ray://"):]
        else:
            from ray._private.services import canonicalize_bootstrap_address_or_die

            target = canonicalize_bootstrap_address_or_die(address)  # "auto": RAY_ADDRESS or the running one
        host, _, port = target.rpartition(":")
        host, port_number = host.strip("[]"), int(port.split("/")[0])
    except Exception as e:  # noqa: BLE001 - a bad address, or "auto" with no cluster
        raise ClusterError(f"ray {address}: {_one_line(e).splitlines()[0]}") from None
    where = address if target == address else f"{address} ({target})"
    try:
        with socket.create_connection((host, port_number), timeout=timeout):
            pass
    except socket.timeout:
        raise ClusterError(f"ray {where}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise ClusterError(f"ray {where}: cannot connect ({e.strerror or e})") from None
    if client:
        return
    left = max(1.0, deadline - time.monotonic())
    try:
        r = subprocess.run([sys.executable, "-c", _GCS_CHECK, target, str(left)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=left)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"ray {where}: the port is open but no Ray cluster answered within {timeout:g} s") \
            from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise ClusterError(f"ray {where}: not a Ray cluster, or it failed to answer ({last})")


def _run_ray(tasks: list[VideoTask], max_retries: int, num_gpus: float | None, record: Callable[[dict], None],
             stop) -> None:
    import ray

    threads = tasks[0].tracker_kwargs.get("threads") or 1
    engine = str(tasks[0].tracker_kwargs.get("engine", "auto"))
    gpus = num_gpus if num_gpus is not None else (1.0 if engine in ("tensorrt", "torch") else 0.0)
    remote = ray.remote(_ray_task).options(num_cpus=threads, num_gpus=gpus, max_retries=max_retries)
    refs = {remote.remote(t): t for t in tasks}
    waiting = list(refs)
    cancelled = False
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1, timeout=0.2)
        for ref in done:
            try:
                record(ray.get(ref))
            except Exception as e:  # noqa: BLE001 - a task that died max_retries + 1 times, or cancelled
                if not cancelled:
                    record(_failed_row(refs[ref], f"ray: {_one_line(e).splitlines()[0]}"))
        if stop.signum is not None and not cancelled:
            cancelled = True
            for ref in waiting:
                ray.cancel(ref)
            waiting = []


@contextlib.contextmanager
def _progress(enabled: bool, total: int, skipped: int):
    """``advance(row)``: a rich progress bar over videos (with the frames done) on stderr, on a terminal."""
    if not enabled:
        yield lambda row: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    console = Console(stderr=True)
    columns = [TextColumn("videos"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[frames]} frames"),
               TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not console.is_terminal) as prog:
        bar = prog.add_task("videos", total=total, completed=skipped, frames=0, failed=0)
        state = {"frames": 0, "failed": 0}

        def advance(row: dict) -> None:
            state["frames"] += int(row.get("frames") or 0)
            state["failed"] += row["status"] == "failed"
            prog.update(bar, advance=1, frames=state["frames"], failed=state["failed"])

        yield advance


def summary_table(rows: Sequence[dict], max_rows: int = 30):
    """A rich Table: one line per video that is not plain ``ok``/``skipped`` (and all when there are few),
    then the totals."""
    from rich.table import Table

    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    table = Table(title="star-track batch", show_lines=False)
    for col, just in (("video", "left"), ("status", "left"), ("frames", "right"), ("with faces", "right"),
                      ("seconds", "right"), ("note", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    shown = list(rows) if len(rows) <= max_rows else [r for r in rows if r["status"] not in ("ok", "skipped")
                                                      or (r["frames"] and not r["frames_with_faces"])]
    style = {"ok": "green", "skipped": "dim", "failed": "red", "interrupted": "yellow"}
    for r in shown[:max_rows]:
        note = r.get("error") or ("no face found" if r.get("frames") and not r.get("frames_with_faces") else "")
        table.add_row(Path(r["input"]).name, f"[{style.get(r['status'], '')}]{r['status']}",
                      str(r.get("frames", 0)), str(r.get("frames_with_faces", 0)), f"{r.get('seconds', 0):.1f}",
                      note)
    if len(shown) > max_rows:
        table.add_row(f"... {len(shown) - max_rows} more (see the manifest)", "", "", "", "", "")
    video_s = sum(r.get("video_seconds") or 0 for r in rows if r["status"] == "ok")
    table.caption = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + \
        f"; {video_s:.1f} s of video processed"
    return table


__all__ = ["BatchRows", "BatchWarning", "FORMATS", "MANIFEST", "VideoTask", "check_ray_address", "default_workers", "find_videos", "is_complete",
           "plan", "read_manifest", "run_batch", "run_task", "settings_hash", "summary_table", "usable_cores"]
