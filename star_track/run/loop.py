"""The SDK's one video loop: frames from a source -> :class:`~star_track.tracking.tracker.Tracker` -> landmark file,
annotated video and a per-frame callback, stopping cleanly on SIGINT/SIGTERM.

The ``star-track video`` and ``webcam`` commands, the examples and batch jobs all run :func:`process_video`;
they differ only in what they pass to it::

    with VideoSource("in.mp4") as src, Tracker(fps=src.fps) as tracker, \\
            VideoSink("out.mp4", src.fps, src.size, audio_from=src) as sink, \\
            open_landmark_writer("out.csv", tracker.scheme.num_points, tracker.scheme.name, src.fps) as writer:
        summary = process_video(src, tracker, sink=sink, landmark_writer=writer)
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..draw import draw_faces
from .progress import progress_bar
from .signals import StopFlag

if TYPE_CHECKING:
    from ..io.landmarks import LandmarkWriter
    from ..io.sink import VideoSink
    from ..io.source import VideoFrame, VideoSource
    from ..tracking.face import Face
    from ..tracking.tracker import Tracker

FrameCallback = Callable[["VideoFrame", "Sequence[Face]"], Any]
"""``on_frame(frame, faces)``, called after each frame's outputs are written; returning True stops the loop."""


@dataclass(frozen=True)
class VideoSummary:
    """What :func:`process_video` did."""

    frames: int
    """Frames written to every output (all frames tracked, except those still awaiting their look-ahead when
    ``on_frame`` stopped the loop)."""
    frames_with_faces: int
    """Frames in which at least one face was returned."""
    seconds: float
    """Wall-clock time of the loop."""
    signal: int | None = None
    """The signal (SIGINT/SIGTERM) that stopped the loop after a whole frame, else None."""
    ended_early: bool = False
    """The source held fewer frames than its container lists (truncated or damaged file)."""
    blinks: dict[int, int] = field(default_factory=dict)
    """Blinks per track id (tracks without a blink left out; empty when the tracker's analysis is off)."""

    @property
    def interrupted(self) -> bool:
        """True when a signal stopped the loop (the outputs are complete up to :attr:`frames`)."""
        return self.signal is not None

    @property
    def fps(self) -> float:
        """Frames per second over the whole loop."""
        return self.frames / max(self.seconds, 1e-9)


def process_video(source: "VideoSource", tracker: "Tracker", *, sink: "VideoSink | None" = None,
                  landmark_writer: "LandmarkWriter | None" = None, on_frame: FrameCallback | None = None,
                  draw: bool = True, ellipses: bool = False, pose: bool = False, progress: bool = False,
                  label: str | None = None, stop: StopFlag | None = None) -> VideoSummary:
    """Track every frame of ``source`` and write the results; return a :class:`VideoSummary`.

    Per frame: ``tracker.track(image, time)``; then, for each frame the tracker has settled (``Tracker.settled``:
    this one, or with a ``lookahead`` the one that many frames back, revised; the last ones at the end or on a
    stop: ``Tracker.flush``), in this order: ``sink.ensure_space()`` (so that a full disk stops the run while
    every output can still end on the same whole frame); ``landmark_writer.write``; ``sink.write`` of the frame
    (annotated with :func:`~star_track.draw.draw_faces` unless ``draw`` is False, with 2-sigma ellipses when
    ``ellipses``, head axes when ``pose``) at the frame's own time; then ``on_frame(frame, faces)``, which stops
    the loop by returning True.

    SIGINT/SIGTERM while the loop runs stop it after the current frame (``summary.signal`` says which); the
    caller still closes its outputs, which are then complete and playable. ``stop`` is the flag to use (one is
    made when None). ``progress`` shows a progress bar with fps and ETA on stderr when it is a terminal, titled
    ``label`` (default: the source's file name).

    The caller owns (opens and closes) the source, tracker, sink and writer.
    """
    stop = stop if stop is not None else StopFlag()
    label = label if label is not None else Path(str(getattr(source, "name", "video"))).name
    waiting: deque[VideoFrame] = deque()  # frames tracked, awaiting their look-ahead (Tracker.settled)
    emit = _Outputs(tracker, sink, landmark_writer, on_frame, stop, draw, ellipses, pose)
    t_start = time.perf_counter()
    with stop, progress_bar(progress, source.frame_count, label, ["{task.fields[fps]:>6.1f} fps"],
                            fps=0.0) as advance:
        fps_ema: float | None = None
        done = False
        for vf in source:
            t0 = time.perf_counter()
            tracker.track(vf.image, vf.time)
            waiting.append(vf)
            for faces in tracker.settled():
                done = emit(waiting.popleft(), faces) or done
            rate = 1 / max(time.perf_counter() - t0, 1e-6)
            fps_ema = rate if fps_ema is None else 0.9 * fps_ema + 0.1 * rate
            advance(fps=fps_ema)
            if done or stop.signum is not None:
                break
        for faces in tracker.flush():  # the last frames, revised with what came after them
            if done:
                break
            done = emit(waiting.popleft(), faces)
    return VideoSummary(frames=emit.frames, frames_with_faces=emit.frames_with_faces,
                        seconds=time.perf_counter() - t_start, signal=stop.signum,
                        ended_early=bool(getattr(source, "ended_early", False)), blinks=_blinks(tracker))


class _Outputs:
    """Writes one settled frame to every output of :func:`process_video` (see there) and counts them."""

    def __init__(self, tracker: "Tracker", sink: "VideoSink | None", landmark_writer: "LandmarkWriter | None",
                 on_frame: FrameCallback | None, stop: StopFlag, draw: bool, ellipses: bool, pose: bool):
        self.tracker, self.sink, self.writer, self.on_frame, self.stop = tracker, sink, landmark_writer, on_frame, stop
        self.draw, self.ellipses, self.pose = draw, ellipses, pose
        self.frames = self.frames_with_faces = 0

    def __call__(self, vf: "VideoFrame", faces: "Sequence[Face]") -> bool:
        """True: ``on_frame`` asked to stop."""
        image = vf.image
        if self.sink is not None and self.draw:
            image = draw_faces(vf.image, faces, self.tracker.scheme, ellipses=self.ellipses, pose=self.pose)
        with self.stop.deferring():  # a second Ctrl-C cannot leave one output a frame ahead of the other
            if self.sink is not None:
                self.sink.ensure_space()
            if self.writer is not None:
                self.writer.write(vf.index, vf.time, faces)
            if self.sink is not None:
                self.sink.write(image, vf.time)
        self.frames += 1
        self.frames_with_faces += bool(faces)
        return bool(self.on_frame(vf, faces)) if self.on_frame is not None else False


def _blinks(tracker: "Tracker") -> dict[int, int]:
    """Blinks per track of this video (a tracker without face state, e.g. a stand-in, has none)."""
    state = getattr(tracker, "face_state", None)
    return dict(state.blink_counts()) if state is not None else {}
