"""Tracks: one face followed from frame to frame (:class:`Track`), and the rules that keep its id: detections
matched to tracks (:func:`associate`), a lost track re-acquiring its face, two tracks on one face merged
(:func:`dedupe`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..crop import Crop
from ..detection.blazeface import Detection
from ..detection.boxes import box_inside, box_iou, nms
from ..smoothing import Smoother
from ..smoothing.batched import update_all
from ..uncertainty import expected_error
from .face import Face


@dataclass
class Track:
    """One face followed from frame to frame (the tracker's state for it; coordinates in frame pixels)."""

    track_id: int
    smoother: Smoother
    points: np.ndarray | None = None
    """Raw landmarks in the model's scheme (None until the track has run once)."""
    cov: np.ndarray | None = None
    """Calibrated covariances of :attr:`points`."""
    star_cov: np.ndarray | None = None
    """Raw STAR covariances of :attr:`points`."""
    smoothed: np.ndarray | None = None
    score: float = 0.0
    misses: int = 0
    """Detection rounds in a row that did not confirm the track."""
    start: Detection | None = None
    """The detection to (re)start the crop from this frame."""
    crop: Crop | None = None
    follow: np.ndarray | None = None
    """The landmarks the next crop frames: the smoothed ones (the tracker's ``crop_from``: or the raw ones)."""
    motion: np.ndarray = field(default_factory=lambda: np.zeros(2))
    """Centre shift of :attr:`follow` over the last frame (the next crop moves on by it)."""
    continues: bool = False
    """This frame's points continue a confident track (not a new or re-acquired start): motion counts."""
    valid: bool = True
    """False: this frame's output was non-finite (not reported, filter untouched)."""
    size: float = 1.0
    """Face size in pixels (crop side over the model's crop scale), the smoothers' scale."""

    def box(self) -> np.ndarray:
        """x1, y1, x2, y2 of the track's landmarks."""
        p = self.landmarks()
        return np.array([*p.min(0), *p.max(0)], np.float64)

    def landmarks(self) -> np.ndarray:
        """:attr:`points`, for a track that has run (every track the tracker keeps between frames has)."""
        if self.points is None:
            raise ValueError(f"track {self.track_id} has no landmarks yet")
        return self.points

    def face(self, eye_corners: tuple[int, int], select: list[int] | None) -> Face:
        """This frame's :class:`Face` (no face state yet); ``eye_corners``: the model's outer eye corners (for the
        expected error, on the model's own points); ``select``: the points reported (None: all)."""
        raw, smoothed, cov, star_cov = self.landmarks(), self.smoothed, self.cov, self.star_cov
        assert smoothed is not None and cov is not None and star_cov is not None  # set with the landmarks
        err = expected_error(raw, cov, eye_corners)
        if select is not None:
            raw, smoothed, cov, star_cov = raw[select], smoothed[select], cov[select], star_cov[select]
        box = np.concatenate([raw.min(0), raw.max(0)]).astype(np.float32)
        return Face(track_id=self.track_id, box=box, score=self.score, landmarks=smoothed.astype(np.float32),
                    raw_landmarks=raw.astype(np.float32), covariance=cov.astype(np.float32),
                    star_covariance=star_cov.astype(np.float32), expected_error=float(err))


def same_framing(a: Crop, b: Crop, tolerance: float) -> bool:
    """Crops within ``tolerance`` of each other: centre shift and side change as fractions of the side, angle
    in radians. A prediction on ``a`` then stands for one on ``b`` (the network is trained with larger jitter)."""
    shift = float(np.hypot(a.center[0] - b.center[0], a.center[1] - b.center[1])) / a.side
    dangle = abs((a.angle - b.angle + np.pi) % (2 * np.pi) - np.pi)
    return shift <= tolerance and abs(np.log(b.side / a.side)) <= tolerance and dangle <= 2 * tolerance


@dataclass(frozen=True)
class AssociationRules:
    """When a track keeps its face, loses it, or a new face starts a track."""

    redetect_below: float
    """A track below this score has lost its face: a detection restarts its crop."""
    max_misses: int
    """Detection rounds a confident track may go unconfirmed before it is dropped."""
    max_faces: int
    """Most tracks at once (new faces beyond it are not tracked)."""


def associate(tracks: list[Track], dets: list[Detection], rules: AssociationRules,
              new_track: Callable[[Detection], Track]) -> list[Track]:
    """Match detections to tracks (by IoU, or the track's landmark centre inside the box), drop unconfirmed
    tracks, start tracks (``new_track``) for new faces; returns the tracks to run this frame."""
    matched_t: set[int] = set()
    matched_d: set[int] = set()
    if tracks and dets:
        dboxes = np.stack([d.box for d in dets])
        iou = box_iou(np.stack([tr.box() for tr in tracks]), dboxes)
        centres = np.stack([tr.landmarks().mean(0) for tr in tracks])
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
            if tr.score < rules.redetect_below:  # lost its face: restart the crop from the detector box
                tr.start = dets[di]
    _reacquire(tracks, dets, matched_t, matched_d, rules.redetect_below)
    kept = []
    for i, tr in enumerate(tracks):
        if i not in matched_t:
            tr.misses += 1
            if tr.score < rules.redetect_below or tr.misses >= rules.max_misses:
                continue
        kept.append(tr)
    for di, d in enumerate(dets):
        if di in matched_d or len(kept) >= rules.max_faces:
            continue
        kept.append(new_track(d))
    return kept


def _reacquire(tracks: list[Track], dets: list[Detection], matched_t: set[int], matched_d: set[int],
               redetect_below: float) -> None:
    """A lost track (low score, no overlapping detection: the face moved faster than the crop followed)
    takes the nearest unmatched detection within two face sizes, so it keeps its id; its filter restarts."""
    for ti, tr in enumerate(tracks):
        if ti in matched_t or tr.score >= redetect_below:
            continue
        tb = tr.box()
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


def dedupe(tracks: list[Track], unsure_below: float | None = None) -> list[Track]:
    """Two tracks that converged onto one face: keep the more confident (older on ties). With ``unsure_below``
    (photo mode), also drop a track below that score whose box lies mostly (half its area) inside a confident
    track's: a second, misframed detection of a face already found (the landmarks of such a crop are garbage,
    and two boxes of one face need not overlap enough for the IoU test)."""
    if len(tracks) < 2:
        return tracks
    by_id = sorted(range(len(tracks)), key=lambda i: tracks[i].track_id)  # equal scores: the older track wins
    boxes = np.stack([tracks[i].box() for i in by_id])
    scores = np.array([tracks[i].score for i in by_id])
    keep = nms(boxes, scores, iou=0.6)
    if unsure_below is not None:
        sure = [k for k in keep if scores[k] >= unsure_below]
        keep = [k for k in keep if scores[k] >= unsure_below or not sure
                or box_inside(boxes[k], boxes[sure]).max() < 0.5]
    return [tracks[i] for i in sorted(by_id[k] for k in keep)]



def smooth_tracks(tracks: list[Track], dt: float, follow_raw: bool = False) -> None:
    """Smooth every track's new landmarks (``smoothed`` from ``points``), all faces of the frame at once
    (:func:`~star_track.smoothing.batched.update_all`), and set what the next crop follows (:attr:`Track.follow`,
    the smoothed points unless ``follow_raw``) and its motion."""
    pts = [tr.landmarks() for tr in tracks]
    covs = [tr.cov if tr.cov is not None else np.full((len(p), 2, 2), np.nan) for tr, p in zip(tracks, pts)]
    smoothed = update_all([tr.smoother for tr in tracks], pts, covs, dt, [tr.size for tr in tracks])
    for tr, sm, p in zip(tracks, smoothed, pts):
        now, before = (p if follow_raw else sm), tr.follow
        tr.motion = now.mean(0) - before.mean(0) if tr.continues and before is not None else np.zeros(2)
        tr.smoothed, tr.follow = sm, now
