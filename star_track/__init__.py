"""star-track: real-time facial landmark tracking for video with STAR (CVPR 2023).

Data flow: :class:`VideoSource` -> :class:`FaceDetector` -> crop -> engine -> decode -> smoothing ->
:func:`draw_faces` / :class:`VideoSink` / landmark writer, orchestrated by :class:`Tracker`; the frame loop
over a whole video is :func:`process_video`.
"""
from __future__ import annotations

import importlib
import importlib.metadata

try:  # one source: pyproject.toml's version, as installed
    __version__ = importlib.metadata.version("star-track")
except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"

# Public names are imported on first use (PEP 562), so `star-track` installs its signal handlers before the
# heavy imports (numpy, OpenCV, mediapipe): a Ctrl-C in the first moments is one line, not a traceback.
_EXPORTS = {
    "Detection": ".detection.blazeface", "DetectorError": ".errors", "FaceDetector": ".detection.blazeface", "draw_faces": ".draw",
    "EngineUnavailable": ".errors", "create_engine": ".engines", "LandmarkEngine": ".engines.base",
    "ModelError": ".errors", "StarTrackError": ".errors", "MissingDependency": ".errors",
    "OutputError": ".errors", "ConcurrentUseError": ".errors", "FlipAveragedEngine": ".engines.flip_average",
    "open_landmark_writer": ".io.landmarks", "process_video": ".run.loop", "run_batch": ".run.batch", "VideoSummary": ".run.loop", "ModelMeta": ".model.meta", "list_models": ".model.registry",
    "resolve_model": ".model.registry", "make_smoother": ".smoothing", "Face": ".tracking.face", "NonFiniteOutputWarning": ".tracking.face", "Tracker": ".tracking.tracker",
    "VideoError": ".errors", "VideoSink": ".io.sink", "VideoSource": ".io.source",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ConcurrentUseError", "Detection", "DetectorError", "EngineUnavailable", "Face", "FaceDetector",
    "FlipAveragedEngine", "LandmarkEngine", "MissingDependency", "ModelError", "OutputError", "StarTrackError",
    "ModelMeta", "NonFiniteOutputWarning", "Tracker", "VideoError", "VideoSink", "VideoSource", "VideoSummary", "create_engine",
    "draw_faces", "list_models", "make_smoother", "open_landmark_writer", "process_video", "resolve_model", "run_batch",
    "__version__",
]
