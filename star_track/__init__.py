"""star-track: real-time facial landmark tracking for video with STAR (CVPR 2023).

Data flow, one subpackage a stage: :class:`VideoSource` (:mod:`star_track.io`) -> :class:`FaceDetector`
(:mod:`star_track.detection`) -> crop (:mod:`star_track.crop`) -> engine (:mod:`star_track.engines`, the
heatmaps decoded inside the model) -> calibrated uncertainty (:mod:`star_track.uncertainty`) -> smoothing
(:mod:`star_track.smoothing`) -> :func:`draw_faces` / :class:`VideoSink` / a landmark writer, orchestrated per
frame by :class:`Tracker` (:mod:`star_track.tracking`). :func:`process_video` runs the loop over a whole video,
:func:`run_batch` over many (:mod:`star_track.run`); ``star-track`` is the command line (:mod:`star_track.cli`).
"""
from __future__ import annotations

import importlib
import importlib.metadata

try:  # one source: pyproject.toml's version, as installed
    __version__ = importlib.metadata.version("star-track")
except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"

# Public names are imported on first use (PEP 562), so `star-track` installs its signal handlers before the
# heavy imports (numpy, OpenCV, mediapipe), and `import star_track` loads no model runtime.
_EXPORTS = {
    # tracking
    "Tracker": ".tracking.tracker", "Face": ".tracking.face",
    # video and landmark files
    "VideoSource": ".io.source", "VideoFrame": ".io.source", "VideoSink": ".io.sink",
    "open_landmark_writer": ".io.landmarks", "LandmarkWriter": ".io.landmarks",
    "read_landmarks_csv": ".io.landmarks", "draw_faces": ".draw",
    # whole videos
    "process_video": ".run.loop", "VideoSummary": ".run.loop", "run_batch": ".run.batch", "BatchRows": ".run.batch",
    # building blocks
    "FaceDetector": ".detection.blazeface", "Detection": ".detection.blazeface",
    "PhotoSearch": ".detection.photo_search", "create_engine": ".engines", "LandmarkEngine": ".engines.base",
    "ModelMeta": ".model.meta", "list_models": ".model.registry", "make_smoother": ".smoothing",
    # errors and warnings
    "StarTrackError": ".errors", "ModelError": ".errors", "DetectorError": ".errors", "EngineUnavailable": ".errors",
    "MissingDependency": ".errors", "VideoError": ".errors", "OutputError": ".errors",
    "ConcurrentUseError": ".errors", "TrackerClosedError": ".errors", "ClusterError": ".errors",
    "NonFiniteOutputWarning": ".tracking.face", "UncalibratedUncertaintyWarning": ".uncertainty",
    "BatchWarning": ".run.batch",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted([*_EXPORTS, "__version__"])
