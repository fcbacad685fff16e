"""Face-level smoother: one rigid motion, a few shape modes and a per-landmark residual, each with its own dynamics.

A face moves mostly rigidly, plus a few non-rigid modes (mouth, eyelids, brows). Filtering 68 landmarks as 68
independent objects leaves most of the gain on the table. Model, in the *face frame* (the mean training shape,
centred, eyes level, landmark box sqrt(w h) = 1):

    landmark_i = s R(theta) (mean_i + B_i c + e_i) + t

- **rigid** (t_x, t_y, log s, theta): estimated every frame with all landmarks at once, each landmark's vote
  weighted by the inverse of its measurement noise R_i = r_scale Σ_i + (r_floor scale)² I (Σ_i: its calibrated
  STAR covariance, so a jaw point votes along the jaw normal and hardly along the jaw), and filtered by a 4-D
  constant-velocity Kalman filter;
- **shape modes** c (optional, ``basis=True``): region-wise PCA modes of the training shapes (jaw, brows, nose,
  eyes, mouth; ``shape_basis.npz`` from ``python -m train.shape_basis``), estimated jointly with the rigid motion
  in the same weighted least squares and filtered as one constant-velocity filter per mode, gated per region
  (a blink opens the eye modes' gate while the rest of the face stays smoothed);
- **residual** e: the rest of the shape in the face frame, filtered per landmark: slowly (q_residual) while it
  stays within the noise, followed at once (gate) when a part that moves as one really moves: a lid, one side
  of a lip, a brow (``face_model.point_parts``). A blink's pooled innovations over the lid's points stand out of
  the noise where one landmark's do not, and noise on a single point no longer opens its gate.

The default runs without the modes: on the benchmark (``benchmarks/README.md``, stability section) the
per-landmark residual with its own gate follows the mouth and blinks better at lower jitter than the modes,
whose pooled gates open the whole region on noise (or smooth a real movement away when set higher). Without a
basis for the point count (any scheme other than 68 / 98 points) there are no modes either way; the residual is
measured around the first frame's own shape.

Per-frame cost: one (4 + K)-unknown least-squares solve and three small filter banks, all vectorised (no loop
over landmarks). The per-landmark output covariance is :attr:`FaceLevelSmoother.last_cov`.
"""
from __future__ import annotations

import math

import numpy as np

from .cv_bank import CVBank, inv_one
from .face_model import J as _J
from .face_model import inv2, load_basis, measurement_noise, point_parts, rotation, similarity_init
from .fixed_lag import FixedLagWindow


class FaceLevelSmoother:
    """Face-level filter on (N, 2) landmarks with (N, 2, 2) covariances (see the module docs).

    Measurement noise: R_i = r_scale * a * Σ_i + (r_floor scale)² I, where ``a`` is the measured noise level, the
    frame-to-frame noise variance over the calibrated covariance (which predicts the total error, static bias
    included, and is far larger than the noise: 13-480x on the benchmark faces). ``a`` is tracked online
    (:meth:`track_noise`), so the gates are in units of the real noise whatever the model and the video.

    Args:
        r_scale: multiplier on the noise-matched R. Larger = smoother, more lag.
        r_floor: noise floor as a standard deviation in face sizes.
        q_rigid: process-noise density of the rigid motion, (face sizes / s²)² per Hz (a rotation or scale
            change counts as the motion of a landmark at the face's RMS radius).
        rigid_speed_ref: face speed (face sizes / s) at which the rigid process noise is 4x ``q_rigid``.
        rigid_gate, shape_gate, residual_gate: innovation gates, NIS per degree of freedom above which a block's
            prior is inflated (0 disables), with the NIS pooled per group: the shape modes per region (jaw, each
            brow, nose, each eye, mouth), the residual per moving part (each lid, each lip side, the corners).
        q_shape: process-noise density of each shape mode, in (mode standard deviations / s²)² per Hz.
        shape_speed_ref: mode speed (standard deviations / s) at which its process noise is 4x ``q_shape``.
        q_residual: process-noise density of the per-landmark residual, (face sizes / s²)² per Hz.
        basis: use the PCA shape modes when one fits the point count (False: per-landmark residual only).
        isotropic: replace every Σ_i by the face's mean isotropic covariance (what STAR's covariance adds).
        noise_window: time constant (s) of the noise-level estimates.
        rigid_r_scale: extra multiplier on the rigid measurement noise (larger = a calmer, laggier head).
        lookahead: frames of look-ahead (0: causal). With L > 0 the filter keeps its last L + 1 states and
            :meth:`revised` gives each of those frames' landmarks smoothed with the frames after it (fixed-lag
            RTS, :mod:`~star_track.smoothing.fixed_lag`); :meth:`update` still returns the causal estimate.
            ``make_smoother("face", lookahead=L)`` also applies :data:`LOOKAHEAD_TUNING`.

    Defaults from the stability benchmark (``benchmarks/README.md``): a rigid filter with less lag than the
    per-landmark Kalman (``rigid_r_scale`` trades the two: on real talking heads most of the remaining jitter is
    the head's; 1.2 spends the lag margin the bundled model leaves on a calmer head), a residual noise and gate
    that keep speech (inner-lip gap correlation >= 0.95 with the unsmoothed output on the real clips) and blinks
    (the real clips' hand-labelled blinks followed within half a frame, at their full depth).
    """

    def __init__(self, r_scale: float = 1.0, r_floor: float = 0.001, q_rigid: float = 1e-5,
                 rigid_speed_ref: float = 0.05, rigid_gate: float = 32.0, q_shape: float = 0.05,
                 shape_speed_ref: float = 1.0, shape_gate: float = 2.5, q_residual: float = 1e-6,
                 residual_gate: float = 5.5, basis: bool = False, isotropic: bool = False,
                 noise_window: float = 1.0, rigid_r_scale: float = 1.2, lookahead: int = 0):
        if r_scale <= 0 or rigid_r_scale <= 0 or r_floor < 0 or min(q_rigid, q_shape, q_residual, noise_window) <= 0 \
                or min(rigid_speed_ref, shape_speed_ref, rigid_gate, shape_gate, residual_gate) < 0:
            raise ValueError("face: r_scale, q_* and noise_window must be > 0; r_floor, speed refs and gates "
                             "must be >= 0")
        self.r_scale, self.r_floor = float(r_scale), float(r_floor)
        self.q_rigid, self.rigid_speed_ref, self.rigid_gate = float(q_rigid), float(rigid_speed_ref), float(rigid_gate)
        self.q_shape, self.shape_speed_ref, self.shape_gate = float(q_shape), float(shape_speed_ref), float(shape_gate)
        self.q_residual, self.residual_gate = float(q_residual), float(residual_gate)
        self.use_basis, self.isotropic = bool(basis), bool(isotropic)
        self.noise_window = float(noise_window)
        self.rigid_r_scale = float(rigid_r_scale)
        if isinstance(lookahead, bool) or not isinstance(lookahead, (int, np.integer)) or lookahead < 0:
            raise ValueError(f"face: lookahead must be an int >= 0 (frames), got {lookahead!r}")
        self.lookahead = int(lookahead)
        self.updates = 0
        """Calls to :meth:`update` so far (never reset): :meth:`revised` names a frame by this count after it."""
        self.reset()

    def reset(self) -> None:
        # The filter's state. Public names so that star_track.smoothing.face_batch can stack the faces of a frame;
        # not part of the API.
        self.n_points = -1
        self.rigid_bank: CVBank | None = None
        self._shape: CVBank | None = None
        self.residual_bank: CVBank | None = None
        self.log_noise = np.log(0.02)
        """log noise level a (prior: the calibrated covariance is 50x the noise variance)."""
        self.noise_frames = 0
        self.face_history: list[np.ndarray] = []
        self.log_rigid = np.log(8.0)
        """log rigid noise factor b: the rigid estimate's real noise variance over the least-squares one
        (landmark errors are correlated: the whole face shifts with its crop, 2-27x on the benchmark faces)."""
        self.rigid_frames = 0
        self.rigid_history: list[np.ndarray] = []
        self._window = FixedLagWindow(self.lookahead)
        self._window_updates: list[int] = []  # the update count of each frame in the window
        self._revised: tuple[int, list[list[np.ndarray]]] | None = None  # the window's states at one update count

    # -- model -------------------------------------------------------------------------------------------
    def _setup(self, z: np.ndarray) -> None:
        n = len(z)
        found = load_basis(n) if self.use_basis else None
        if found is None:  # no modes: the first frame's own shape is the reference
            w, h = np.ptp(z, axis=0)
            mean = (z - z.mean(0)) / max(float(np.sqrt(w * h)), 1e-6)
            found = (mean, np.zeros((n, 2, 0)), np.zeros(0), np.zeros(0, str))
        self.mean: np.ndarray = found[0]
        self.modes: np.ndarray = found[1]
        """(N, 2, K) shape modes (face-size units)."""
        self.mode_var: np.ndarray = found[2]
        self.mode_region: np.ndarray = found[3]
        self.mode_group = np.unique(self.mode_region, return_inverse=True)[1].ravel()
        self.k = self.modes.shape[2]
        self.rho = float(np.sqrt((self.mean ** 2).sum(1).mean()))  # RMS radius, face sizes
        self.point_group = point_parts(n, self.mean)
        self.n_points = n

    def _jacobian(self, p: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted landmarks (N, 2) and d landmarks / d (t_x, t_y, log s, theta, c) (N, 2, 4 + K)."""
        sr = np.exp(p[2]) * rotation(p[3])
        g = shape @ sr.T
        H = np.empty((self.n_points, 2, 4 + self.k))
        H[:, :, 0], H[:, :, 1] = (1.0, 0.0), (0.0, 1.0)
        H[:, :, 2], H[:, :, 3] = g, g @ _J.T
        if self.k:
            H[:, :, 4:] = sr @ self.modes
        return g + p[:2], H

    def _solve(self, z: np.ndarray, W: np.ndarray, p: np.ndarray, c: np.ndarray, e: np.ndarray,
               steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted least squares for (rigid, modes) around (p, c) with the residual e held: Gauss-Newton
        ``steps`` times (up to 2 more while rotation or scale still move). Returns (p, c, covariance)."""
        base = self.mean + e
        d = 4 + self.k
        for it in range(steps + 2):
            shape = base + self.modes @ c if self.k else base
            zp, H = self._jacobian(p, shape)
            WH = (W @ H).reshape(-1, d)
            A = H.reshape(-1, d).T @ WH
            diag = A.reshape(-1)[::d + 1]  # a view: the ridge below is added in place
            diag += 1e-12 * float(diag.sum()) / d
            cov = inv_one(A)
            delta = cov @ (WH.T @ (z - zp).ravel())
            p, c = p + delta[:4], c + delta[4:]
            if it + 1 >= steps and abs(delta[2]) < 0.02 and abs(delta[3]) < 0.02:
                break
        return p, c, cov

    def _to_face(self, z: np.ndarray, R: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (N, 2) and covariances (N, 2, 2) mapped into the face frame of rigid motion ``p``."""
        rs = rotation(p[3]) / math.exp(p[2])
        return (z - p[:2]) @ rs, rs.T @ R @ rs

    def track_noise(self, x: np.ndarray, sig: np.ndarray, dt: float) -> None:
        """Update the noise level from the second difference of the face-frame landmarks ``x`` (rigid motion
        removed; ``sig`` their covariances there): for white noise its variance is 6x the noise variance. The
        25th percentile over landmarks ignores the minority that really move (mouth, eyelids); for chi² with 2
        degrees of freedom it is 0.575."""
        prev, self.face_history = self.face_history, [*self.face_history[-1:], x]
        if len(prev) < 2:
            return
        d2 = x - 2 * prev[1] + prev[0]
        a, b, c = sig[:, 0, 0], sig[:, 0, 1], sig[:, 1, 1]
        eps = 1e-9 * (float(a.sum() + c.sum()) / len(a) + 1e-30)  # keep it invertible
        a, c = a + eps, c + eps
        dx, dy = d2[:, 0], d2[:, 1]
        u = (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / ((a * c - b * b) * 6)  # d2ᵀ sig⁻¹ d2 / 6
        level = np.log(max(float(np.partition(u, len(u) // 4)[len(u) // 4]) / 0.575, 1e-12))
        self.noise_frames += 1
        rate = max(1.0 / self.noise_frames, min(1.0, dt / self.noise_window))
        self.log_noise += rate * (level - self.log_noise)

    def track_rigid_noise(self, p: np.ndarray, cov: np.ndarray, dt: float) -> None:
        """Update the rigid noise factor from the second difference of the per-frame rigid estimates ``p``
        (covariance ``cov`` as least squares gives it): u = d²ᵀ cov⁻¹ d² / 6 / 4 is chi²(4) / 4 times the
        factor; E[log chi²(4) / 4] = -0.27."""
        prev, self.rigid_history = self.rigid_history, [*self.rigid_history[-1:], p]
        if len(prev) < 2:
            return
        d2 = p - 2 * prev[1] + prev[0]
        u = float(d2 @ inv_one(cov) @ d2) / 24
        self.rigid_frames += 1
        rate = max(1.0 / self.rigid_frames, min(1.0, dt / self.noise_window))
        self.log_rigid += rate * (np.log(max(u, 1e-12)) + 0.27 - self.log_rigid)

    # -- filtering ---------------------------------------------------------------------------------------
    def _measure(self, cov: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """(Σ (N, 2, 2) as used for the noise level, R (N, 2, 2)) in pixels²."""
        sig = measurement_noise(cov, scale, 1.0, 0.0)
        if self.isotropic:
            sig[:] = np.eye(2) * float(np.mean(sig[:, 0, 0] + sig[:, 1, 1])) / 2
        R = self.r_scale * np.exp(self.log_noise) * sig
        R[:, 0, 0] += (self.r_floor * scale) ** 2
        R[:, 1, 1] += (self.r_floor * scale) ** 2
        return sig, R

    def _start(self, z: np.ndarray, W: np.ndarray, R: np.ndarray, scale: float) -> None:
        self._setup(z)
        p0 = similarity_init(z, self.mean)
        p, c, cov = self._solve(z, W, p0, np.zeros(self.k), np.zeros_like(self.mean), steps=3)
        v = 0.5  # prior velocity: 0.5 face sizes / s, or 0.5 mode standard deviations / s
        self.rigid_bank = CVBank(p[None], cov[None, :4, :4],
                             (v * np.array([[scale, scale, 1 / self.rho, 1 / self.rho]])) ** 2)
        if self.k:
            self._shape = CVBank(c[:, None], np.diag(cov)[4:, None, None], (v * v * self.mode_var)[:, None])
        x, Rf = self._to_face(z, R, p)
        self.residual_bank = CVBank(x - self.mean - (self.modes @ c if self.k else 0.0), Rf, np.full((self.n_points, 2), 1e-4))

    def update(self, points: np.ndarray, cov: np.ndarray, dt: float = 1 / 30, scale: float = 100.0) -> np.ndarray:
        """Fuse one frame's measurements; returns the filtered positions (N, 2)."""
        self.updates += 1
        started = self.rigid_bank is not None and self.n_points == len(points)
        out = self._update(points, cov, dt, scale)
        if self.lookahead and self.rigid_bank is not None:
            self._window.push(self._banks(), first=not started)
            self._window_updates = [*self._window_updates, self.updates][-len(self._window):]
        return out

    def _update(self, points: np.ndarray, cov: np.ndarray, dt: float, scale: float) -> np.ndarray:
        z = np.asarray(points, np.float64)
        scale = max(float(scale), 1.0)
        sig, R = self._measure(cov, scale)
        bad = np.asarray(~np.isfinite(z).all(axis=1))
        if bad.any():  # a missing landmark votes for nothing
            z = np.where(bad[:, None], 0.0, z)
            R[bad] = np.eye(2) * 1e12 * scale ** 2
        W = inv2(R)
        if self.rigid_bank is None or self.n_points != len(z):
            if bad.all():
                return np.full_like(z, np.nan)
            self._start(z, W, R, scale)
            return self.output()
        assert self.residual_bank is not None
        dt = max(float(dt), 1e-4)
        rw = np.array([1 / scale, 1 / scale, self.rho, self.rho])
        q = self.q_rigid * np.array([[scale ** 2, scale ** 2, self.rho ** -2, self.rho ** -2]])
        xr, Pr = self.rigid_bank.predict(dt, q, self.rigid_speed_ref, rw)
        xe, Pe = self.residual_bank.predict(dt, np.full((1, 2), self.q_residual), 0.0)
        c_prior = np.zeros(0)
        if self._shape is not None:
            sd = np.sqrt(self.mode_var)[:, None]
            xc, Pc = self._shape.predict(dt, self.q_shape * self.mode_var[:, None], self.shape_speed_ref, 1 / sd)
            c_prior = xc[:, 0]
        p, c, jc = self._solve(z, W, xr[0, :4], c_prior, xe[:, :2], steps=1)
        self.track_rigid_noise(p, jc[:4, :4], dt)
        self.rigid_bank.update(xr, Pr, p[None], self.rigid_r_scale * np.exp(self.log_rigid) * jc[None, :4, :4],
                           self.rigid_gate)
        if self._shape is not None:
            self._shape.update(xc, Pc, c[:, None], np.diag(jc)[4:, None, None], self.shape_gate, self.mode_group)
        if bad.any():
            x, Rf = self._to_face(z, R, p)
        else:  # R = k Σ + f² I in the face frame is k Σ_face + (f / s)² I: one mapping serves both
            x, sig_f = self._to_face(z, sig, p)
            Rf = self.r_scale * np.exp(self.log_noise) * sig_f  # this frame's noise level, as R had
            floor = (self.r_floor * scale) ** 2 / np.exp(2 * p[2])
            Rf[:, 0, 0] += floor
            Rf[:, 1, 1] += floor
            self.track_noise(x, sig_f, dt)
        shape = self.mean + self.modes @ c if self.k else self.mean
        self.residual_bank.update(xe, Pe, x - shape, Rf, self.residual_gate, self.point_group)
        return self.output()

    def output(self) -> np.ndarray:
        """The filtered landmarks (N, 2) of the current state."""
        return self._landmarks([b.x for b in self._banks()])

    def _banks(self) -> list[CVBank]:
        """The filter banks: rigid, residual and (with modes) shape."""
        assert self.rigid_bank is not None and self.residual_bank is not None
        return [self.rigid_bank, self.residual_bank, *([self._shape] if self._shape is not None else [])]

    def _shape_of(self, states: list[np.ndarray]) -> np.ndarray:
        """Face-frame shape (N, 2) of bank states (x of :meth:`_banks`, in its order): mean + modes + residual."""
        shape = self.mean + states[1][:, :2]
        return shape + self.modes @ states[2][:, 0] if len(states) > 2 else shape

    def _landmarks(self, states: list[np.ndarray]) -> np.ndarray:
        """Landmarks (N, 2) of bank states (x of :meth:`_banks`, in its order)."""
        p = states[0][0]
        return self._shape_of(states) @ (np.exp(p[2]) * rotation(p[3])).T + p[:2]

    def revised(self, update: int) -> np.ndarray | None:
        """Landmarks (N, 2) of the frame fused by update number ``update`` (:attr:`updates` right after it),
        smoothed with every later frame in the look-ahead window; None when that frame is no longer in the
        window (older than ``lookahead`` frames, or before a restart) or the filter has no look-ahead."""
        if update not in self._window_updates:
            return None
        if self._revised is None or self._revised[0] != self.updates:
            self._revised = (self.updates, self._window.revisions())
        return self._landmarks(self._revised[1][self._window_updates.index(update)])

    @property
    def noise_level(self) -> float:
        """The tracked noise level: measured frame-to-frame noise variance over the calibrated covariance."""
        return float(np.exp(self.log_noise))

    @property
    def last_cov(self) -> np.ndarray | None:
        """(N, 2, 2) covariance of the filtered landmarks in pixels² (rigid, mode and residual parts propagated;
        cross-terms between the three neglected), or None before the first update."""
        if self.rigid_bank is None or self.residual_bank is None:
            return None
        p = self.rigid_bank.position[0]
        sr = np.exp(p[2]) * rotation(p[3])
        _, H = self._jacobian(p, self._shape_of([b.x for b in self._banks()]))
        G = H[:, :, :4]
        out = np.einsum("nai,ij,nbj->nab", G, self.rigid_bank.position_cov[0], G)
        if self._shape is not None:
            M = H[:, :, 4:]
            out += np.einsum("nak,k,nbk->nab", M, self._shape.position_cov[:, 0, 0], M)
        return out + sr @ self.residual_bank.position_cov @ sr.T
