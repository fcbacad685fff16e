"""Temporal stability of the smoothers: jitter, lag, step response and accuracy against known true tracks.

Sequences come from :mod:`benchmarks.synthetic` (real held-out photos moved along known affine paths, camera
noise on every frame): ``still`` (no motion), ``sway`` (0.5 Hz head motion), ``fast`` (1.5 Hz), ``step``
(a sudden shift of 0.45 inter-ocular distances half-way). The real :class:`Tracker` runs every sequence once per
face; its smoothing stage is a fan-out that feeds the tracker's own per-frame measurements (landmarks, STAR
covariances, dt, face scale) to every smoother configuration built by the product's ``make_smoother``. That
tracker runs with ``crop_from="raw"``: its measurement path never reads the smoothed output, every configuration
sees the same measurements, and this equals one full run per configuration (``--verify`` re-runs a few as
separate Trackers and checks). The product itself frames each crop from its *smoothed* landmarks (a still face
keeps a still crop): the rows ``Tracker()`` and ``Tracker(crop_from='raw')`` (:data:`PRODUCTS`) are plain Trackers
run on their own on the same sequences, with per-sequence NME and NMF. :func:`crop_noise_check` shows where a still
face's raw jitter comes from when the crops follow the raw output.

Metrics (all normalised by the true inter-ocular distance of the frame, in %):

``jitter``   RMS over landmarks and frames of (frame-to-frame output motion - true motion).
``lag``      RMS error vs the true track during motion (``sway`` / ``fast``), with each landmark's static bias
             removed (the raw network's median error in the face's own frame, shared by all smoothers), so it
             measures what smoothing adds or removes, not the network's fixed offset.
``delay``    time shift (ms) that best aligns the output's landmark centroid with the true centroid (``sway``).
``step``     frames after the step until the mean output displacement is within 10 % of the true step.
``NME``      mean per-frame NME vs the true landmarks over the four sequences.
``NMF``      LDEQ's flicker: RMS of the frame-to-frame change of the error / sqrt(w h) of the true landmark box
             (``still``, and the mean over all five sequences), in %.

A fifth sequence, ``expression`` (:mod:`benchmarks.nonrigid`: the still face opens its mouth and blinks), gives
how each smoother follows non-rigid motion against the unsmoothed output (delay in frames, amplitude kept).
The face-level filter (issue 27) runs with the STAR covariance and with an isotropic one
(:mod:`benchmarks.face_stability`); ``--clips`` adds the real clips beside MediaPipe's Face Mesh peer.

    python -m benchmarks.stability [--model PATH] [--faces 12] [--frames 60] [--clips]
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from star_track import Tracker
from star_track.crop import Crop, crop_from_landmarks
from star_track.smoothing import RECORDED_LOOKAHEAD, SMOOTHERS, KalmanSmoother, make_smoother

from .common import (DEFAULT_DATA, DOCS_DIR, RESULTS_DIR, load_faces, make_console, markdown_table, model_info,
                     model_label, print_table, write_json)
from .face_stability import (LOOKAHEAD_ISO, LOOKAHEAD_STAR, LOOKAHEAD_SWEEP, expression_metrics, face_configs, nmf,
                             real_clips, report_face, star_vs_isotropic, time_per_update)
from .nonrigid import render_nonrigid
from .synthetic import SCHEME, FaceScene, Sequence, standard_sequences, still

Config = tuple[str, str, dict[str, Any]]
"""(family label, smoother name, parameters)."""


def default_configs() -> list[Config]:
    """Every smoother and its parameter sweep (the first is the raw output)."""
    cfgs: list[Config] = [("none", "none", {})]
    for beta in (1.0, 10.0, 30.0):
        cfgs += [(f"one-euro beta={beta:g}", "one-euro", {"min_cutoff": mc, "beta": beta})
                 for mc in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)]
    # Constant-velocity Kalman with FIXED isotropic noise: STAR covariance ignored (r_scale=0), R = (r_floor s)² I.
    cfgs += [("kalman fixed-R", "kalman", {"r_scale": 0.0, "r_floor": rf})
             for rf in (0.002, 0.004, 0.008, 0.016, 0.032)]
    # STAR-Kalman: R = r_scale Σ + (0.004 s)² I with Σ the calibrated covariance (Face.covariance; speed-adaptive
    # q, gate 2), and without the floor.
    scales = (0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 3.0, 10.0)
    cfgs += [("kalman STAR-R", "kalman", {"r_scale": rs}) for rs in scales]
    # Before the calibration: the same filter on the raw STAR covariance (its old default was r_scale=0.1).
    cfgs += [("kalman raw STAR-R", "bench-raw-kalman", {"r_scale": rs}) for rs in (0.03, 0.1, 0.3, 1.0)]
    cfgs += [("kalman STAR-R no floor", "kalman", {"r_scale": rs, "r_floor": 0.0}) for rs in scales]
    # The earlier product filter, for comparison: constant process noise, 99 % gate.
    cfgs += [("kalman STAR-R constant q", "kalman", {"r_scale": rs, "q": 1.0, "speed_ref": 0.0, "gate": 9.21})
             for rs in scales]
    return cfgs + face_configs()


def compare_at_equal_lag(rows: list[dict], challenger: str, reference: str = "one-euro",
                         lag_key: str = "lag_sway", jitter_key: str = "jitter_still") -> list[dict]:
    """For each ``challenger`` config: the lowest-jitter ``reference`` config whose lag is not higher."""
    refs = [r for r in rows if r["family"].startswith(reference)]
    out = []
    for r in (r for r in rows if r["family"] == challenger):
        ok = [x for x in refs if x[lag_key] <= r[lag_key]]
        best = min(ok, key=lambda x: x[jitter_key]) if ok else None
        out.append({"config": r["label"], "lag": r[lag_key], "jitter": r[jitter_key],
                    "reference": best["label"] if best else None,
                    "reference_lag": best[lag_key] if best else None,
                    "reference_jitter": best[jitter_key] if best else None,
                    "wins": None if best is None else bool(r[jitter_key] < best[jitter_key])})
    return out


def config_label(cfg: Config) -> str:
    fam, _, p = cfg
    shown = {k: v for k, v in p.items() if not (fam == "kalman fixed-R" and k == "r_scale")
             and not (fam == "kalman STAR-R no floor" and k == "r_floor")
             and not (fam == "kalman STAR-R constant q" and k in ("gate", "q", "speed_ref"))
             and k not in ("isotropic", "basis") and not (k == "lookahead" and fam != LOOKAHEAD_SWEEP)}
    head = fam if fam.startswith(("kalman", "face")) else fam.split()[0]
    return fam if not p or not shown else f"{head} " \
        + ", ".join(f"{k}={v:g}" for k, v in shown.items() if not (fam.startswith("one-euro") and k == "beta")) \
        + (f", beta={p['beta']:g}" if fam.startswith("one-euro") else "")


class FanOutSmoother:
    """Benchmark-only smoother: gives the tracker's measurements to several smoothers and keeps every output."""

    live: list["FanOutSmoother"] = []

    def __init__(self, configs: Seq[tuple[str, dict]] = ()):
        self.filters = [make_smoother(name, **params) for name, params in configs]
        self.last_points: np.ndarray | None = None
        self.outputs: list[np.ndarray] = []
        self.revised: list[dict[int, np.ndarray]] = [{} for _ in self.filters]
        """Per filter with look-ahead: update number -> its latest revision (final once out of the window)."""
        self.updates: list[int] = []
        FanOutSmoother.live.append(self)

    def update(self, points: np.ndarray, cov: np.ndarray, dt: float, scale: float) -> np.ndarray:
        self.last_points = np.asarray(points, np.float32)
        self.outputs = [f.update(points, cov, dt, scale) for f in self.filters]
        self.updates = [getattr(f, "updates", 0) for f in self.filters]
        for f, revised in zip(self.filters, self.revised):
            for u in range(f.updates - getattr(f, "lookahead", 0), f.updates) if getattr(f, "lookahead", 0) else ():
                if (r := f.revised(u)) is not None:
                    revised[u] = r
        return self.outputs[0] if self.outputs else np.asarray(points, np.float64).copy()

    def settle(self, out: np.ndarray, updates: list[int]) -> None:
        """Replace the look-ahead filters' rows of one frame's outputs ``out`` (C, N, 2), fused at ``updates``
        (:attr:`updates` then), by their last revision of that frame (call after the sequence)."""
        for ci, (rev, u) in enumerate(zip(self.revised, updates)):
            if u in rev:
                out[ci] = rev[u]

    def reset(self) -> None:
        for f in self.filters:
            f.reset()


class RawCovarianceKalman(KalmanSmoother):
    """Benchmark-only: the STAR-Kalman fed the raw STAR covariance (as before the calibration). The tracker hands
    smoothers the calibrated covariance; this undoes the model's eigenvalue map (monotone, so invertible) in crop
    units. :attr:`calibration` and :attr:`crop_scale` are set from the Tracker by :func:`run`."""

    calibration: Any = None
    crop_scale = 1.0

    def update(self, points: np.ndarray, cov: np.ndarray, dt: float = 1 / 30, scale: float = 100.0) -> np.ndarray:
        cal = RawCovarianceKalman.calibration
        half2 = (max(float(scale), 1.0) * RawCovarianceKalman.crop_scale / 2) ** 2  # (crop side / 2)²
        lam, vec = np.linalg.eigh(np.asarray(cov, np.float64) / half2)
        lam = (np.clip(lam, 1e-300, None) / np.exp(cal.log_scale[:, None])) ** (1 / cal.power[:, None])
        raw = (vec * lam[..., None, :]) @ np.swapaxes(vec, -1, -2) * half2
        return super().update(points, raw, dt, scale)


SMOOTHERS.setdefault("bench-fanout", FanOutSmoother)  # in-process only; never part of the product
SMOOTHERS.setdefault("bench-raw-kalman", RawCovarianceKalman)


def run_sequence(tracker: Tracker, seq: Sequence, n_cfg: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track ``seq``; returns outputs (C, T, 68, 2) per config (NaN where no face), raw (T, 68, 2) and the
    STAR covariances (T, 68, 2, 2) in frame pixels²."""
    tracker.reset()
    FanOutSmoother.live.clear()
    T = len(seq.frames)
    out = np.full((n_cfg, T, 68, 2), np.nan)
    raw = np.full((T, 68, 2), np.nan)
    cov = np.full((T, 68, 2, 2), np.nan)
    marks = []
    for t, frame in enumerate(seq.frames):
        faces = tracker.track(frame, t / seq.fps)
        if not faces:
            continue
        centre = seq.truth[t].mean(0)
        face = min(faces, key=lambda f: float(np.linalg.norm(f.raw_landmarks.mean(0) - centre)))
        src = next(s for s in FanOutSmoother.live if s.last_points is not None
                   and np.array_equal(s.last_points, face.raw_landmarks))
        raw[t] = face.raw_landmarks
        cov[t] = face.covariance
        out[:, t] = np.stack(src.outputs)
        marks.append((t, src, src.updates))
    for t, src, updates in marks:
        src.settle(out[:, t], updates)
    return out, raw, cov


def covariance_check(raw: np.ndarray, cov: np.ndarray, skip: int = 5) -> dict[str, float]:
    """How well the STAR covariance predicts the measured frame-to-frame noise of a still face.

    Per landmark: observed variance of the raw output along the eigenvectors of its mean STAR covariance
    vs the eigenvalues. Returns the median ratio predicted / observed standard deviation, the rank correlation
    across landmarks of predicted vs observed spread, and for clearly elongated covariances (λ2/λ1 > 2) the
    fraction whose observed noise is also larger along the major axis.
    """
    from scipy.stats import spearmanr

    r, c = raw[skip:], np.nanmean(cov[skip:], axis=0)
    d = r - np.nanmean(r, axis=0)
    lam, vec = np.linalg.eigh(c)  # ascending
    proj = np.einsum("tni,nij->tnj", d, vec)
    obs = np.nanmean(proj ** 2, axis=0)  # (68, 2) observed variance along v1, v2
    pred_sd, obs_sd = np.sqrt(lam.mean(1)), np.sqrt(obs.mean(1))
    elongated = lam[:, 1] > 2 * lam[:, 0]
    return {"sigma_ratio": float(np.median(pred_sd / obs_sd)),
            "spearman": float(spearmanr(pred_sd, obs_sd).statistic),
            "elongated": int(elongated.sum()),
            "major_axis_noisier": float(np.mean(obs[elongated, 1] > obs[elongated, 0])) if elongated.any()
            else float("nan")}


def run_plain(tracker: Tracker, seq: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed and raw landmarks (T, 68, 2) of a normally configured Tracker (NaN where no face; with a look-ahead,
    its settled output)."""
    tracker.reset()
    res = np.full((2, len(seq.frames), 68, 2), np.nan)
    settled = []
    for t, frame in enumerate(seq.frames):
        tracker.track(frame, t / seq.fps)
        settled += tracker.settled()
    for t, faces in enumerate([*settled, *tracker.flush()]):
        if faces:
            centre = seq.truth[t].mean(0)
            f = min(faces, key=lambda f: float(np.linalg.norm(f.raw_landmarks.mean(0) - centre)))
            res[:, t] = f.landmarks, f.raw_landmarks
    return res[0], res[1]


# -- metrics -------------------------------------------------------------------------------------------
def iod(points: np.ndarray) -> np.ndarray:
    return SCHEME.inter_ocular(points)


def jitter(out: np.ndarray, truth: np.ndarray, skip: int = 1) -> float:
    """RMS of (output motion - true motion) per frame pair, / inter-ocular; frames from ``skip`` on."""
    d = np.diff(out, axis=0) - np.diff(truth, axis=0)
    e = np.linalg.norm(d, axis=-1) / iod(truth[1:])[:, None]
    e = e[max(skip - 1, 0):]
    return float(np.sqrt(np.nanmean(e ** 2)))


def face_frame_error(out: np.ndarray, seq: Sequence) -> np.ndarray:
    """Errors (T, 68, 2) mapped back through the path's linear part (face frame, canvas-at-rest pixels)."""
    inv = np.linalg.inv(seq.linear)
    return np.einsum("tij,tnj->tni", inv, out - seq.truth)


def lag(out: np.ndarray, seq: Sequence, bias: np.ndarray, skip: int = 5) -> float:
    """RMS error vs truth after removing the per-landmark static bias (face frame), / inter-ocular."""
    e = face_frame_error(out, seq) - bias
    r = np.linalg.norm(e, axis=-1)[skip:] / iod(seq.truth[0])
    return float(np.sqrt(np.nanmean(r ** 2)))


def delay_ms(out: np.ndarray, seq: Sequence, skip: int = 5, max_frames: float = 10.0) -> float:
    """Shift tau (ms) minimising RMS(centroid_out(t) - centroid_true(t - tau) - const)."""
    c_out = out.mean(axis=1)[skip:]  # NaN where no face
    t = np.arange(len(out))[skip:] / seq.fps
    ok = np.isfinite(c_out).all(1)
    if ok.sum() < 5:
        return float("nan")
    best = (np.inf, float("nan"))
    for tau in np.arange(-2.0, max_frames + 1e-9, 0.1) / seq.fps:
        c_true = np.stack([seq.truth_at(ti - tau).mean(0) for ti in t[ok]])
        r = c_out[ok] - c_true
        cost = float(np.mean(np.sum((r - r.mean(0)) ** 2, axis=1)))
        if cost < best[0]:
            best = (cost, tau * 1e3)
    return best[1]


def step_delay(out: np.ndarray, seq: Sequence, at: int, pre: int = 10) -> float:
    """Frames from the step until |mean displacement - true step| < 10 % of the step (inf: never)."""
    true_step = (seq.truth[at] - seq.truth[at - 1]).mean(0)
    ref = np.nanmean(out[at - pre:at], axis=0)
    for k, t in enumerate(range(at, len(out))):
        disp = np.nanmean(out[t] - ref, axis=0)
        if np.isfinite(disp).all() and np.linalg.norm(disp - true_step) < 0.1 * np.linalg.norm(true_step):
            return float(k)
    return float("inf")


def nme(out: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame NME (T,) (NaN where no face)."""
    return np.linalg.norm(out - truth, axis=-1).mean(-1) / iod(truth)


# -- run -------------------------------------------------------------------------------------------------
def pick_faces(faces: list, n: int) -> list:
    """The ``n`` held-out faces with the largest inter-ocular distance (sharp sources when scaled down)."""
    order = np.argsort([-float(iod(f.landmarks)) for f in faces])
    return [faces[i] for i in order[:n]]


PRODUCTS: dict[str, dict[str, Any]] = {"Tracker()": {}, "Tracker(crop_from='raw')": {"crop_from": "raw"},
                                       f"Tracker(lookahead={RECORDED_LOOKAHEAD})": {"lookahead": RECORDED_LOOKAHEAD},
                                       "Tracker(lookahead=2)": {"lookahead": 2}}
"""The product rows: plain Trackers with the default face-level filter, run on their own, label -> Tracker
arguments: the default (live; crops follow its smoothed output), with ``crop_from="raw"`` (stop 37's default),
with the look-ahead ``star-track video`` uses for recorded video, and with a short one for live use, 2 frames of
delay (``star-track webcam --lookahead 2``; their settled output)."""


def crop_noise_check(engine, crop_of, scene: FaceScene, seq: Sequence, raw: np.ndarray, skip: int = 5
                     ) -> dict[str, float]:
    """Where a still face's raw jitter comes from when the crops follow the raw output: that output's jitter as
    tracked (``tracked``); the network on one fixed crop (framing the mean raw landmarks) over the same noisy
    frames (``fixed_crop``); on the same moving crops (rebuilt from the raw output as the tracker builds them:
    last landmarks moved on by their last motion) over one noise-free frame (``moving_crop_clean``).
    ``crop_of``: landmarks -> the tracker's crop for them."""
    crops = [crop_of(raw[t - 1] + raw[t - 1].mean(0) - raw[t - 2].mean(0)) for t in range(2, len(raw))]
    fixed = crop_of(np.nanmean(raw, axis=0))
    clean = scene.render("clean", still, 1, seq.fps, np.random.default_rng(0), noise_sd=0.0,
                         blur_sd=(0.5, 0.5)).frames[0]

    def through(pairs: list) -> np.ndarray:
        mean, cov = engine.infer(np.stack([c.warp(f) for c, f in pairs]))
        return np.stack([c.normalized_to_frame(m.astype(np.float64), k)[0] for (c, _), m, k in zip(pairs, mean, cov)])

    truth = seq.truth[2:]
    return {"tracked": jitter(raw[2:], truth, skip), "fixed_crop": jitter(through([(fixed, f) for f in seq.frames[2:]]),
                                                                         truth, skip),
            "moving_crop_clean": jitter(through([(c, clean) for c in crops]), truth, skip)}


def sequence_metrics(results: dict[str, tuple[Sequence, np.ndarray, np.ndarray]], frames: int) -> dict[str, float]:
    """Every metric of one system over one face's sequences: ``results[name]`` = (sequence, its output (T, 68, 2),
    the raw output it smoothed; the lag removes that raw output's static bias per landmark, face frame)."""
    m: dict[str, float] = {}
    for name in ("sway", "fast"):
        seq, out, raw = results[name]
        m[f"lag_{name}"] = lag(out, seq, np.nanmedian(face_frame_error(raw, seq), axis=0))
        m[f"jitter_{name}"] = jitter(out, seq.truth, skip=5)
    seq, out, _ = results["still"]
    m["jitter_still"] = jitter(out, seq.truth, skip=5)
    m["delay_ms_sway"] = delay_ms(results["sway"][1], results["sway"][0])
    m["step_frames"] = step_delay(results["step"][1], results["step"][0], frames // 2)
    m["nme"] = float(np.nanmean(np.concatenate([nme(o, q.truth) for n, (q, o, _) in results.items()
                                                 if n != "expression"])))
    m["nmf_still"] = nmf(out, seq.truth)
    m["nmf_all"] = float(np.mean([nmf(o, q.truth) for q, o, _ in results.values()]))
    for n, (q, o, r) in results.items():  # per sequence: where NME and NMF differ between systems
        m[f"nme_{n}"], m[f"nme_raw_{n}"] = float(np.nanmean(nme(o, q.truth))), float(np.nanmean(nme(r, q.truth)))
        m[f"nmf_{n}"] = nmf(o, q.truth)
    return m | expression_metrics(results["expression"][1], results["expression"][2])


def run(model: str | None, data: Path, n_faces: int, frames: int, configs: list[Config], verify: bool) -> dict:
    faces = pick_faces(load_faces(), n_faces)
    fan = [(name, params) for _, name, params in configs]
    per: dict[str, list[dict]] = {config_label(c): [] for c in configs} | {label: [] for label in PRODUCTS}
    lost = 0
    checks: list[dict] = []
    cov_checks: list[dict] = []
    noise_checks: list[dict] = []
    track = None
    with Tracker(model, engine="onnxruntime", smoothing="bench-fanout", smoothing_params={"configs": fan},
                 fps=30.0, crop_from="raw") as tracker, contextlib.ExitStack() as stack:
        products = {label: stack.enter_context(Tracker(model, engine="onnxruntime", fps=30.0, **kw))
                    for label, kw in PRODUCTS.items()}
        engine = tracker.engine
        eyes = tracker.model_scheme.outer_eye_corners

        def crop_of(points: np.ndarray) -> Crop:
            return crop_from_landmarks(points, tracker.meta.input_size, tracker.meta.crop_scale, True, eyes)
        RawCovarianceKalman.calibration, RawCovarianceKalman.crop_scale = tracker.uncertainty, tracker.meta.crop_scale
        for fi, f in enumerate(faces):
            photo = cv2.imread(str(data / "wflw" / f.image))
            if photo is None:
                raise SystemExit(f"cannot read {data / 'wflw' / f.image}")
            scene = FaceScene(photo, f.landmarks)
            seqs = standard_sequences(scene, frames, 30.0, seed=fi)
            seqs.append(render_nonrigid(scene, frames, 30.0, np.random.default_rng(100 + fi)))
            results = {}
            for seq in seqs:
                out, raw, cov = run_sequence(tracker, seq, len(configs))
                lost += int(np.isnan(raw[:, 0, 0]).sum())
                results[seq.name] = (seq, out, raw)
                if seq.name == "still":
                    cov_checks.append(covariance_check(raw, cov))
                    noise_checks.append(crop_noise_check(engine, crop_of, scene, seq, raw))
                if seq.name == "sway" and fi == 0:
                    track = (raw, cov, np.sqrt(np.prod(np.ptp(raw, axis=1), axis=1)))
            for ci, cfg in enumerate(configs):
                per[config_label(cfg)].append(sequence_metrics(
                    {n: (q, out[ci], raw) for n, (q, out, raw) in results.items()}, frames))
            for label, product in products.items():
                per[label].append(sequence_metrics({q.name: (q, *run_plain(product, q)) for q in seqs}, frames))
            if verify and fi == 0:
                checks = verify_equivalence(model, engine, configs, [results[s][0] for s in results],
                                            {s: results[s][1] for s in results})
        engine_name = engine.name
    summary = []
    for cfg in [*configs, *((label, "face", {}) for label in PRODUCTS)]:
        rows = per[config_label(cfg)]
        agg = {k: float(np.mean([r[k] for r in rows])) if k != "step_frames"
               else float(np.median([r[k] for r in rows])) for k in rows[0]}
        summary.append({"family": cfg[0], "smoother": cfg[1], "params": cfg[2], "label": config_label(cfg), **agg,
                        "per_face": rows})
    cov_summary = {k: float(np.nanmean([c[k] for c in cov_checks])) for k in cov_checks[0]}
    return {"rows": summary, "faces": [f.image for f in faces], "lost_frames": lost, "verify": checks,
            "engine": engine_name, "covariance_check": {"mean_over_faces": cov_summary, "per_face": cov_checks},
            "crop_noise_check": {"mean_over_faces": {k: float(np.mean([c[k] for c in noise_checks]))
                                                     for k in noise_checks[0]}, "per_face": noise_checks},
            "ms_per_update": time_per_update(*track) if track is not None else {}}


def verify_equivalence(model, engine, configs: list[Config], seqs: list[Sequence],
                       fanned: dict[str, np.ndarray]) -> list[dict]:
    """Re-run one configuration per family as its own Tracker; max |difference| to the fan-out output."""
    checks = []
    seen = set()
    for ci, (fam, name, params) in enumerate(configs):
        if fam in seen:
            continue
        seen.add(fam)
        own = {k: v for k, v in params.items() if k != "lookahead"}  # a Tracker argument (its queue needs it)
        with Tracker(model, engine=engine, smoothing=name, smoothing_params=own, fps=30.0, crop_from="raw",
                     lookahead=params.get("lookahead", 0)) as tr:
            diff = max(float(np.nanmax(np.abs(run_plain(tr, s)[0] - fanned[s.name][ci]))) for s in seqs)
        checks.append({"config": config_label(configs[ci]), "max_abs_diff_px": diff})
    return checks


# -- report ----------------------------------------------------------------------------------------------
SWEPT = ("min_cutoff", "r_scale", "r_floor")
"""The parameter each family sweeps (first present and non-zero), written next to its points."""


FAMILY_COLORS = {"none": "black", "one-euro beta=1": "tab:orange", "one-euro beta=10": "tab:olive",
                 "one-euro beta=30": "tab:red", "kalman fixed-R": "tab:purple", "kalman STAR-R": "tab:blue",
                 "kalman STAR-R no floor": "tab:cyan", "kalman STAR-R constant q": "tab:green",
                 "kalman raw STAR-R": "tab:gray", "face STAR-R": "tab:brown", "face isotropic-R": "tab:pink",
                 "face + PCA modes": "darkgoldenrod", LOOKAHEAD_STAR: "firebrick", LOOKAHEAD_ISO: "salmon",
                 LOOKAHEAD_SWEEP: "teal"}


def plot(rows: list[dict], path: Path) -> Path:
    """Jitter (still) vs lag (sway) and vs delay, one curve per smoother family across its sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    fams: dict[str, list[dict]] = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r)
    for ax, (xkey, xlabel) in zip(axes, (("lag_sway", "lag, 0.5 Hz sway: RMS error, bias removed (% IOD)"),
                                         ("lag_fast", "lag, 1.5 Hz fast motion (% IOD)"))):
        for fam, rs in fams.items():
            xs = [100 * r[xkey] for r in rs]
            ys = [100 * r["jitter_still"] for r in rs]
            if fam in PRODUCTS:  # the product as shipped, run on its own
                ax.plot(xs, ys, "*", label=fam, ms=11, zorder=4,
                        color={"Tracker()": "crimson", "Tracker(crop_from='raw')": "darkslategray"}.get(fam, "darkorange"))
                continue
            style = "o" if len(rs) == 1 else (":" if "no floor" in fam else "--" if "constant q" in fam else "-")
            main = fam in ("kalman STAR-R", "kalman raw STAR-R", "none", "face STAR-R") or fam.startswith("one-euro")
            ax.plot(xs, ys, style if len(rs) == 1 else "o" + style, label=fam, ms=3.5 if main else 2.5,
                    lw=1.8 if main else 1.0, zorder=3 if main else 2, color=FAMILY_COLORS.get(fam))
            if "no floor" in fam or "constant q" in fam:
                continue  # near-duplicates of STAR-R: unlabelled to keep the plot readable
            for r, x, y in zip(rs, xs, ys):
                key = next((k for k in SWEPT if k in r["params"] and r["params"][k]), None)
                if key:
                    ax.annotate(f"{r['params'][key]:g}", (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("jitter on a still face (% IOD, log)")
        ax.set_yscale("log")
        ax.set_xscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xticks([1, 1.5, 2, 3, 5, 10, 20, 40])
        ax.set_yticks([0.05, 0.1, 0.2, 0.3, 0.5, 1, 2])
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle("Smoothing: jitter vs lag, lower-left is better (labels: min_cutoff / r_floor / r_scale)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model path or name (default: the bundled model)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder holding wflw/")
    p.add_argument("--faces", type=int, default=12, help="held-out faces, largest first (6 faces move the "
                   "still-face figures by ~10 %% between noise draws)")
    p.add_argument("--frames", type=int, default=60, help="frames per sequence (30 fps)")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="re-run one config per family as a separate Tracker and compare")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for stability.json")
    p.add_argument("--docs", type=Path, default=DOCS_DIR, help="folder for the jitter-vs-lag plot")
    p.add_argument("--clips", action=argparse.BooleanOptionalAction, default=True,
                   help="also the real clips (videos/) beside MediaPipe's Face Mesh peer")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    res = run(a.model, a.data, a.faces, a.frames, default_configs(), a.verify)
    if a.clips:
        res["real_clips"] = real_clips(a.model, a.data)
    cols = ["smoother", "jitter still", "jitter sway", "jitter fast", "lag sway", "lag fast", "delay sway ms",
            "step frames", "NME", "NMF still", "NMF all"]
    table = [[r["label"], *(f"{100 * r[k]:.3f}" for k in ("jitter_still", "jitter_sway", "jitter_fast")),
              *(f"{100 * r[k]:.3f}" for k in ("lag_sway", "lag_fast")), f"{r['delay_ms_sway']:.0f}",
              f"{r['step_frames']:g}", f"{100 * r['nme']:.2f}", f"{100 * r['nmf_still']:.3f}",
              f"{100 * r['nmf_all']:.3f}"] for r in res["rows"]]
    console = make_console()
    print_table(f"Stability: {len(res['faces'])} held-out faces x 4 sequences x {a.frames} frames, "
                f"model {model_label(a.model)} on {res['engine']} (jitter / lag / NME in % of inter-ocular)",
                cols, table, console)
    console.print(f"frames without a face: {res['lost_frames']}")
    cc = res["covariance_check"]["mean_over_faces"]
    console.print(f"STAR covariance vs measured noise on the still face: predicted / observed sigma "
                  f"{cc['sigma_ratio']:.1f}x (median landmark), rank correlation across landmarks "
                  f"{cc['spearman']:.2f}, elongated covariances whose noise is larger along the major axis "
                  f"{100 * cc['major_axis_noisier']:.0f} % (mean {cc['elongated']:.0f} of 68 landmarks per face)")
    nc = res["crop_noise_check"]["mean_over_faces"]
    console.print(f"still face, crops following the raw output: raw jitter as tracked {100 * nc['tracked']:.3f}, on one "
                  f"fixed crop over the same noisy frames {100 * nc['fixed_crop']:.3f}, the same moving crops over one "
                  f"noise-free frame {100 * nc['moving_crop_clean']:.3f} (% IOD)")
    for c in res["verify"]:
        console.print(f"verify {c['config']}: separate Tracker vs fan-out max |diff| = {c['max_abs_diff_px']:.2e} px")
    verdict = {fam: compare_at_equal_lag(res["rows"], fam)
               for fam in ("kalman STAR-R", "kalman raw STAR-R", "kalman STAR-R no floor", "kalman STAR-R constant q",
                           "kalman fixed-R")}
    console.print("Equal-lag comparison (lag = lag sway, jitter = jitter still):")
    for fam, items in verdict.items():
        for v in items:
            ref = (f"best One Euro with lag <= it: {v['reference']}, jitter {100 * v['reference_jitter']:.3f} "
                   f"lag {100 * v['reference_lag']:.3f}" if v["reference"] else "no One Euro config has lag that low")
            who = {True: fam.split(" no ")[0] + " better", False: "One Euro better", None: "n/a"}[v["wins"]]
            console.print(f"  {v['config']}: jitter {100 * v['jitter']:.3f} lag {100 * v['lag']:.3f} | {ref} -> {who}")
    res["equal_lag_comparison"] = verdict
    res["face_star_vs_isotropic"] = star_vs_isotropic(res["rows"])
    res["lookahead_star_vs_isotropic"] = star_vs_isotropic(res["rows"], LOOKAHEAD_STAR, LOOKAHEAD_ISO)
    report_face(res, console)
    png = plot(res["rows"], a.docs / "stability_jitter_lag.png")
    console.print(f"plot: {png}")
    command = "python -m benchmarks.stability" + (f" --model {a.model}" if a.model else "")
    path = write_json("stability", {"command": command, "model": model_label(a.model),
                                    "model_info": model_info(a.model), "frames": a.frames,
                                    "seconds": time.perf_counter() - t0, **res,
                                    "markdown": markdown_table(cols, table)}, a.out)
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
