"""Fixed-lag Rauch-Tung-Striebel smoothing of :class:`~star_track.smoothing.cv_bank.CVBank` filters.

A causal filter's estimate of frame k uses frames up to k; once frames k+1..k+L have arrived, the RTS backward
pass revises it with them (a zero-lag smoother over the window, with the filter's own model and noise):

    C_k  = P_k F_{k+1}ᵀ (P⁻_{k+1})⁻¹          (P_k: posterior of k; F, P⁻: transition and prior of k+1)
    xs_k = x_k + C_k (xs_{k+1} - x⁻_{k+1})    (xs: smoothed, from the newest frame back)

The prior is the one the update really used, gate inflation included: where the gate opened (a blink, a jump),
P⁻ is large, C small, and the revision does not smooth across the change. Each frame costs one gain per bank
(kept for the window) and L small matrix-vector products per bank.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .cv_bank import CVBank


class FixedLagWindow:
    """The last ``lag`` + 1 filtered states of some CV banks, and their RTS-smoothed revisions."""

    def __init__(self, lag: int):
        self.lag = int(lag)
        self._posteriors: deque[list[np.ndarray]] = deque(maxlen=self.lag + 1)
        """Per frame, oldest first: each bank's filtered state x (B, 2d)."""
        self._steps: deque[list[tuple[np.ndarray, np.ndarray]]] = deque(maxlen=self.lag)
        """Per frame after the first in the window: each bank's (gain C of the frame before, prior x⁻)."""
        self._last_cov: list[np.ndarray] = []

    def clear(self) -> None:
        self._posteriors.clear()
        self._steps.clear()
        self._last_cov = []

    def push(self, banks: list[CVBank], first: bool) -> None:
        """Record the banks' state after an update; ``first``: the filter (re)started at this frame (no prior)."""
        if first:
            self.clear()
        elif self._posteriors:
            step = []
            for bank, p_prev in zip(banks, self._last_cov):
                assert bank.F is not None and bank.prior is not None  # set by the predict/update just run
                x_prior, p_prior = bank.prior
                gain = p_prev @ bank.F.T @ np.linalg.inv(p_prior)
                step.append((gain, x_prior))
            self._steps.append(step)
        self._posteriors.append([bank.x.copy() for bank in banks])
        self._last_cov = [bank.P for bank in banks]  # update() replaces P, never writes into it

    def __len__(self) -> int:
        return len(self._posteriors)

    def revisions(self) -> list[list[np.ndarray]]:
        """Smoothed states of every frame in the window, oldest first (each: one (B, 2d) array per bank); the
        newest equals its filtered state."""
        posts = list(self._posteriors)
        steps = list(self._steps)[-(len(posts) - 1):] if len(posts) > 1 else []
        out = [posts[-1]]
        for k in range(len(posts) - 2, -1, -1):
            nxt = out[0]
            out.insert(0, [x + (gain @ (xs - x_prior)[:, :, None])[:, :, 0]
                           for x, xs, (gain, x_prior) in zip(posts[k], nxt, steps[k])])
        return out
