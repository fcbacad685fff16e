"""star-track: real-time facial landmark tracking for video with STAR (CVPR 2023).

Data flow: :class:`VideoSource` -> :class:`FaceDetector` -> crop -> engine -> decode -> smoothing ->
:func:`draw_faces` / :class:`VideoSink` / landmark writer, orchestrated by :class:`Tracker`.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .detect import Detection, DetectorError, FaceDetector
from .draw import draw_faces
from .engines import EngineUnavailable, create_engine
from .engines.base import LandmarkEngine, ModelError
from .engines.flip_average import FlipAveragedEngine
from .landmark_io import open_landmark_writer
from .model_meta import ModelMeta
from .model_registry import list_models, resolve_model
from .smoothing import make_smoother
from .tracker import Face, Tracker
from .video import VideoError, VideoSink, VideoSource

__all__ = [
    "Detection", "DetectorError", "EngineUnavailable", "Face", "FaceDetector", "FlipAveragedEngine",
    "LandmarkEngine", "ModelError",
    "ModelMeta", "Tracker", "VideoError", "VideoSink", "VideoSource", "create_engine", "draw_faces",
    "list_models", "make_smoother", "open_landmark_writer", "resolve_model", "__version__",
]
