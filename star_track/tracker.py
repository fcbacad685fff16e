"""The tracker: frame -> detect -> crop -> engine (decode inside the ONNX graph) -> back-map -> smooth ->
:class:`Face` list (:data:`STAGES`; :attr:`Tracker.on_stage` times them, :meth:`Tracker.landmarks_for_boxes`
runs the per-face path on given boxes).

Per frame
  1. Each existing track's crop comes from its previous landmarks (:func:`crop_from_landmarks` with the model's
     ``crop_scale``, rolled so the eyes are level): the network sees faces framed exactly as in training.
  2. The face detector runs on the first frame, every ``detect_every`` frames, whenever there is no track, and
     whenever a track's confidence drops below ``redetect_below``. Detections are matched to tracks by IoU
     (or by the track's landmark centre lying inside the box); unmatched detections start new tracks (up to
     ``max_faces``), tracks no detection confirms are dropped when they are also unconfident or have missed
     ``max_misses`` detection rounds.
  3. New (and re-acquired) faces are cropped from their detector box with the model's calibration for that
     detector, rolled by the detector's eye keypoints (:attr:`Detection.roll`), then re-cropped from their own
     landmarks up to ``refine_steps`` times: each pass frames the face more like the training crops. Re-framing
     stops as soon as the new crop is within ``refine_tolerance`` of the last one, whose prediction is then
     final (all new faces of a frame share each batched pass).
  4. All faces of the frame go through the engine in one batched call; outputs are mapped back to frame pixels
     (means and covariances A Σ Aᵀ) and smoothed per track.

Confidence score
  For landmark i with covariance Σᵢ in the model's [-1, 1] crop units, σᵢ = det(Σᵢ)^¼ is its geometric-mean
  standard deviation. With u = medianᵢ σᵢ the face score is ``1 / (1 + (u / uncertainty_half)⁴)``: 0.5 when
  the median landmark's spread is ``uncertainty_half`` (default 0.28, i.e. 14 % of the crop side). Measured with
  the default model (``python -m benchmarks.uncertainty``): u is 0.16 / 0.18 / 0.22 (5th / 50th / 95th
  percentile) on the held-out face crops, scores 0.74 to 0.90; on patches of the same photos away from the
  labelled faces u is 0.27 / 0.40 / 0.59, scores 0.54 / 0.20 / 0.05.

Uncertainty
  ``Face.covariance`` is the *calibrated* covariance of each landmark's real error in frame pixels² (the model's
  :mod:`star_track.uncertainty` calibration applied in crop units, then mapped to the frame): its 2-σ ellipse
  holds the true point about 86 % of the time. ``Face.star_covariance`` is the raw decoded STAR covariance (the
  heatmap's spread, several times larger), which the confidence score above is defined on. A model without a
  calibration (e.g. an imported checkpoint) reports the raw covariance as ``Face.covariance`` too and the
  Tracker warns once (:class:`~star_track.uncertainty.UncalibratedUncertaintyWarning`);
  :attr:`Tracker.uncertainty_calibrated` tells which. The Kalman smoother's default ``r_scale`` (3) is for
  calibrated covariances; with an uncalibrated model pass ``smoothing_params={"r_scale": 0.1}`` (the former
  default on the raw covariance, same jitter and lag in ``benchmarks/stability.py``). ``Face.expected_error`` is the face's predicted NME
  (:func:`~star_track.uncertainty.expected_error`): rank frames by it to drop bad ones without ground truth.

Thread-safety
  A Tracker holds per-video state (tracks, filters, the detector's clock) and is not thread-safe. Use one
  Tracker per thread / per video stream; separate Trackers may run concurrently. A call that overlaps another
  call on the same Tracker raises :class:`ConcurrentUseError` instead of mixing the two streams' state.

Non-finite model outputs
  A face whose landmarks or covariances come out NaN/inf (a broken model or engine) is left out of that frame's
  results, its filter untouched; :attr:`Tracker.nonfinite_faces` counts them and a
  :class:`NonFiniteOutputWarning` is issued once per Tracker.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from .crop import Crop, crop_from_box, crop_from_landmarks
from .detection.blazeface import Detection, FaceDetector
from .detection.boxes import box_iou, nms
from .detection.photo_search import PhotoSearch, photo_detect_sources
from .engines import create_engine
from .engines.base import LandmarkEngine
from .engines.flip_average import FlipAveragedEngine
from .errors import ConcurrentUseError, ModelError
from .model.schemes import LandmarkScheme, get_scheme
from .smoothing import Smoother, make_smoother
from .uncertainty import UncalibratedUncertaintyWarning, UncertaintyCalibration, expected_error, landmark_score


MAX_TIMESTAMP_S = 1e12
"""Largest accepted timestamp magnitude (seconds; epoch times fit comfortably)."""
MAX_GAP_S = 2.0
"""A jump in time longer than this restarts every track's smoothing (the face may be anywhere by then)."""
STAGES = ("detect", "crop", "engine", "back-map", "smooth")
"""Stage names reported to :attr:`Tracker.on_stage` (decoding heatmaps to landmarks runs inside the model's
ONNX graph, so it is part of ``engine``)."""


class NonFiniteOutputWarning(RuntimeWarning):
    """The model produced NaN/inf landmarks; such faces are dropped from the frame's results."""


@dataclass
class Face:
    """One tracked face in one frame (all coordinates in frame pixels)."""

    track_id: int
    box: np.ndarray
    """(4,) x1, y1, x2, y2: bounding box of the raw landmarks."""
    score: float
    """Confidence in [0, 1] from the landmark covariances (see module docs)."""
    landmarks: np.ndarray
    """(N, 2) smoothed landmarks (x, y)."""
    raw_landmarks: np.ndarray
    """(N, 2) this frame's network output before smoothing."""
    covariance: np.ndarray
    """(N, 2, 2) calibrated covariance of each raw landmark's error in frame pixels² (see module docs)."""
    star_covariance: np.ndarray | None = None
    """(N, 2, 2) raw decoded STAR covariance (heatmap spread) in frame pixels²."""
    expected_error: float = float("nan")
    """Predicted NME of this face (mean expected landmark error / outer-eye-corner distance, a fraction)."""


@dataclass
class _Track:
    track_id: int
    smoother: Smoother
    points: np.ndarray | None = None  # raw landmarks in the model's scheme
    cov: np.ndarray | None = None  # calibrated
    star_cov: np.ndarray | None = None  # raw
    smoothed: np.ndarray | None = None
    score: float = 0.0
    misses: int = 0
    start: Detection | None = None  # detection to (re)start the crop from this frame
    crop: Crop | None = None
    motion: np.ndarray = field(default_factory=lambda: np.zeros(2))  # landmark-centre shift over the last frame
    valid: bool = True  # False: this frame's output was non-finite (not reported, filter untouched)


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Validate a frame and return it as contiguous (H, W, 3) uint8 BGR.

    Accepts (H, W) or (H, W, 1) grayscale, (H, W, 3) BGR and (H, W, 4) BGRA.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got dtype {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        if frame.size == 0:
            raise ValueError(f"frame is empty (shape {frame.shape})")
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"frame must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty (shape {frame.shape})")
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)


def _check_timestamp(timestamp: float) -> float:
    try:
        t = float(timestamp)
    except (TypeError, ValueError):
        raise ValueError(f"timestamp must be a number of seconds, got {timestamp!r}") from None
    if not math.isfinite(t) or abs(t) > MAX_TIMESTAMP_S:
        raise ValueError(f"timestamp must be a finite number of seconds within +-{MAX_TIMESTAMP_S:g}, got {t}")
    return t


def _same_framing(a: Crop, b: Crop, tolerance: float) -> bool:
    """Crops within ``tolerance`` of each other: centre shift and side change as fractions of the side, angle
    in radians. A prediction on ``a`` then stands for one on ``b`` (the network is trained with larger jitter)."""
    shift = float(np.hypot(a.center[0] - b.center[0], a.center[1] - b.center[1])) / a.side
    dangle = abs((a.angle - b.angle + np.pi) % (2 * np.pi) - np.pi)
    return shift <= tolerance and abs(np.log(b.side / a.side)) <= tolerance and dangle <= 2 * tolerance


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def capped_threads(threads: int | None) -> tuple[int | None, str | None]:
    """``threads`` validated (None, or an integer >= 0) and capped at :func:`usable_cores`, with the one-line
    note to give when it was capped (more engine threads than cores only adds contention).

    Raises:
        ValueError: not None and not an integer >= 0.
    """
    if threads is None:
        return None, None
    threads = _int_arg("threads", threads, 0)
    cores = usable_cores()
    if threads > cores:
        return cores, f"threads={threads} is more than the {cores} usable CPU cores: using {cores}"
    return threads, None


def _int_arg(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (an integral float passes), else a ValueError naming ``name``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(value) or value != int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _float_arg(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] ((low, high] with ``low_open``), else a ValueError naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, (bool, str)) or not math.isfinite(v) or v < low or v > high or (low_open and v == low):
        bounds = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}")
    return v


class Tracker:
    """Facial landmark tracker for video (and single images via :meth:`detect_image`).

    Args:
        model: ``None``/``"default"`` (bundled model), a model name in the user cache, or a path
            (see :func:`star_track.model.registry.resolve_model`).
        engine: ``"auto"``, ``"onnxruntime"``, ``"tensorrt"``, ``"torch"``, or a ready :class:`LandmarkEngine`.
        smoothing: ``"kalman"``, ``"one-euro"`` or ``"none"``.
        smoothing_params: keyword arguments for the smoother (see :mod:`star_track.smoothing`).
        max_faces: most faces tracked at once.
        detect_every: run the detector at least every K frames (1 = every frame).
        detector: bundled BlazeFace ``"full"`` (default: finds small and distant faces too, ~5 ms per call) or
            ``"short"`` (selfie distance, ~2 ms), or a path to a ``.tflite``.
        min_detection_confidence: detector score threshold.
        output_scheme: ``None`` (the model's own points) or ``"68"`` (reduce e.g. WFLW-98 to 300W-68).
        redetect_below: a track whose score falls below this triggers detection and re-acquisition.
        max_misses: detection rounds a confident track may go unconfirmed before it is dropped.
        uncertainty_half: spread (crop units) at which the confidence score is 0.5.
        fps: frame rate assumed when :meth:`track` gets no timestamps.
        refine_steps: for a new face, at most how many times the crop is re-framed from its own landmarks
            before the final pass (0 = use the detector box crop directly).
        refine_tolerance: re-framing stops once the new crop is within this fraction of the crop side (centre
            shift, size change; twice this in radians of roll) of the one just predicted on: that prediction is
            kept, so a face the detector framed well costs one engine pass instead of ``1 + refine_steps``.
        flip_test: also run every crop mirrored and average the two predictions
            (:class:`~star_track.engines.flip_average.FlipAveragedEngine`): lower error, twice the engine time.
        threads: CPU threads of the ONNX Runtime engine (``None``: 1, measured as the fastest per face and the
            most robust on a busy machine; see :func:`star_track.engines.onnxruntime_engine.default_threads`).
            More than the usable cores is capped at them, with a ``RuntimeWarning``.

    Raises:
        ValueError: an argument of the wrong type or out of range (the message names it), e.g.
            ``max_faces=None`` or ``fps=nan``.
        ModelError / EngineUnavailable / DetectorError: at construction, when a model cannot be loaded.

    Not thread-safe: use one Tracker per thread or stream.
    """

    def __init__(self, model: str | os.PathLike | None = None, engine: str | LandmarkEngine = "auto",
                 smoothing: str = "kalman", smoothing_params: dict[str, Any] | None = None, max_faces: int = 4,
                 detect_every: int = 10, detector: str | Path = "full", min_detection_confidence: float = 0.5,
                 output_scheme: str | None = None, redetect_below: float = 0.3, max_misses: int = 2,
                 uncertainty_half: float = 0.28, fps: float = 30.0, refine_steps: int = 2,
                 flip_test: bool = False, refine_tolerance: float = 0.05, threads: int | None = None):
        # Every argument checked up front: a ValueError naming it, never a TypeError from deep inside.
        max_faces = _int_arg("max_faces", max_faces, 1)
        detect_every = _int_arg("detect_every", detect_every, 1)
        refine_steps = _int_arg("refine_steps", refine_steps, 0)
        max_misses = _int_arg("max_misses", max_misses, 0)
        fps = _float_arg("fps", fps, 0.0, low_open=True)
        min_detection_confidence = _float_arg("min_detection_confidence", min_detection_confidence, 0.0, 1.0)
        redetect_below = _float_arg("redetect_below", redetect_below, 0.0, 1.0)
        uncertainty_half = _float_arg("uncertainty_half", uncertainty_half, 0.0, low_open=True)
        refine_tolerance = _float_arg("refine_tolerance", refine_tolerance, 0.0)
        threads, note = capped_threads(threads)
        if note is not None:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
        self.refine_steps = int(refine_steps)
        self.refine_tolerance = float(refine_tolerance)
        self.smoothing = smoothing
        self.smoothing_params = dict(smoothing_params or {})
        make_smoother(smoothing, **self.smoothing_params)  # validate now, not on the first face
        self.engine: LandmarkEngine = (engine if not isinstance(engine, str)
                                       else create_engine(model, engine, threads=threads))
        if flip_test:
            self.engine = FlipAveragedEngine(self.engine)
        self.meta = self.engine.meta
        self.model_scheme: LandmarkScheme = get_scheme(self.meta.scheme)
        self.uncertainty = UncertaintyCalibration.from_meta(self.meta, self.model_scheme.num_points)
        self.uncertainty_calibrated = self.uncertainty.fitted
        """False: the model has no uncertainty calibration and ``Face.covariance`` is the raw STAR one."""
        if not self.uncertainty_calibrated:
            warnings.warn(f"model {getattr(self.meta, 'name', '?')!r} has no uncertainty calibration: "
                          "Face.covariance is the raw STAR covariance (too large); fit one with `python -m train "
                          "calibrate-uncertainty MODEL.onnx`, or smooth with r_scale=0.1", UncalibratedUncertaintyWarning, stacklevel=2)
        self.scheme: LandmarkScheme = self.model_scheme
        if output_scheme not in (None, "68", "300w68", 68):
            raise ValueError(f"output_scheme must be None or '68', got {output_scheme!r}")
        self._reduce = output_scheme is not None and self.model_scheme.num_points != 68
        if self._reduce:
            if self.model_scheme.to_68 is None:
                raise ModelError(f"model scheme {self.model_scheme.name} ({self.model_scheme.num_points} points) "
                                 "cannot be reduced to 68 points")
            self.scheme = get_scheme("300w68")
        self.max_faces = int(max_faces)
        self.detect_every = int(detect_every)
        self.redetect_below = float(redetect_below)
        self.max_misses = int(max_misses)
        self.uncertainty_half = float(uncertainty_half)
        self.fps = float(fps)
        self._detector_spec = detector
        self._min_det = float(min_detection_confidence)
        self.detector = FaceDetector(detector, mode="video", min_confidence=self._min_det)
        # Box -> crop calibration fitted for this detector (models may carry one per bundled detector).
        self.box_calibration = tuple(self.meta.calibration_for(str(detector)))
        self._still_detector: FaceDetector | None = None
        self._busy = threading.Lock()  # detects overlapping calls (see module docs); never waited on
        self.nonfinite_faces = 0
        """Faces dropped because the model returned non-finite landmarks or covariances."""
        self.on_stage: Callable[[str, float], None] | None = None
        """Timing hook: when set, called as ``on_stage(stage, seconds)`` after each stage of each call, with
        stage one of :data:`STAGES` (``engine`` includes the decoding, which runs inside the ONNX graph)."""
        self.reset()

    # -- state -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all tracks (e.g. at a scene cut or a new video); track ids restart at 0."""
        self._tracks: list[_Track] = []
        self._ids = itertools.count()
        self._frame_index = 0
        self._last_detect = -10**9
        self._last_t: float | None = None
        self._t_offset = 0.0 if not hasattr(self, "_t_end") else self._t_end
        self._t_end = self._t_offset

    def start_video(self, fps: float) -> None:
        """Get ready for another video at ``fps`` frames per second, as a Tracker built for it would be (the
        models stay loaded): :meth:`reset`, the frame rate set, :attr:`nonfinite_faces` counted from zero.

        Raises:
            ValueError: ``fps`` is not a finite number > 0.
        """
        fps = _float_arg("fps", fps, 0.0, low_open=True)
        self.reset()
        self.fps = fps
        self.nonfinite_faces = 0

    def close(self) -> None:
        """Release the detector(s)."""
        self.detector.close()
        if self._still_detector is not None:
            self._still_detector.close()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    # -- per frame -------------------------------------------------------------------------------------
    def track(self, frame: np.ndarray, timestamp: float | None = None) -> list[Face]:
        """Landmarks of the faces in the next video frame.

        Args:
            frame: (H, W, 3) uint8 BGR (grayscale (H, W) and BGRA (H, W, 4) are converted).
            timestamp: seconds since the start of the stream; default ``frame_index / fps``.
        Returns:
            Faces sorted by track id.
        Raises:
            ValueError: wrong dtype / shape, or a timestamp that is not a finite number within
                :data:`MAX_TIMESTAMP_S`. A timestamp that goes backwards counts as one frame interval; a
                jump of more than :data:`MAX_GAP_S` restarts the smoothing of every track.
            ConcurrentUseError: another thread is inside a call on this Tracker.
        """
        with self._exclusive():
            return self._track(frame, timestamp)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Claim the Tracker for one call; raise at once if another thread holds it."""
        if not self._busy.acquire(blocking=False):
            raise ConcurrentUseError("this Tracker is already in use by another thread (a Tracker is not "
                                     "thread-safe: use one Tracker per thread or stream)")
        try:
            yield
        finally:
            self._busy.release()

    def _track(self, frame: np.ndarray, timestamp: float | None) -> list[Face]:
        frame = as_bgr(frame)
        t = self._frame_index / self.fps if timestamp is None else _check_timestamp(timestamp)
        dt = 1.0 / self.fps if self._last_t is None or t <= self._last_t else t - self._last_t
        if dt > MAX_GAP_S:  # a long gap: old velocities and positions say nothing about now
            for tr in self._tracks:
                tr.smoother.reset()
            dt = 1.0 / self.fps
        tracks = self._tracks
        need_detect = (not tracks or self._frame_index - self._last_detect >= self.detect_every
                       or any(tr.score < self.redetect_below for tr in tracks))
        if need_detect:
            self._last_detect = self._frame_index
            dets = self._timed("detect", self.detector.detect, frame, int(round((t + self._t_offset) * 1000)))
            tracks = self._associate(tracks, dets)
        tracks = self._run(frame, tracks, dt, smooth=True)
        self._tracks = self._dedupe(tracks)
        self._frame_index += 1
        self._last_t = t
        self._t_end = max(self._t_end, t + self._t_offset + dt)
        return [self._face(tr) for tr in sorted(self._tracks, key=lambda tr: tr.track_id) if tr.valid]

    def detect_image(self, image: np.ndarray, max_faces: int | None = None,
                     search: str | PhotoSearch = "photo") -> list[Face]:
        """Landmarks of every face in a still image (photo mode): IMAGE-mode detection, no smoothing, no effect
        on the video tracks. Faces are numbered 0.. in detector-score order.

        Args:
            image: (H, W, 3) uint8 BGR (grayscale and BGRA are converted).
            max_faces: most faces returned (best detector scores first); ``None`` = all. The tracker's own
                ``max_faces`` is for video only.
            search: ``"photo"`` (default: whole image, overlapping tiles for small faces and, when the upright
                passes find no face or a rolled one, the image turned by ±90/±45 degrees; see
                :mod:`star_track.detection.photo_search` for the passes and their time budget), ``"single"`` (one whole-image
                detector pass, as video mode runs: fastest, misses faces under ~6 % of the image width and
                faces rolled past ~45 degrees) or a :class:`~star_track.detection.photo_search.PhotoSearch` with other options.
        Raises:
            ValueError: wrong dtype / shape, ``max_faces`` < 1 or an unknown ``search``.
        """
        with self._exclusive():
            return self._detect_image(image, max_faces, search)

    def _detect_image(self, image: np.ndarray, max_faces: int | None, search: str | PhotoSearch) -> list[Face]:
        image = as_bgr(image)
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1 or None, got {max_faces}")
        if self._still_detector is None:
            self._still_detector = FaceDetector(self._detector_spec, mode="image", min_confidence=self._min_det)
        if search == "single":
            found = [(d, True) for d in self._still_detector.detect(image)]
        elif search == "photo" or isinstance(search, PhotoSearch):
            found = photo_detect_sources(self._still_detector, image, None if search == "photo" else search)
        else:
            raise ValueError(f"search must be 'photo', 'single' or a PhotoSearch, got {search!r}")
        found = found[:max_faces]
        tracks = [_Track(i, make_smoother("none"), start=d) for i, (d, _) in enumerate(found)]
        whole = {id(tr): w for tr, (_, w) in zip(tracks, found)}
        tracks = self._run(image, tracks, 0.0, smooth=False)
        # Faces only the extra photo passes found must look like faces to the landmark model too.
        tracks = [tr for tr in tracks if whole[id(tr)] or tr.score >= self.redetect_below]
        tracks = self._dedupe(tracks)
        for i, tr in enumerate(tracks):
            tr.track_id = i
        return [self._face(tr) for tr in tracks if tr.valid]

    def landmarks_for_boxes(self, image: np.ndarray, boxes: np.ndarray) -> list[Face | None]:
        """Landmarks for given face boxes (x1, y1, x2, y2 in pixels, upright faces), through exactly the path
        a newly detected face takes (box crop with the tracker's ``box_calibration``, re-framed from its own
        landmarks up to ``refine_steps`` times, see the module docs), without smoothing and without touching
        the video tracks. Returns one entry per box, in order: a :class:`Face` (``track_id`` = the box's
        index) or None where the model's output was non-finite."""
        with self._exclusive():
            image = as_bgr(image)
            no_roll = np.zeros((6, 2), np.float32)
            tracks = [_Track(i, make_smoother("none"), start=Detection(np.asarray(b, np.float64), 1.0, no_roll))
                      for i, b in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4))]
            kept = {tr.track_id: tr for tr in self._run(image, tracks, 0.0, smooth=False) if tr.valid}
            return [self._face(kept[i]) if i in kept else None for i in range(len(tracks))]

    # -- internals -------------------------------------------------------------------------------------
    def _timed(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, reported to :attr:`on_stage` as ``stage`` when a hook is set."""
        if self.on_stage is None:
            return fn(*args)
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.on_stage(stage, time.perf_counter() - t0)

    def _track_box(self, tr: _Track) -> np.ndarray:
        p = tr.points
        return np.array([*p.min(0), *p.max(0)], np.float64)

    def _associate(self, tracks: list[_Track], dets: list[Detection]) -> list[_Track]:
        """Match detections to tracks, drop unconfirmed tracks, start tracks for new faces."""
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        if tracks and dets:
            tboxes = np.stack([self._track_box(tr) for tr in tracks])
            dboxes = np.stack([d.box for d in dets])
            iou = box_iou(tboxes, dboxes)
            centres = np.stack([tr.points.mean(0) for tr in tracks])
            inside = ((centres[:, None, 0] >= dboxes[None, :, 0]) & (centres[:, None, 0] <= dboxes[None, :, 2])
                      & (centres[:, None, 1] >= dboxes[None, :, 1]) & (centres[:, None, 1] <= dboxes[None, :, 3]))
            affinity = np.where(inside, np.maximum(iou, 0.05), iou)
            for ti, di in sorted(np.argwhere(affinity > 0.05), key=lambda p: -affinity[p[0], p[1]]):
                if ti in matched_t or di in matched_d:
                    continue
                matched_t.add(int(ti))
                matched_d.add(int(di))
                tr = tracks[ti]
                tr.misses = 0
                if tr.score < self.redetect_below:  # lost its face: restart the crop from the detector box
                    tr.start = dets[di]
        self._reacquire(tracks, dets, matched_t, matched_d)
        kept = []
        for i, tr in enumerate(tracks):
            if i not in matched_t:
                tr.misses += 1
                if tr.score < self.redetect_below or tr.misses >= self.max_misses:
                    continue
            kept.append(tr)
        for di, d in enumerate(dets):
            if di in matched_d or len(kept) >= self.max_faces:
                continue
            kept.append(_Track(next(self._ids), make_smoother(self.smoothing, **self.smoothing_params), start=d))
        return kept

    def _reacquire(self, tracks: list[_Track], dets: list[Detection], matched_t: set[int],
                   matched_d: set[int]) -> None:
        """A lost track (low score, no overlapping detection: the face moved faster than the crop followed)
        takes the nearest unmatched detection within two face sizes, so it keeps its id; its filter restarts."""
        for ti, tr in enumerate(tracks):
            if ti in matched_t or tr.score >= self.redetect_below:
                continue
            tb = self._track_box(tr)
            size = max(tb[2] - tb[0], tb[3] - tb[1], 1.0)
            best, best_d = None, 2.0 * size
            for di, d in enumerate(dets):
                if di in matched_d:
                    continue
                dist = float(np.hypot(*((d.box[:2] + d.box[2:]) / 2 - (tb[:2] + tb[2:]) / 2)))
                if dist < best_d:
                    best, best_d = di, dist
            if best is not None:
                matched_t.add(ti)
                matched_d.add(best)
                tr.misses, tr.start = 0, dets[best]
                tr.smoother.reset()

    def _infer(self, frame: np.ndarray, crops: list[Crop]) -> tuple[list[np.ndarray], list[tuple], np.ndarray]:
        """One batched engine call -> per crop frame-pixel means and (calibrated, raw) covariances, and scores."""
        batch = np.stack([self._timed("crop", c.warp, frame) for c in crops])
        mean, cov = self._timed("engine", self.engine.infer, batch)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite outputs are handled by _run
            scores = self._timed("back-map", landmark_score, cov, self.uncertainty_half)
            # in crop units: the calibration is scale-free
            calibrated = self._timed("back-map", self.uncertainty.apply, cov)
            pts, covs = [], []
            for c, m, s, k in zip(crops, mean, cov, calibrated):
                # raw and calibrated covariances mapped to frame pixels in one call (the map broadcasts)
                p, both = self._timed("back-map", c.normalized_to_frame, m.astype(np.float64),
                                      np.stack([s, k]).astype(np.float64))
                covs.append((both[1], both[0]))
                pts.append(p)
        return pts, covs, scores

    def _landmark_crop(self, points: np.ndarray) -> Crop:
        return crop_from_landmarks(points, self.meta.input_size, self.meta.crop_scale, rotate=True,
                                   eye_corners=self.model_scheme.outer_eye_corners)

    def _run(self, frame: np.ndarray, tracks: list[_Track], dt: float, smooth: bool) -> list[_Track]:
        """Landmarks for every track (updated in place); returns the tracks kept (new faces whose first
        output is non-finite are dropped)."""
        if not tracks:
            return tracks
        size = self.meta.input_size
        # Faces starting from a detector box: re-frame the crop from their own landmarks while confident (each
        # step brings the framing closer to the training crops).
        # A face whose re-framed crop is (nearly) the crop it was just predicted on has converged: that
        # prediction is final and costs no further pass, so a well-framed face takes 2 passes, not 1 + steps.
        fresh = [tr for tr in tracks if tr.start is not None]
        done: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}  # id(track) -> final (points, cov, score)
        if fresh:
            crops = [crop_from_box(tr.start.box, size, self.box_calibration, tr.start.roll) for tr in fresh]
            box_sides = [c.side for c in crops]
            active = list(range(len(fresh)))
            for _ in range(self.refine_steps):
                pts, covs, scores = self._infer(frame, [crops[k] for k in active])
                still = []
                for k, p, c, s in zip(active, pts, covs, scores):
                    if not np.isfinite(p).all():  # judged (and dropped) with the final results below
                        done[id(fresh[k])] = (p, c, float(s))
                        continue
                    refined = self._landmark_crop(p)
                    unsure = s < self.redetect_below or not 0.5 <= refined.side / box_sides[k] <= 2.0
                    if unsure or _same_framing(crops[k], refined, self.refine_tolerance):
                        # Converged, or nothing better to frame from: another pass on this crop would only
                        # repeat this prediction.
                        done[id(fresh[k])] = (p, c, float(s))
                        continue
                    crops[k] = refined
                    still.append(k)
                active = still
                if not active:
                    break
            for tr, c in zip(fresh, crops):
                tr.crop, tr.start = c, None
        for tr in tracks:
            if tr.crop is None:  # previous landmarks moved on by the last frame's motion (constant velocity)
                tr.crop = self._landmark_crop(tr.points + tr.motion)
        # Final pass: every face of the frame without a converged result, in one batch.
        todo = [tr for tr in tracks if id(tr) not in done]
        if todo:
            for tr, p, c, s in zip(todo, *self._infer(frame, [tr.crop for tr in todo])):
                done[id(tr)] = (p, c, float(s))
        kept = []
        for tr in tracks:
            p, c, s = done[id(tr)]
            c, star_c = c
            tr.valid = bool(np.isfinite(p).all() and np.isfinite(c).all())
            if not tr.valid:  # never let NaN/inf reach the filter or the outputs
                self._count_nonfinite()
                tr.crop, tr.score, tr.motion = None, 0.0, np.zeros(2)  # score 0: re-detect next frame
                if tr.points is not None:
                    kept.append(tr)
                continue
            kept.append(tr)
            followed = tr.points is not None and s >= self.redetect_below and not any(tr is f for f in fresh)
            tr.motion = p.mean(0) - tr.points.mean(0) if followed else np.zeros(2)
            tr.points, tr.cov, tr.star_cov, tr.score = p, c, star_c, float(s)
            scale = tr.crop.side / self.meta.crop_scale  # face size in pixels
            tr.smoothed = self._timed("smooth", tr.smoother.update, p, c, dt, scale) if smooth else p
            tr.crop = None
        return kept

    def _count_nonfinite(self) -> None:
        self.nonfinite_faces += 1
        if self.nonfinite_faces == 1:
            warnings.warn("the model returned non-finite (NaN/inf) landmarks; such faces are left out of the "
                          "results (count: Tracker.nonfinite_faces)", NonFiniteOutputWarning, stacklevel=5)

    def _dedupe(self, tracks: list[_Track]) -> list[_Track]:
        """Two tracks that converged onto one face: keep the more confident (older on ties)."""
        if len(tracks) < 2:
            return tracks
        by_id = sorted(range(len(tracks)), key=lambda i: tracks[i].track_id)  # equal scores: the older track wins
        boxes = np.stack([self._track_box(tracks[i]) for i in by_id])
        keep = nms(boxes, np.array([tracks[i].score for i in by_id]), iou=0.6)
        return [tracks[i] for i in sorted(by_id[k] for k in keep)]

    def _face(self, tr: _Track) -> Face:
        raw, smoothed, cov, star_cov = tr.points, tr.smoothed, tr.cov, tr.star_cov
        err = expected_error(raw, cov, self.model_scheme.outer_eye_corners)  # on the model's own points
        if self._reduce:
            idx = list(self.model_scheme.to_68)
            raw, smoothed, cov, star_cov = raw[idx], smoothed[idx], cov[idx], star_cov[idx]
        box = np.array([*raw.min(0), *raw.max(0)], np.float32)
        return Face(track_id=tr.track_id, box=box, score=tr.score, landmarks=smoothed.astype(np.float32),
                    raw_landmarks=raw.astype(np.float32), covariance=cov.astype(np.float32),
                    star_covariance=star_cov.astype(np.float32), expected_error=float(err))
