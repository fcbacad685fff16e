"""Temporal smoothing of head poses in video: a constant-velocity (alpha-beta) filter on rotation and translation.

Each of the 6 pose parameters is filtered on its own with a position-velocity state: the rotation as a small
camera-frame angle relative to the predicted rotation (no Euler angles, so no wrap at +-180 degrees and no gimbal
lock at 90 degrees of yaw), the translation in cm. The gains are those of the steady-state Kalman filter for a
constant-velocity model with random acceleration (Kalata's alpha-beta tracking index
``lambda = accel * dt^2 / measurement sd``), computed per frame from the variance the pose solver reports for
this frame: an uncertain frame (a blurred or turned face) moves the estimate less than a sharp one, and no
covariance state is kept. At the defaults a talking head's per-frame jitter falls by about a third and a head
turning at constant speed is followed without lag; the start of a fast turn lags about a frame.

An innovation beyond ``gate`` standard deviations (a cut, a jump, a track given to another face) restarts the
track from the measurement, as does a gap longer than ``max_gap`` seconds.

The state of all tracks lives in arrays indexed by a slot per track; :meth:`PoseFilter.update` takes the faces of
one frame together.
"""
from __future__ import annotations

import math

import numpy as np

from .pose_batch import turn_matrix, turn


class PoseFilter:
    """Alpha-beta (steady-state constant-velocity Kalman) filter per track on (rotation, translation)."""

    def __init__(self, rotation_accel: float = 10.0, translation_accel: float = 40.0, gate: float = 6.0,
                 max_gap: float = 0.5, capacity: int = 8):
        """``rotation_accel`` (rad/s^2) and ``translation_accel`` (cm/s^2): the standard deviation of the
        head's random acceleration (larger follows faster, smooths less); ``gate``: innovation in standard
        deviations that restarts a track; ``max_gap``: seconds without a measurement after which a track
        restarts."""
        self.accel = np.array([rotation_accel] * 3 + [translation_accel] * 3)
        self._accel = self.accel.tolist()
        self.gate2 = gate * gate
        self.max_gap = max_gap
        self.rot = np.tile(np.eye(3), (capacity, 1, 1))
        self.t = np.zeros((capacity, 3))
        self.vel = np.zeros((capacity, 6))  # camera-frame angular velocity (rad/s), velocity (cm/s)
        self.last = np.full(capacity, -np.inf)

    def ensure(self, slots: int) -> None:
        """Make room for slot indices below ``slots``."""
        n = len(self.rot)
        if slots > n:
            add = max(slots, 2 * n) - n
            self.rot = np.concatenate([self.rot, np.tile(np.eye(3), (add, 1, 1))])
            self.t = np.concatenate([self.t, np.zeros((add, 3))])
            self.vel = np.concatenate([self.vel, np.zeros((add, 6))])
            self.last = np.concatenate([self.last, np.full(add, -np.inf)])

    def reset(self, slot: int) -> None:
        """Forget a slot's track (the next measurement starts it afresh)."""
        self.last[slot] = -np.inf

    def predict(self, slots: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted rotations (F, 3, 3) and translations (F, 3) of the slots at ``time`` (NaN rows for tracks
        that start afresh) and each slot's time step in s (NaN for those)."""
        if len(slots) == 1:
            return self._predict_one(int(slots[0]), time)
        dt = time - self.last[slots]
        fresh = ~(dt <= self.max_gap) | (dt < 0)  # a first frame (last = -inf), a gap, time going backwards
        any_fresh = fresh.any()
        if any_fresh:
            dt[fresh] = 0.0
        dt = np.maximum(dt, 1e-6)  # a repeated time stamp: (almost) no motion, no division by zero below
        step = self.vel[slots] * dt[:, None]
        rot = turn(step[:, :3], self.rot[slots])
        t = self.t[slots] + step[:, 3:]
        if any_fresh:
            rot[fresh], t[fresh], dt[fresh] = np.nan, np.nan, np.nan
        return rot, t, dt

    def _predict_one(self, slot: int, time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict` for one slot in Python floats (the same formulas)."""
        dt = time - float(self.last[slot])
        if not dt <= self.max_gap or dt < 0:
            return np.full((1, 3, 3), np.nan), np.full((1, 3), np.nan), np.full(1, np.nan)
        dt = max(dt, 1e-6)
        v0, v1, v2, v3, v4, v5 = self.vel[slot].tolist()
        rot = self.rot[slot:slot + 1]
        rot = rot + turn_matrix(v0 * dt, v1 * dt, v2 * dt) @ rot
        return rot, self.t[slot:slot + 1] + [v3 * dt, v4 * dt, v5 * dt], np.array([dt])

    def update(self, slots: np.ndarray, time: float, pred: tuple[np.ndarray, np.ndarray, np.ndarray],
               rot_m: np.ndarray, t_m: np.ndarray, z_rot: np.ndarray, var_m: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Fold this frame's measured poses into the slots' states; returns the smoothed (rotation, translation).

        ``z_rot`` (F, 3): the measured rotation relative to the predicted one as a camera-frame angle
        (``rot_m ~ exp([z_rot]x) rot_p``, what the Gauss-Newton steps from the prediction add up to);
        ``var_m`` (F, 6): this frame's variances of the 3 angles (rad^2) and the translation (cm^2).
        """
        if len(slots) == 1:
            one = self._update_one(int(slots[0]), time, pred, rot_m, t_m, z_rot, var_m)
            if one is not None:
                return one
        rot_p, t_p, dt = pred
        z = np.concatenate([z_rot, t_m - t_p], 1)  # (F, 6) innovation
        sd = np.sqrt(var_m)
        lam = self.accel * (dt * dt)[:, None] / sd  # Kalata's tracking index
        r = (4.0 + lam - np.sqrt(lam * (8.0 + lam))) * 0.25
        alpha = 1.0 - r * r
        # Steady-state innovation variance var_m / (1 - alpha): beyond the gate (or NaN: fresh) restarts.
        restart = ~((z * z * (r * r) / var_m).max(1) <= self.gate2)
        x = alpha * z
        rot = turn(x[:, :3], rot_p)
        t = t_p + x[:, 3:]
        vel = self.vel[slots] + (2.0 * (1.0 - r) ** 2 / dt[:, None]) * z
        if restart.any():
            rot[restart], t[restart], vel[restart] = rot_m[restart], t_m[restart], 0.0
        self.rot[slots], self.t[slots], self.vel[slots], self.last[slots] = rot, t, vel, time
        return rot, t

    def _update_one(self, slot: int, time: float, pred: tuple[np.ndarray, np.ndarray, np.ndarray],
                    rot_m: np.ndarray, t_m: np.ndarray, z_rot: np.ndarray, var_m: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`update` for one face in Python floats (the same formulas, far fewer numpy calls); None where
        a zero variance or time step needs numpy's inf / NaN semantics."""
        rot_p, t_p, dt_a = pred
        dt = float(dt_a[0])
        tp, var = t_p[0].tolist(), var_m[0].tolist()
        z = z_rot[0].tolist() + [a - b for a, b in zip(t_m[0].tolist(), tp)]
        try:
            x, dv = [], []
            restart = False
            for zi, vi, acc, vel in zip(z, var, self._accel, self.vel[slot].tolist()):
                lam = acc * (dt * dt) / math.sqrt(vi)  # Kalata's tracking index
                r = (4.0 + lam - math.sqrt(lam * (8.0 + lam))) * 0.25
                restart = restart or not zi * zi * (r * r) / vi <= self.gate2
                x.append((1.0 - r * r) * zi)
                dv.append(vel + 2.0 * (1.0 - r) ** 2 / dt * zi)
        except (ZeroDivisionError, ValueError):
            return None
        if restart:
            rot, t = rot_m.copy(), t_m.copy()
            self.vel[slot] = 0.0
        else:
            rot = rot_p + turn_matrix(x[0], x[1], x[2]) @ rot_p  # turn() for one face, without a list -> array
            t = np.array([tp[0] + x[3], tp[1] + x[4], tp[2] + x[5]]).reshape(1, 3)
            self.vel[slot] = dv
        self.rot[slot], self.t[slot], self.last[slot] = rot[0], t[0], time
        return rot, t
