"""The tracker's per-face path: face crops -> one batched engine call -> landmarks and (calibrated, raw)
covariances in frame pixels with a confidence score; and a new face's crop, re-framed from its own landmarks
until it settles (:meth:`Landmarker.refine_new_faces`)."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..crop import Crop, crop_from_box, crop_from_landmarks, crops_to_frame
from ..engines.base import LandmarkEngine
from ..model.schemes import LandmarkScheme
from ..uncertainty import UncertaintyCalibration, landmark_score
from .tracks import Track, same_framing

Result = tuple[np.ndarray, tuple[np.ndarray, np.ndarray], float]
"""One face's engine output in frame pixels: landmarks, (calibrated, raw) covariances, score."""


class StageTimer:
    """``timer(stage, fn, *args)`` runs ``fn(*args)`` and, when :attr:`on_stage` is set, reports its time to it
    as ``on_stage(stage, seconds)`` (the tracker's timing hook, shared with its :class:`Landmarker`)."""

    def __init__(self) -> None:
        self.on_stage: Callable[[str, float], None] | None = None

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        if self.on_stage is None:
            return fn(*args)
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.on_stage(stage, time.perf_counter() - t0)

    def report(self, stage: str, seconds: float) -> None:
        """Report a time measured elsewhere (a stage that ran partly on another thread)."""
        if self.on_stage is not None:
            self.on_stage(stage, seconds)


class Landmarker:
    """Landmarks of face crops with the tracker's engine, calibration and framing rules.

    Args:
        engine: the landmark engine (its ``meta`` gives the crop size and scale).
        scheme: the model's landmark scheme (its outer eye corners level the landmark crops).
        uncertainty: the model's uncertainty calibration (applied in crop units).
        box_calibration: detector box -> crop calibration for the tracker's detector.
        uncertainty_half, refine_steps, refine_tolerance, redetect_below: as for
            :class:`~star_track.tracking.tracker.Tracker`.
        timed: the :class:`StageTimer` that runs (and times) each stage.
    """

    def __init__(self, engine: LandmarkEngine, scheme: LandmarkScheme, uncertainty: UncertaintyCalibration,
                 box_calibration: tuple[float, float, float], *, uncertainty_half: float, refine_steps: int,
                 refine_tolerance: float, redetect_below: float, timed: StageTimer):
        self.engine, self.scheme, self.uncertainty = engine, scheme, uncertainty
        self.box_calibration = box_calibration
        self.uncertainty_half = uncertainty_half
        self.refine_steps = refine_steps
        self.refine_tolerance = refine_tolerance
        self.redetect_below = redetect_below
        self._timed = timed

    def infer(self, frame: np.ndarray, crops: list[Crop]
              ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """One batched engine call -> per crop frame-pixel means and (calibrated, raw) covariances, and scores."""
        batch = np.stack([self._timed("crop", c.warp, frame) for c in crops])
        mean, cov = self._timed("engine", self.engine.infer, batch)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite outputs are handled by _run
            return self._timed("back-map", self._back_map, crops, mean, cov)

    def _back_map(self, crops: list[Crop], mean: np.ndarray, cov: np.ndarray
                  ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Scores, calibration (in crop units: it is scale-free) and the map to frame pixels, each one call
        for all faces of the frame (the per-frame cost is mostly the count of numpy calls)."""
        raw = np.asarray(cov, np.float64)
        scores = landmark_score(raw, self.uncertainty_half)
        pts, both = crops_to_frame(crops, np.asarray(mean, np.float64), np.stack([raw, self.uncertainty.apply(raw)]))
        return list(pts), [(both[1, b], both[0, b]) for b in range(len(crops))], scores

    def landmark_crop(self, points: np.ndarray) -> Crop:
        """The crop framing ``points`` (the model's scheme) as the training crops were: rolled level."""
        return crop_from_landmarks(points, self.engine.meta.input_size, self.engine.meta.crop_scale, rotate=True,
                                   eye_corners=self.scheme.outer_eye_corners)

    def refine_new_faces(self, frame: np.ndarray, fresh: list[Track]) -> dict[int, Result]:
        """Crop the faces starting from a detector box, then re-frame each from its own landmarks while
        confident (each step brings the framing closer to the training crops). A face whose re-framed crop is
        (nearly) the crop it was just predicted on has converged: that prediction is final and costs no further
        pass, so a well-framed face takes 2 passes, not 1 + steps. Returns id(track) -> final result; sets
        every fresh track's crop (the one its final pass uses)."""
        done: dict[int, Result] = {}
        starts = [tr.start for tr in fresh if tr.start is not None]
        crops = [crop_from_box(d.box, self.engine.meta.input_size, self.box_calibration, d.roll) for d in starts]
        box_sides = [c.side for c in crops]
        active = list(range(len(fresh)))
        for _ in range(self.refine_steps if fresh else 0):
            pts, covs, scores = self.infer(frame, [crops[k] for k in active])
            still = []
            for k, p, c, s in zip(active, pts, covs, scores):
                if not np.isfinite(p).all():  # judged (and dropped) with the final results
                    done[id(fresh[k])] = (p, c, float(s))
                    continue
                refined = self.landmark_crop(p)
                unsure = s < self.redetect_below or not 0.5 <= refined.side / box_sides[k] <= 2.0
                if unsure or same_framing(crops[k], refined, self.refine_tolerance):
                    # Converged, or nothing better to frame from: another pass on this crop would only
                    # repeat this prediction.
                    done[id(fresh[k])] = (p, c, float(s))
                    continue
                crops[k] = refined
                still.append(k)
            active = still
            if not active:
                break
        for tr, crop in zip(fresh, crops):
            tr.crop, tr.start = crop, None
        return done
