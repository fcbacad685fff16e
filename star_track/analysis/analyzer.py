"""Per-frame face state for the tracker: head pose (smoothed in video), eye and mouth openness, blinks.

One call per frame: :meth:`FrameAnalyzer.update` takes every tracked face of the frame (track ids, raw
landmarks, their calibrated covariances, the frame size and time) and returns one :class:`FaceState` per face.
It solves all the frame's poses together (:func:`.pose_batch.solve_core`), each warm-started from its track's
predicted pose, smooths them with :class:`.pose_filter.PoseFilter`, measures the openness and feeds each
track's blink detector. :class:`FaceAnalyzer` is the same for one track.

Inputs are the *raw* landmarks (``Face.raw_landmarks``) and ``Face.covariance``: the covariance describes the
raw points' error (what weights the pose), and the landmark smoother would blunt a three-frame lid closure.
The pose gets its own smoothing.

Angles (degrees, 300W-LP / AFLW2000 ``Pose_Para`` convention as 3DDFA defines it; frontal = (0, 0, 0)):
yaw > 0 the subject turns to their own right (the nose moves to the image left), pitch > 0 looks up, roll > 0
the face turns clockwise in the image (see :mod:`star_track.analysis.pose`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from star_track.errors import StarTrackError

from .blinks import Blink, BlinkDetector
from .mean_face import MeanFace, mean_face
from .openness import openness_arrays, openness_one
from .pose import Camera, Pose, PoseError
from .pose_angles import pose_angles_lists
from .pose_batch import PoseCore, solve_core
from .pose_filter import PoseFilter

COLUMNS: tuple[str, ...] = ("yaw", "pitch", "roll", "yaw_sd", "pitch_sd", "roll_sd", "eye_open_left",
                            "eye_open_right", "mouth_open", "blink")
"""Output columns of a face's state, in order (:meth:`FaceState.columns`); ``blink`` is 1 while the eyes are
closed in a closure the blink detector is following, else 0."""

_NAN_POSE_ARGS = (math.nan,) * 6


@dataclass(frozen=True)
class FaceState:
    """What the analysis knows about one face in one frame."""

    track_id: int
    time: float
    pose: Pose | None
    """Head pose, temporally smoothed in video (None when no pose fits the landmarks)."""
    eye_open: tuple[float, float]
    """(left, right) eye openness, the subject's own sides: ~1 open (the mean face's lid gap), 0 closed."""
    mouth_open: float
    """Inner-lip gap over the mean face's mouth width: 0 closed, ~0.1 relaxed, > 0.5 wide open."""
    eyes_closed: bool
    """True while the eyes are below the blink detector's close threshold (the per-frame blink flag)."""
    blink: Blink | None = None
    """The blink that ended at this frame (its start and end times), if one did."""
    _solved: tuple[PoseCore, int, Camera] | None = field(default=None, repr=False, compare=False)

    def measured(self) -> Pose | None:
        """This frame's own pose, before smoothing (computed on demand; ``pose`` for a photo or a track's
        first frame)."""
        if self._solved is None:
            return self.pose
        core, i, cam = self._solved
        if not core.ok[i]:
            return None
        r, t, c = core.rotation[i:i + 1], core.translation[i:i + 1], core.rotation_cov[i:i + 1]
        (a,), (s,) = pose_angles_lists(r, t, c)
        return Pose(a[0], a[1], a[2], s[0], s[1], s[2], r[0], t[0], float(core.rms[i]), cam)

    def columns(self) -> dict[str, float]:
        """The :data:`COLUMNS` values (NaN where unknown)."""
        p = self.pose
        a = (p.yaw, p.pitch, p.roll, p.yaw_sd, p.pitch_sd, p.roll_sd) if p is not None else _NAN_POSE_ARGS
        return dict(zip(COLUMNS, (*a, self.eye_open[0], self.eye_open[1], self.mouth_open,
                                  1.0 if self.eyes_closed else 0.0)))


class FrameAnalyzer:
    """Face state of every track, one :meth:`update` per frame (the state of tracks lives here)."""

    def __init__(self, *, focal: float | None = None, camera: Camera | None = None, smooth: bool = True,
                 face: MeanFace | None = None, pose_filter: PoseFilter | None = None,
                 blinks: BlinkDetector | None = None, forget_after: float = 2.0):
        """``focal``: focal length in px (default: the frame width), ``camera``: full intrinsics for every
        frame (overrides ``focal``; default principal point: the frame centre). ``smooth``: temporal pose
        smoothing (off: each frame's own pose). ``face``: the 3D mean face (default: by the landmark count,
        68 or 98). ``forget_after``: seconds after which an unseen track's state is dropped."""
        if focal is not None and not focal > 0:
            raise PoseError(f"focal length must be positive, got {focal}")
        self.focal, self.camera, self.smooth, self.face = focal, camera, smooth, face
        self.filter = pose_filter if pose_filter is not None else PoseFilter()
        self.detector = blinks if blinks is not None else BlinkDetector()
        self.forget_after = forget_after
        self.blinks: list[Blink] = []
        """Every blink that has ended so far, in order."""
        self._slots: dict[int, int] = {}
        self._seen: dict[int, float] = {}
        self._cameras: dict[tuple[int, int], Camera] = {}
        self._faces: dict[int, MeanFace] = {}  # mean face by point count (mean_face() costs more per frame)

    def camera_for(self, frame_size: tuple[int, int]) -> Camera:
        """The intrinsics used for frames of ``frame_size = (width, height)``."""
        if self.camera is not None:
            return self.camera
        cam = self._cameras.get(frame_size)
        if cam is None:
            cam = self._cameras[frame_size] = Camera.default(frame_size[0], frame_size[1], self.focal)
        return cam

    def blink_counts(self) -> dict[int, int]:
        """Blinks per track so far (tracks without a blink are left out)."""
        out: dict[int, int] = {}
        for b in self.blinks:
            out[b.track_id] = out.get(b.track_id, 0) + 1
        return out

    def end_track(self, track_id: int) -> None:
        """Forget a track's state (its next face starts afresh)."""
        slot = self._slots.pop(track_id, None)
        self._seen.pop(track_id, None)
        if slot is not None:
            self.filter.reset(slot)
        self.detector.drop(track_id)

    def _slot_of(self, track_ids: Sequence[int], time: float) -> np.ndarray:
        out = []
        for k in track_ids:
            slot = self._slots.get(k)
            if slot is None:
                for old in [o for o, s in self._seen.items() if time - s > self.forget_after]:
                    self.end_track(old)
                used = set(self._slots.values())
                slot = next(i for i in range(len(used) + 1) if i not in used)
                self.filter.ensure(slot + 1)
                self.filter.reset(slot)
                self._slots[k] = slot
            self._seen[k] = time
            out.append(slot)
        return np.array(out, dtype=np.intp)

    def update(self, track_ids: Sequence[int], raw_points: np.ndarray, covariance: np.ndarray | None,
               frame_size: tuple[int, int], time: float) -> list[FaceState]:
        """States of one frame's faces: ``track_ids`` (F,), ``raw_points`` (F, N, 2) px, ``covariance``
        (F, N, 2, 2) px^2 (None: 1 px^2 each), ``frame_size`` (width, height), ``time`` in seconds."""
        ids = [int(k) for k in track_ids]
        pts = np.asarray(raw_points, dtype=np.float64)
        if pts.ndim != 3 or len(pts) != len(ids):
            raise PoseError(f"raw_points must be (faces, N, 2) with one row per track id ({len(ids)}), "
                            f"got shape {pts.shape}")
        if len(set(ids)) != len(ids):
            raise StarTrackError(f"track ids of one frame must be distinct, got {ids}")
        if not ids:
            return []
        face = self.face if self.face is not None else self._faces.get(pts.shape[1])
        if face is None:
            face = self._faces[pts.shape[1]] = mean_face(pts.shape[1])
        cam = self.camera_for((int(frame_size[0]), int(frame_size[1])))
        slots = self._slot_of(ids, time)
        pred = self.filter.predict(slots, time) if self.smooth else None
        core = solve_core(pts, covariance, cam, None if pred is None else (pred[0], pred[1]), face)
        rot, t = self._smoothed(slots, time, pred, core)
        a, s = pose_angles_lists(rot, t, core.rotation_cov)
        # Openness with this frame's own pose: it normalises the points it was solved from.
        if len(ids) == 1:
            openness = [openness_one(core.normalised[0], core.rotation[0], core.translation[0], face)]
        else:
            openness = openness_arrays(core.normalised, core.rotation, core.translation, face).tolist()
        rms, ok = core.rms.tolist(), core.ok.tolist()
        out = []
        for i, k in enumerate(ids):
            left, right, mouth = openness[i]
            closed, blink = self.detector.update(k, time, 0.5 * (left + right))
            if blink is not None:
                self.blinks.append(blink)
            ai, si = a[i], s[i]
            pose = Pose(ai[0], ai[1], ai[2], si[0], si[1], si[2], rot[i], t[i], rms[i], cam) if ok[i] else None
            out.append(FaceState(k, time, pose, (left, right), mouth, closed, blink, (core, i, cam)))
        return out

    def _smoothed(self, slots: np.ndarray, time: float, pred: tuple[np.ndarray, ...] | None,
                  core: PoseCore) -> tuple[np.ndarray, np.ndarray]:
        if pred is None:
            return core.rotation, core.translation
        var, ok = core.variances, core.ok
        if all(ok.tolist()):  # (Python's all: cheaper than a numpy reduction on a frame's few faces)
            return self.filter.update(slots, time, (pred[0], pred[1], pred[2]), core.rotation, core.translation,
                                      core.moved, var)
        rot, t = core.rotation.copy(), core.translation.copy()
        if ok.any():
            rot[ok], t[ok] = self.filter.update(slots[ok], time, (pred[0][ok], pred[1][ok], pred[2][ok]), rot[ok],
                                                t[ok], core.moved[ok], var[ok])
        for slot in slots[~ok].tolist():
            self.filter.reset(slot)
        return rot, t


class FaceAnalyzer:
    """The face state of one track: :class:`FrameAnalyzer` for a single face per frame."""

    def __init__(self, track_id: int = 0, **options: object):
        """``options`` go to :class:`FrameAnalyzer` (``focal``, ``camera``, ``smooth``, ``face``, ...)."""
        self.track_id = int(track_id)
        self.frames = FrameAnalyzer(**options)  # type: ignore[arg-type]

    @property
    def blinks(self) -> list[Blink]:
        """Every blink of this track that has ended so far."""
        return self.frames.blinks

    def update(self, raw_points: np.ndarray, covariance: np.ndarray | None, frame_size: tuple[int, int],
               time: float) -> FaceState:
        """This frame's state from the face's (N, 2) raw landmarks and (N, 2, 2) covariance."""
        cov = None if covariance is None else np.asarray(covariance)[None]
        return self.frames.update([self.track_id], np.asarray(raw_points)[None], cov, frame_size, time)[0]


def analyze_photo(raw_points: np.ndarray, covariance: np.ndarray | None, frame_size: tuple[int, int], *,
                  focal: float | None = None, camera: Camera | None = None) -> list[FaceState]:
    """States of the F faces of a still image ((F, N, 2) points, (F, N, 2, 2) covariances): no smoothing,
    no blinks (``eyes_closed`` is False)."""
    an = FrameAnalyzer(focal=focal, camera=camera, smooth=False)
    an.detector = BlinkDetector(warmup=1 << 30)  # never leaves warm-up: a photo has no blink
    return an.update(range(len(raw_points)), raw_points, covariance, frame_size, 0.0)
