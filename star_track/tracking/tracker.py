"""The tracker: frame -> detect -> crop -> engine (decode inside the ONNX graph) -> back-map -> smooth ->
:class:`Face` list (:data:`STAGES`; :attr:`Tracker.on_stage` times them, :meth:`Tracker.landmarks_for_boxes`
runs the per-face path on given boxes).

Per frame
  1. Each existing track's crop comes from its previous *smoothed* landmarks moved on by their last motion
     (:func:`crop_from_landmarks` with the model's ``crop_scale``, rolled so the eyes are level): the network sees
     faces framed as in training, and its noise is not fed back into its next input (``crop_from``).
  2. The face detector runs when a face is needed now and every ``detect_every`` frames while fewer than
     ``max_faces`` run (:mod:`~star_track.tracking.detection_schedule`); detections are matched to tracks, start
     new ones (up to ``max_faces``) or let unconfirmed ones go (:mod:`star_track.tracking.tracks`).
  3. New (and re-acquired) faces are cropped from their detector box (the model's calibration for that
     detector, rolled by its eye keypoints), then re-cropped from their own landmarks up to ``refine_steps``
     times, stopping once a crop is within ``refine_tolerance`` of the last (new faces share each batched pass).
  4. All faces of the frame go through the engine in one batched call, are mapped back to frame pixels in one
     call (A Σ Aᵀ) and smoothed (default: the face-level filter, :mod:`star_track.smoothing.face_level`; running
     per-landmark Kalman filters update as one stack); then the face state (pose, openness, blinks:
     :mod:`star_track.tracking.states`) from the raw landmarks.

Uncertainty: ``Face.score``, ``covariance``, ``star_covariance``, ``expected_error`` (:mod:`star_track.tracking.face`).

Not thread-safe (per-video state): use one Tracker per thread or stream; a call that overlaps another on the same
Tracker raises :class:`~star_track.errors.ConcurrentUseError` instead of mixing two streams' state.

A face with NaN/inf landmarks or covariances (a broken model or engine) is left out of that frame's results, its
filter untouched; :attr:`Tracker.nonfinite_faces` counts them, one ``NonFiniteOutputWarning`` per Tracker.
"""
from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..detection.blazeface import Detection, FaceDetector
from ..detection.boxes import box_in_frame
from ..detection.photo_search import PhotoSearch, photo_detect_sources
from ..engines import create_engine
from ..engines.base import LandmarkEngine
from ..engines.flip_average import FlipAveragedEngine
from ..model.registry import PHOTO_BUNDLED
from ..model.schemes import LandmarkScheme, get_scheme
from ..smoothing import make_smoother
from ..uncertainty import UncalibratedUncertaintyWarning, UncertaintyCalibration, uncalibrated_note
from .arguments import (bool_arg, boxes_arg, capped_threads, check_timestamp, choice_arg, float_arg, int_arg,
                        lookahead_params, output_scheme_arg)
from .detection_schedule import DetectionSchedule
from .exclusive import Exclusive
from .face import Face, NonFiniteOutputWarning, as_bgr
from .landmarker import Landmarker, Result, StageTimer
from .lookahead import LookaheadQueue
from .states import FaceStates
from .tracks import AssociationRules, Track, associate, dedupe, smooth_tracks

MAX_GAP_S = 2.0
"""A jump in time longer than this restarts every track's smoothing (the face may be anywhere by then)."""
STAGES = ("detect", "crop", "engine", "back-map", "smooth")
"""Stage names reported to :attr:`Tracker.on_stage` (decoding heatmaps to landmarks runs inside the model's
ONNX graph, so it is part of ``engine``)."""

class Tracker:
    """Facial landmark tracker for video (and single images via :meth:`detect_image`).

    Args:
        model: ``None``/``"default"`` (bundled model), a model name in the user cache, or a path
            (see :func:`star_track.model.registry.resolve_model`).
        engine: ``"auto"``, ``"onnxruntime"``, ``"tensorrt"``, ``"torch"``, or a ready :class:`LandmarkEngine`.
        smoothing: ``"face"`` (face-level, the default), ``"kalman"`` (per-landmark, the cheapest), ``"one-euro"`` or
            ``"none"``.
        smoothing_params: keyword arguments for the smoother (see :mod:`star_track.smoothing`).
        max_faces: most faces tracked at once.
        detect_every: run the detector at least every K frames (1 = every frame) to find new faces.
        background_detection: run those periodic calls (``detect_every`` > 2) on a worker thread beside the
            engine, their new faces starting 2 frames later (False: on the caller's thread, as all others).
        crop_from: ``"smoothed"`` (default: a still face keeps a still crop, about half the raw jitter) or
            ``"raw"`` landmarks frame the next crop (every smoother then sees the same measurements).
        detector: bundled BlazeFace ``"full"`` (default: finds small and distant faces too, ~5 ms per call) or
            ``"short"`` (selfie distance, ~2 ms), or a path to a ``.tflite``.
        min_detection_confidence: detector score threshold.
        output_scheme: ``None`` (the model's own points), ``"68"`` (reduce e.g. WFLW-98 to 300W-68) or ``"98"``
            (insist on WFLW's 98 points: a model with other points is a :class:`ModelError`).
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
        threads: ONNX Runtime engine threads (``None``: 1 per run, the fastest per face, with a frame's faces
            split across the usable cores, one run each: ``OnnxRuntimeEngine``; N: exactly N, no split), capped
            at the usable cores with a ``RuntimeWarning``.
        lookahead: frames of look-ahead for recorded video (0: none, live; ``smoothing="face"`` only): each frame's
            faces also come out of :meth:`settled` L frames later, their landmarks revised with those frames.
        analysis: fill ``Face.pose``, ``eye_open``, ``mouth_open``, ``blink`` (0.3-0.4 ms a frame, one face;
            :mod:`star_track.tracking.states`). ``focal``: focal length in pixels (default: the frame width);
            ``camera``: intrinsics ``(fx, fy, cx, cy)`` px (default principal point: the frame centre).

    Raises:
        ValueError: an argument of the wrong type or out of range (the message names it), e.g.
            ``max_faces=None`` or ``fps=nan``.
        ModelError / EngineUnavailable / DetectorError: at construction, when a model cannot be loaded.

    Not thread-safe: use one Tracker per thread or stream (its only thread of its own runs the detector).
    """

    def __init__(self, model: str | os.PathLike | None = None, engine: str | LandmarkEngine = "auto",
                 smoothing: str = "face", smoothing_params: dict[str, Any] | None = None, max_faces: int = 4,
                 detect_every: int = 10, detector: str | Path = "full", min_detection_confidence: float = 0.5,
                 output_scheme: str | None = None, redetect_below: float = 0.3, max_misses: int = 2,
                 uncertainty_half: float = 0.28, fps: float = 30.0, refine_steps: int = 2,
                 flip_test: bool = False, refine_tolerance: float = 0.05, threads: int | None = None,
                 analysis: bool = True, focal: float | None = None, camera: Any = None,
                 background_detection: bool = True, crop_from: str = "smoothed", lookahead: int = 0):
        # Every argument checked up front: a ValueError naming it, never a TypeError from deep inside.
        self.max_faces = int_arg("max_faces", max_faces, 1)
        every = int_arg("detect_every", detect_every, 1)
        refine_steps = int_arg("refine_steps", refine_steps, 0)
        self.max_misses = int_arg("max_misses", max_misses, 0)
        self.fps = float_arg("fps", fps, 0.0, low_open=True)
        self._min_det = float_arg("min_detection_confidence", min_detection_confidence, 0.0, 1.0)
        self.redetect_below = float_arg("redetect_below", redetect_below, 0.0, 1.0)
        uncertainty_half = float_arg("uncertainty_half", uncertainty_half, 0.0, low_open=True)
        refine_tolerance = float_arg("refine_tolerance", refine_tolerance, 0.0)
        threads, note = capped_threads(threads)
        if note is not None:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
        self.smoothing = smoothing
        self.crop_from = choice_arg("crop_from", crop_from, ("smoothed", "raw"))
        self.lookahead = int_arg("lookahead", lookahead, 0)
        self.smoothing_params = lookahead_params(smoothing, smoothing_params, self.lookahead)
        make_smoother(smoothing, **self.smoothing_params)  # validate now, not on the first face
        self.engine: LandmarkEngine = (engine if not isinstance(engine, str)
                                       else create_engine(model, engine, threads=threads))
        if bool_arg("flip_test", flip_test):
            self.engine = FlipAveragedEngine(self.engine)
        self.meta = self.engine.meta
        self.model_scheme: LandmarkScheme = get_scheme(self.meta.scheme)
        self.uncertainty = UncertaintyCalibration.from_meta(self.meta, self.model_scheme.num_points)
        self.uncertainty_calibrated = self.uncertainty.fitted
        """False: the model has no uncertainty calibration and ``Face.covariance`` is the raw STAR one."""
        if not self.uncertainty_calibrated:
            warnings.warn(uncalibrated_note(getattr(self.meta, "name", "?")), UncalibratedUncertaintyWarning, stacklevel=2)
        self.scheme: LandmarkScheme = output_scheme_arg(output_scheme, self.model_scheme, self.meta.name)
        self._reduce = self.scheme.num_points != self.model_scheme.num_points
        self._detector_spec = detector
        self.detector = FaceDetector(detector, mode="video", min_confidence=self._min_det)
        # Box -> crop calibration fitted for this detector (models may carry one per bundled detector).
        self.box_calibration = self.meta.calibration_for(str(detector))
        self._timed = StageTimer()
        self._schedule = DetectionSchedule(self.detector, every,
                                           bool_arg("background_detection", background_detection), self._timed)
        self._landmarker = Landmarker(self.engine, self.model_scheme, self.uncertainty, self.box_calibration,
                                      uncertainty_half=uncertainty_half, refine_steps=refine_steps,
                                      refine_tolerance=refine_tolerance, redetect_below=self.redetect_below,
                                      timed=self._timed)  # one timer: no reference back to the Tracker
        self._still_detector: FaceDetector | None = None
        self._exclusive = Exclusive("this Tracker is already in use by another thread (a Tracker is not "
                                    "thread-safe: use one Tracker per thread or stream)")
        self.nonfinite_faces = 0
        """Faces dropped because the model returned non-finite landmarks or covariances."""
        self.face_state = FaceStates(bool_arg("analysis", analysis), focal, camera)  # .blink_counts(): per track
        self._waiting = LookaheadQueue(self.lookahead, list(self.model_scheme.to_68 or ()) if self._reduce else None)
        self.reset()

    @classmethod
    def for_photos(cls, model: str | os.PathLike | None = None, **kwargs: Any) -> "Tracker":
        """A Tracker for :meth:`detect_image`: no smoothing, test-time flips (``flip_test=False``: none), ``model=None``:
        the most precise bundled model (:data:`~star_track.model.registry.PHOTO_BUNDLED`; cost and NME: README "Photo mode")."""
        return cls(PHOTO_BUNDLED if model is None else model, **{"smoothing": "none", "flip_test": True, **kwargs})

    # -- state -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all tracks (a scene cut, a new video; ids restart at 0). Frames awaiting look-ahead stay queued."""
        self._tracks: list[Track] = []
        self._ids = itertools.count()
        self._frame_index = 0
        self._schedule.reset()
        self._last_t: float | None = None
        # The detector's clock never goes back: a reset (a new video) continues after the last frame's time.
        self._t_offset: float = getattr(self, "_t_end", 0.0)
        self._t_end: float = self._t_offset
        self.face_state.reset()

    def start_video(self, fps: float) -> None:
        """Get ready for another video at ``fps`` frames per second, as a Tracker built for it would be (the
        models stay loaded): :meth:`reset`, the frame rate set, :attr:`nonfinite_faces` counted from zero.
        ValueError: ``fps`` is not a finite number > 0."""
        fps = float_arg("fps", fps, 0.0, low_open=True)
        self.reset()
        self.fps = fps
        self.nonfinite_faces = 0

    def close(self) -> None:
        """Release the detectors, the detection thread and the engine's threads; later calls: TrackerClosedError."""
        self._exclusive.close("this Tracker is closed (close() or the end of its with block): make a new one")
        self._schedule.close()
        for part in (self.detector, self._still_detector, self.engine):
            getattr(part, "close", lambda: None)()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    @property
    def detect_every(self) -> int:
        """Frames between the detector's periodic searches for new faces (settable between frames)."""
        return self._schedule.every

    @detect_every.setter
    def detect_every(self, every: int) -> None:
        self._schedule.every = int_arg("detect_every", every, 1)

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
        with self._exclusive:
            return self._track(frame, timestamp)

    def _track(self, frame: np.ndarray, timestamp: float | None) -> list[Face]:
        frame = as_bgr(frame)
        t = self._frame_index / self.fps if timestamp is None else check_timestamp(timestamp)
        dt = 1.0 / self.fps if self._last_t is None or t <= self._last_t else t - self._last_t
        if dt > MAX_GAP_S:  # a long gap: old velocities and positions say nothing about now
            for tr in self._tracks:
                tr.smoother.reset()
            dt = 1.0 / self.fps
        tracks = self._tracks
        dets = self._schedule.detections(frame, int(round((t + self._t_offset) * 1000)), self._frame_index, tracks,
                                         self.max_faces, self.redetect_below)
        if dets is not None:
            rules = AssociationRules(self.redetect_below, self.max_misses, self.max_faces)
            tracks = associate(tracks, dets, rules, self._new_track)
        tracks = self._run(frame, tracks, dt, smooth=True)
        self._tracks = dedupe(tracks)
        self._frame_index += 1
        self._last_t = t
        self._t_end = max(self._t_end, t + self._t_offset + dt)
        # A face wholly outside the frame (a crop moved on past the edge, a frame of another size) is not reported.
        faces = [f for f in (self._face(tr) for tr in sorted(self._tracks, key=lambda tr: tr.track_id) if tr.valid)
                 if box_in_frame(f.box, frame.shape)]
        faces = self.face_state.video(faces, frame.shape, t)
        self._waiting.push(faces, self._tracks)
        return faces

    def settled(self) -> list[list[Face]]:
        """Frames whose look-ahead is complete, oldest first (pair them with your frames in order): the faces
        :meth:`track` returned, landmarks revised with the next ``lookahead`` frames (0: the frame just tracked)."""
        with self._exclusive:
            return self._waiting.ready()

    def flush(self) -> list[list[Face]]:
        """The frames still waiting (the last ``lookahead`` at the end of a video), revised with what came after."""
        with self._exclusive:
            return self._waiting.flush()

    def detect_image(self, image: np.ndarray, max_faces: int | None = None,
                     search: str | PhotoSearch = "photo") -> list[Face]:
        """Landmarks (and face state) of every face in a still image (photo mode): IMAGE-mode detection, no
        smoothing, no effect on the video tracks. Faces are numbered 0.. in detector-score order; this Tracker's
        model (:meth:`for_photos` builds one with the most precise bundled model).

        Args:
            image: (H, W, 3) uint8 BGR (grayscale and BGRA are converted).
            max_faces: most faces returned (best detector scores first); ``None`` = all. The tracker's own
                ``max_faces`` is for video only.
            search: ``"photo"`` (default: whole image, tiles for small faces, the image turned by ±90/±45
                degrees when upright passes find none or a rolled one; :mod:`~star_track.detection.photo_search`),
                ``"single"`` (one whole-image pass as in video: fastest, misses faces under ~6 % of the image
                width or rolled past ~45 degrees) or a :class:`~star_track.detection.photo_search.PhotoSearch`.
        Raises:
            ValueError: wrong dtype / shape, ``max_faces`` < 1 or an unknown ``search``.
        """
        with self._exclusive:
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
            options = search if isinstance(search, PhotoSearch) else None
            found = photo_detect_sources(self._still_detector, image, options)
        else:
            raise ValueError(f"search must be 'photo', 'single' or a PhotoSearch, got {search!r}")
        found = found[:max_faces]
        tracks = [Track(i, make_smoother("none"), start=d) for i, (d, _) in enumerate(found)]
        whole = {id(tr): w for tr, (_, w) in zip(tracks, found)}
        tracks = self._run(image, tracks, 0.0, smooth=False)
        # Faces only the extra photo passes found must look like faces to the landmark model too.
        tracks = [tr for tr in tracks if whole[id(tr)] or tr.score >= self.redetect_below]
        tracks = dedupe(tracks, unsure_below=self.redetect_below)
        for i, tr in enumerate(tracks):
            tr.track_id = i
        return self.face_state.photo([self._face(tr) for tr in tracks if tr.valid], image.shape)

    def landmarks_for_boxes(self, image: np.ndarray, boxes: np.ndarray) -> list[Face | None]:
        """Landmarks for given face boxes (x1, y1, x2, y2 in pixels, upright faces), through exactly the path
        a newly detected face takes (box crop with the tracker's ``box_calibration``, re-framed from its own
        landmarks up to ``refine_steps`` times, see the module docs), without smoothing and without touching
        the video tracks. Returns one entry per box, in order: a :class:`Face` (``track_id`` = the box's
        index, with its face state as in photo mode) or None where the model's output was non-finite. ValueError:
        ``boxes`` not one (4,) or several (K, 4) finite boxes with x2 > x1, y2 > y1, each in the image."""
        with self._exclusive:
            image = as_bgr(image)
            tracks = [Track(i, make_smoother("none"), start=Detection(b, 1.0, np.zeros((6, 2), np.float32)))
                      for i, b in enumerate(boxes_arg(boxes, image.shape))]
            kept = [self._face(tr) for tr in self._run(image, tracks, 0.0, smooth=False) if tr.valid]
            faces = {f.track_id: f for f in self.face_state.photo(kept, image.shape)}
            return [faces.get(i) for i in range(len(tracks))]

    # -- internals -------------------------------------------------------------------------------------
    @property
    def on_stage(self) -> Callable[[str, float], None] | None:
        """Timing hook: when set, called as ``on_stage(stage, seconds)`` after each stage of each call, with
        stage one of :data:`STAGES` (``engine`` includes the decoding, which runs inside the ONNX graph)."""
        return self._timed.on_stage

    @on_stage.setter
    def on_stage(self, hook: Callable[[str, float], None] | None) -> None:
        self._timed.on_stage = hook

    def _new_track(self, start: Detection) -> Track:
        """A track for a newly detected face, with the next id and its own smoother."""
        return Track(next(self._ids), make_smoother(self.smoothing, **self.smoothing_params), start=start)

    def _run(self, frame: np.ndarray, tracks: list[Track], dt: float, smooth: bool) -> list[Track]:
        """Landmarks for every track (updated in place); returns the tracks kept (new faces whose first
        output is non-finite are dropped)."""
        if not tracks:
            return tracks
        fresh = [tr for tr in tracks if tr.start is not None]
        done = self._landmarker.refine_new_faces(frame, fresh)
        for tr in tracks:
            if tr.crop is None:  # the followed landmarks moved on by the last frame's motion (constant velocity)
                follow = tr.follow if tr.follow is not None else tr.landmarks()
                tr.crop = self._landmarker.landmark_crop(follow + tr.motion)
        # Final pass: every face of the frame without a converged result, in one batch.
        todo = [tr for tr in tracks if id(tr) not in done]
        if todo:
            crops = [tr.crop for tr in todo if tr.crop is not None]
            for tr, p, c, s in zip(todo, *self._landmarker.infer(frame, crops)):
                done[id(tr)] = (p, c, float(s))
        fresh_ids = {id(tr) for tr in fresh}
        kept = [tr for tr in tracks if self._update(tr, done[id(tr)], id(tr) in fresh_ids)]
        if smooth:  # every face at once: running Kalman filters update as one stack
            self._timed("smooth", smooth_tracks, [tr for tr in kept if tr.valid], dt, self.crop_from == "raw")
        return kept

    def _update(self, tr: Track, result: Result, fresh: bool) -> bool:
        """One face's result into its track, unsmoothed; False: drop it (a new face, non-finite first output)."""
        p, (c, star_c), s = result
        tr.valid = bool(np.isfinite(p).all() and np.isfinite(c).all())
        if not tr.valid:
            self._count_nonfinite()
            tr.crop, tr.score, tr.motion = None, 0.0, np.zeros(2)  # score 0: re-detect next frame
            return tr.points is not None
        tr.continues = tr.points is not None and s >= self.redetect_below and not fresh
        tr.points, tr.cov, tr.star_cov, tr.score = p, c, star_c, float(s)
        assert tr.crop is not None  # every track run this frame has one
        tr.size, tr.smoothed, tr.crop = tr.crop.side / self.meta.crop_scale, p, None  # smoothed in _run
        return True

    def _count_nonfinite(self) -> None:
        self.nonfinite_faces += 1
        if self.nonfinite_faces == 1:
            warnings.warn("the model returned non-finite (NaN/inf) landmarks; such faces are left out of the "
                          "results (count: Tracker.nonfinite_faces)", NonFiniteOutputWarning, stacklevel=6)

    def _face(self, tr: Track) -> Face:
        return tr.face(self.model_scheme.outer_eye_corners, self._waiting.select)
