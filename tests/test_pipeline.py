"""The SDK's one video loop (star_track.run.loop.process_video), used without the command line."""
from __future__ import annotations

import os
import signal

import cv2
import numpy as np

from star_track import Tracker, VideoSink, VideoSource, VideoSummary, open_landmark_writer, process_video
from star_track.io.landmarks import read_landmarks_csv
from test_cli import face_video  # noqa: F401 (fixture)


def test_process_video_writes_every_frame_and_closes_writers_as_context_managers(tmp_path, face_video, model_path):
    out, csv = tmp_path / "o.mp4", tmp_path / "o.csv"
    seen = []
    with VideoSource(face_video) as src, Tracker(model=model_path, fps=src.fps) as tracker, \
            VideoSink(out, src.fps, src.size, audio_from=src) as sink, \
            open_landmark_writer(csv, tracker.scheme.num_points, tracker.scheme.name, src.fps) as writer:
        summary = process_video(src, tracker, sink=sink, landmark_writer=writer,
                                on_frame=lambda frame, faces: seen.append((frame.index, len(faces))))
    assert isinstance(summary, VideoSummary)
    assert summary.frames == 20 == len(seen) and not summary.interrupted and summary.seconds > 0
    assert summary.frames_with_faces == sum(n > 0 for _, n in seen)
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    assert len(np.unique(read_landmarks_csv(csv)["frame"])) == summary.frames_with_faces


def test_on_frame_returning_true_stops_and_a_signal_stops_after_the_frame(tmp_path, face_video, model_path):
    with VideoSource(face_video) as src, Tracker(model=model_path, fps=src.fps) as tracker:
        assert process_video(src, tracker, on_frame=lambda frame, faces: frame.index == 4).frames == 5
    lm = tmp_path / "o.json"
    with VideoSource(face_video) as src, Tracker(model=model_path, fps=src.fps) as tracker, \
            open_landmark_writer(lm, tracker.scheme.num_points, tracker.scheme.name, src.fps) as writer:
        summary = process_video(src, tracker, landmark_writer=writer,
                                on_frame=lambda f, _: f.index == 2 and os.kill(os.getpid(), signal.SIGTERM))
    assert summary.interrupted and summary.signal == signal.SIGTERM and summary.frames == 3
    import json

    assert len(json.loads(lm.read_text())["frames"]) == 3  # complete file, whole frames
