"""Every error star-track raises on purpose: one root, :class:`StarTrackError`, and a few kinds below it.

The messages name the file, device or setting at fault and say why, so a caller (the ``star-track`` command
line, ``python -m train``, ``python -m export``) can print ``str(error)`` as is. The classes also keep the
built-in base they had before this module existed (``ValueError`` / ``RuntimeError`` / ``ImportError``), so
code that catches those still works.

* :class:`ModelError` - a landmark model or checkpoint is missing, unreadable or unfit for the use.
* :class:`DetectorError` - the face-detector model is missing, corrupt or cannot be loaded.
* :class:`EngineUnavailable` - an engine cannot run here (package or hardware missing);
  :class:`MissingDependency` - an optional package (torch, onnx, TensorRT, pyarrow) is not installed, with the
  ``pip install`` that fixes it (a missing torch raises it on every path).
* :class:`VideoError` - a video or image input cannot be read (missing, not decodable, no such camera), or a
  video cannot be encoded as asked (codec settings, no display for a window).
* :class:`OutputError` - an output file cannot be written: it exists (without overwrite), its name or folder is
  unusable (unsupported extension, a directory, missing or unwritable folder), the disk is full. Not a
  :class:`VideoError`: a landmark file that fills the disk is not a video problem.
* :class:`ConcurrentUseError` - one :class:`~star_track.tracking.tracker.Tracker` used from two threads at once.
* :class:`ClusterError` - the Ray cluster a batch was pointed at does not answer.
"""
from __future__ import annotations

TRAIN_HINT = 'pip install "star-track[train]"'
"""The install command for the training extra (torch, onnx)."""


class StarTrackError(Exception):
    """Root of every error star-track raises on purpose; ``str(e)`` is a complete one-line message."""


class ModelError(StarTrackError, ValueError):
    """A model file is missing, unreadable, or does not fit the requested use."""


class DetectorError(StarTrackError, RuntimeError):
    """The face-detector model is missing, corrupt, or could not be loaded."""


class EngineUnavailable(StarTrackError, RuntimeError):
    """The requested engine cannot run here (package not installed, no GPU)."""


class MissingDependency(EngineUnavailable, ImportError):
    """An optional package is not installed; the message names it and the ``pip install`` that adds it."""


class VideoError(StarTrackError, RuntimeError):
    """A video or image input cannot be read, or a video cannot be encoded as asked; the message names it and
    says why."""


class OutputError(StarTrackError, RuntimeError):
    """An output file cannot be written: it exists (without overwrite), its name or folder is unusable, the disk
    is full."""


class OutputClosed(OutputError):
    """The reader of a stream output (stdout, ``--landmarks-out -``) went away, e.g. ``| head``: not an error
    of the run, the CLI stops quietly."""


class ClusterError(StarTrackError, ConnectionError):
    """The Ray cluster a batch was asked to use does not answer; the message names the address as given."""


class ConcurrentUseError(StarTrackError, RuntimeError):
    """One Tracker was called from two threads at once (unsupported: use one Tracker per thread)."""


class TrackerClosedError(StarTrackError, RuntimeError):
    """A Tracker was called after :meth:`~star_track.tracking.tracker.Tracker.close` (or after its ``with`` block):
    its detectors are released; make a new one."""


def require_torch(purpose: str):
    """Import and return ``torch``, or raise :class:`MissingDependency` saying ``purpose`` needs it."""
    try:
        import torch
    except ImportError:
        raise MissingDependency(f"{purpose} needs torch: {TRAIN_HINT}") from None
    return torch


__all__ = ["ClusterError", "ConcurrentUseError", "DetectorError", "EngineUnavailable", "MissingDependency", "ModelError",
           "OutputClosed", "OutputError", "StarTrackError", "TRAIN_HINT", "VideoError", "require_torch"]
