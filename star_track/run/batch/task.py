"""One video's work, the unit of both the process pool and Ray: :class:`VideoTask` in, a manifest row out
(:func:`run_task`), with outputs staged under hidden names and moved into place only when the video is done.

Also the state of the process it runs in: one :class:`~star_track.tracking.tracker.Tracker` per settings hash, reused
from video to video, and for a pool worker the batch's stop event and the watch on its parent
(:func:`init_worker`).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ...errors import OutputError, StarTrackError, VideoError
from ...hashing import sha256_file
from ...io.claims import partial_path, same_file
from ...io.landmarks import LandmarkWriter, open_landmark_writer
from ...io.sink import VideoSink
from ...io.source import VideoSource
from ...tracking.face import NonFiniteOutputWarning
from ...uncertainty import UncalibratedUncertaintyWarning
from ...tracking.tracker import Tracker
from ..loop import VideoSummary, process_video
from ..signals import StopFlag


@dataclass(frozen=True)
class VideoTask:
    """One video's work, as sent to a worker process or a Ray task (plain, picklable values)."""

    input: str
    outputs: dict[str, str]
    """Output kind (``landmarks``, ``video``) -> final path."""
    settings: str
    tracker_kwargs: dict[str, Any]
    video_options: dict[str, Any] = field(default_factory=dict)
    """``codec``, ``crf``, ``preset``, ``audio`` (bool), ``draw`` (bool), ``ellipses`` (bool), ``pose`` (bool)."""


_TRACKERS: dict[str, Tracker] = {}
"""This process's Tracker per settings hash: models are loaded once per worker."""
_STOP: Any = None
"""In a pool worker: the batch's stop event (set by the parent on SIGINT/SIGTERM)."""
_PARENT: int | None = None
"""In a pool worker: the parent's pid; the current video stops when the parent is gone (SIGKILL)."""
_BUSY = threading.Event()
"""Set while :func:`run_task` runs (an orphaned pool worker exits once it is clear)."""


def init_worker(stop_event: Any, parent: int) -> None:
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


def _tracker_for(task: VideoTask) -> Tracker:
    """This process's Tracker for ``task``'s settings (built on first use, then reused)."""
    tracker = _TRACKERS.get(task.settings)
    if tracker is None:
        warnings.simplefilter("ignore", NonFiniteOutputWarning)  # counted per video instead
        warnings.simplefilter("ignore", UncalibratedUncertaintyWarning)  # said once by run_batch
        tracker = Tracker(**task.tracker_kwargs)
        _TRACKERS[task.settings] = tracker
    return tracker


def one_line(e: BaseException) -> str:
    """``e`` as one line: a StarTrackError's own message, anything else prefixed by its type."""
    text = " ".join(str(e).split())
    return text if isinstance(e, StarTrackError) else f"{type(e).__name__}: {text}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _new_row(task: VideoTask, worker: str | None = None) -> dict[str, Any]:
    """A manifest row for ``task`` that says nothing was done yet (status ``failed`` until it is)."""
    return {"input": task.input, "outputs": {}, "frames": 0, "frames_with_faces": 0, "face_records": 0,
            "max_faces": 0, "video_seconds": 0.0, "seconds": 0.0, "status": "failed", "error": None,
            "settings": task.settings, "worker": worker, "claimed": dict(task.outputs)}


def failed_row(task: VideoTask, error: str) -> dict[str, Any]:
    """The manifest row of a video that failed before (or outside) :func:`run_task`, e.g. its worker died."""
    return {**_new_row(task), "error": error, "finished": _now()}


def run_task(task: VideoTask) -> dict[str, Any]:
    """Process one video (the unit of work of both the process pool and Ray); never raises for a bad video:
    returns its manifest row (``status`` ``ok``, ``failed`` or ``interrupted``)."""
    _BUSY.set()
    try:
        t0 = time.perf_counter()
        row = _new_row(task, worker=f"{socket.gethostname()}:{os.getpid()}")
        with contextlib.suppress(OSError):
            st = os.stat(task.input)
            row["input_bytes"], row["input_mtime_ns"] = st.st_size, st.st_mtime_ns
        staged = {k: partial_path(p) for k, p in task.outputs.items()}
        try:
            _check_paths(task)
            _process(task, staged, row)
        except Exception as e:  # noqa: BLE001 - failure isolation: one bad video is one failed row
            row.update(status="failed", error=one_line(e), outputs={})
        finally:
            for p in staged.values():
                with contextlib.suppress(OSError):
                    p.unlink()
        row["seconds"] = round(time.perf_counter() - t0, 4)
        row["finished"] = _now()
        return row
    finally:
        _BUSY.clear()


def _check_paths(task: VideoTask) -> None:
    """The input is a file and no output is the input; the outputs' folders exist."""
    if not os.path.isfile(task.input):
        raise VideoError(f"{task.input}: no such file" if not os.path.exists(task.input)
                         else f"{task.input}: not a file")
    for p in map(Path, task.outputs.values()):
        if same_file(p, task.input):
            raise OutputError(f"{p}: output would overwrite the input")
        p.parent.mkdir(parents=True, exist_ok=True)


class _FaceCounts:
    """``on_frame`` of the loop: counts face records and the most faces in a frame, and stops the video when
    the batch is stopping."""

    def __init__(self) -> None:
        self.records = self.most = 0
        self.stopped = False

    def __call__(self, _frame: Any, faces: Sequence[Any]) -> bool:
        self.records += len(faces)
        self.most = max(self.most, len(faces))
        self.stopped = self.stopped or _should_stop()
        return self.stopped


def _process(task: VideoTask, staged: dict[str, Path], row: dict[str, Any]) -> None:
    """Track the video into the staged outputs; when it ran to the end, move them into place. Fills ``row``."""
    counts = _FaceCounts()
    with VideoSource(task.input) as source:
        tracker = _tracker_for(task)
        tracker.start_video(source.fps)  # as a Tracker built for this video
        summary = _track(task, source, tracker, staged, counts)
    row.update(frames=summary.frames, frames_with_faces=summary.frames_with_faces, face_records=counts.records,
               max_faces=counts.most, video_seconds=round(summary.frames / source.fps, 4),
               blinks={str(k): n for k, n in sorted(summary.blinks.items())})
    if summary.interrupted or counts.stopped:
        row.update(status="interrupted", error="stopped before the end of the video")
        return
    finals = {k: Path(p) for k, p in task.outputs.items()}
    for k, final in finals.items():
        if not staged[k].is_file():
            raise OutputError(f"{final}: nothing was written ({summary.frames} frames)")
    for k, final in finals.items():
        os.replace(staged[k], final)
        row["outputs"][k] = {"path": str(final), "bytes": final.stat().st_size, "sha256": sha256_file(final)}
    notes = []
    if summary.ended_early:
        notes.append(f"the file ended early: read {source.frames_read} of {source.frame_count} frames")
    if tracker.nonfinite_faces:
        notes.append(f"{tracker.nonfinite_faces} face(s) left out: non-finite model output")
    row.update(status="ok", error="; ".join(notes) or None)


def _track(task: VideoTask, source: VideoSource, tracker: Tracker, staged: dict[str, Path],
           on_frame: _FaceCounts) -> VideoSummary:
    """:func:`~star_track.run.loop.process_video` into the staged landmark file (and video); both closed."""
    opts = task.video_options
    writer: LandmarkWriter | None = None
    sink: VideoSink | None = None
    try:
        writer = open_landmark_writer(staged["landmarks"], tracker.scheme.num_points, tracker.scheme.name,
                                      source.fps, overwrite=True)
        if "video" in staged:
            sink = VideoSink(staged["video"], source.fps, source.size, overwrite=True, codec=opts.get("codec"),
                             crf=opts.get("crf"), preset=opts.get("preset"),
                             audio_from=source if opts.get("audio", True) else None)
        return process_video(source, tracker, sink=sink, landmark_writer=writer, draw=opts.get("draw", True),
                             ellipses=opts.get("ellipses", False), pose=opts.get("pose", False), on_frame=on_frame,
                             stop=StopFlag())
    finally:
        for out in (writer, sink):
            if out is not None:
                out.close()
