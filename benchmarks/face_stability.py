"""Face-level smoother figures for :mod:`benchmarks.stability` (issue 27): NMF, the expression sequence, the
STAR-vs-isotropic comparison at equal lag, time per update, and the real clips beside the MediaPipe peer.

NMF (LDEQ, CVPR 2023): the RMS over frames and landmarks of the frame-to-frame change of the error
(output - truth), divided by the face size sqrt(w h) of the true landmark box of the frame.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from star_track import Tracker, VideoSource
from star_track.smoothing import RECORDED_LOOKAHEAD, make_smoother

from .clip_jitter import blink_delays, blink_depth_kept, blink_labels, jitter, run_peer, speech_kept
from .nonrigid import follow

FACE_SCALES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0)
"""``r_scale`` sweep of the face-level filter (default 1), with the STAR covariance and with an isotropic one."""
RIGID_SCALES = (1.0, 2.0, 4.0, 16.0)
"""``rigid_r_scale`` sweep (default 1.2): how much calmer a heavier rigid filter makes the head, at what lag."""
LOOKAHEADS = (1, 2, 4, 6)
"""``lookahead`` sweep of the face-level filter (with its look-ahead tuning; the product's is in the families below)."""
LIVE_LOOKAHEADS = (1, 2, 3)
"""Short look-aheads for live use (the display that many frames behind), run as products on the real clips."""
LOOKAHEAD_SWEEP = "face look-ahead sweep"
LOOKAHEAD_STAR = f"face lookahead={RECORDED_LOOKAHEAD} STAR-R"
LOOKAHEAD_ISO = f"face lookahead={RECORDED_LOOKAHEAD} isotropic-R"
"""The look-ahead filter along the ``r_scale`` sweep, with the STAR covariance and with an isotropic one."""


def face_configs() -> list[tuple[str, str, dict[str, Any]]]:
    """The face-level filter's families for :func:`benchmarks.stability.default_configs`."""
    cfgs: list[tuple[str, str, dict[str, Any]]] = [("face STAR-R", "face", {"r_scale": rs}) for rs in FACE_SCALES]
    cfgs += [("face isotropic-R", "face", {"r_scale": rs, "isotropic": True}) for rs in FACE_SCALES]
    cfgs += [("face + PCA modes", "face", {"r_scale": rs, "basis": True}) for rs in (1.0, 1.5, 2.0)]
    cfgs += [("face rigid", "face", {"rigid_r_scale": rr}) for rr in RIGID_SCALES]
    ahead = {"lookahead": RECORDED_LOOKAHEAD}
    cfgs += [(LOOKAHEAD_STAR, "face", {"r_scale": rs, **ahead}) for rs in FACE_SCALES]
    cfgs += [(LOOKAHEAD_ISO, "face", {"r_scale": rs, "isotropic": True, **ahead}) for rs in FACE_SCALES]
    cfgs += [(LOOKAHEAD_SWEEP, "face", {"lookahead": n}) for n in LOOKAHEADS]
    return cfgs


def nmf(out: np.ndarray, truth: np.ndarray, skip: int = 5) -> float:
    """LDEQ's normalised mean flicker (see the module docs), frames from ``skip`` on."""
    d = np.diff(out - truth, axis=0)[max(skip - 1, 0):]
    w, h = np.ptp(truth, axis=1).T
    size = np.sqrt(w * h)[1:][max(skip - 1, 0):]
    return float(np.sqrt(np.nanmean((np.linalg.norm(d, axis=-1) / size[:, None]) ** 2)))


def expression_metrics(out: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """Mouth / blink delay (frames) and amplitude kept against the unsmoothed output (:func:`follow`)."""
    return follow(out, raw)


def interpolate(rows: list[dict], family: str, at: float, x_key: str, y_key: str) -> float:
    """The ``family``'s ``y_key`` at ``x_key`` = ``at``, interpolated on its sweep in log-log (NaN outside it)."""
    pts = sorted((r[x_key], r[y_key]) for r in rows if r["family"] == family)
    if not pts:
        return float("nan")
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    if at < np.exp(x.min()) or at > np.exp(x.max()):
        return float("nan")
    return float(np.exp(np.interp(np.log(at), x, y)))


def star_vs_isotropic(rows: list[dict], star_family: str = "face STAR-R", iso_family: str = "face isotropic-R"
                      ) -> dict[str, list[dict]]:
    """The face-level filter with the STAR covariance vs an isotropic R (the families' ``r_scale`` sweeps).

    ``equal_lag``: per isotropic config, the lowest-jitter STAR config whose sway lag is not higher, and the
    jitter gain (the benchmark's equal-lag rule); ``same_setting``: both at the same ``r_scale``; ``interpolated``:
    per STAR config, the isotropic sweep's jitter at its lag and lag at its jitter (NaN outside the sweep)."""
    star = [r for r in rows if r["family"] == star_family]
    iso = [r for r in rows if r["family"] == iso_family]
    equal_lag = []
    for r in iso:
        ok = [x for x in star if x["lag_sway"] <= r["lag_sway"]]
        best = min(ok, key=lambda x: x["jitter_still"]) if ok else None
        equal_lag.append({"isotropic": r["label"], "lag_sway": r["lag_sway"], "jitter_still": r["jitter_still"],
                          "star": best["label"] if best else None,
                          "star_lag_sway": best["lag_sway"] if best else float("nan"),
                          "star_jitter_still": best["jitter_still"] if best else float("nan"),
                          "jitter_gain": 1 - best["jitter_still"] / r["jitter_still"] if best else float("nan")})
    same, interp = [], []
    for r in star:
        other = next((x for x in iso if x["params"].get("r_scale") == r["params"].get("r_scale")), None)
        if other:
            same.append({"r_scale": r["params"].get("r_scale"), **{f"{k}::{fam}": x[k] for fam, x in
                                                                 (("star", r), ("isotropic", other))
                                                                 for k in ("jitter_still", "lag_sway", "lag_fast")}})
        iso_j = interpolate(rows, iso_family, r["lag_sway"], "lag_sway", "jitter_still")
        iso_l = interpolate(rows, iso_family, r["jitter_still"], "jitter_still", "lag_sway")
        interp.append({"config": r["label"], "isotropic_jitter_at_lag": iso_j, "isotropic_lag_at_jitter": iso_l})
    return {"equal_lag": equal_lag, "same_setting": same, "interpolated": interp}


def time_per_update(points: np.ndarray, cov: np.ndarray, scale: np.ndarray,
                    smoothers: tuple[str, ...] = ("none", "one-euro", "kalman", "face", "face lookahead"),
                    repeats: int = 3) -> dict[str, float]:
    """Median ms per ``update`` of each smoother over a recorded track (T, N, 2), (T, N, 2, 2), (T,); ``face
    lookahead``: the face-level filter with the recorded-video look-ahead, its update plus the revision of the frame
    that leaves the window (what a Tracker with ``lookahead`` does per frame and face)."""
    ok = np.isfinite(points).all(axis=(1, 2))
    points, cov, scale = points[ok], cov[ok], scale[ok]
    res = {}
    for label in smoothers:
        ahead = RECORDED_LOOKAHEAD if label == "face lookahead" else 0
        runs = []
        for _ in range(repeats):
            f: Any = make_smoother("face", lookahead=ahead) if ahead else make_smoother(label)
            f.update(points[0], cov[0], 1 / 30, float(scale[0]))
            t0 = time.perf_counter()
            for p, c, s in zip(points[1:], cov[1:], scale[1:]):
                f.update(p, c, 1 / 30, float(s))
                if ahead:
                    f.revised(f.updates - ahead)
            runs.append((time.perf_counter() - t0) / max(len(points) - 1, 1))
        res[label] = 1e3 * float(np.median(runs))
    return res


CLIP_CONFIGS = [("none", "none", {}), ("one-euro", "one-euro", {}), ("kalman", "kalman", {}),
                ("face", "face", {}), ("face isotropic-R", "face", {"isotropic": True}),
                ("face + PCA modes", "face", {"basis": True}),
                (f"face lookahead={RECORDED_LOOKAHEAD}", "face", {"lookahead": RECORDED_LOOKAHEAD}),
                (f"face lookahead={RECORDED_LOOKAHEAD} isotropic-R", "face",
                 {"lookahead": RECORDED_LOOKAHEAD, "isotropic": True}),
                *((f"face rigid_r_scale={rr:g}", "face", {"rigid_r_scale": rr}) for rr in RIGID_SCALES)]
"""Real-clip smoothers: the product's defaults, and the face-level filter with an isotropic R, with modes, with
look-ahead (STAR and isotropic R) and along the ``rigid_r_scale`` sweep."""


def track_clip(path: Path, model: str | None, configs: list[tuple[str, str, dict]]
               ) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Outputs (C, T, 68, 2) of every config on the first-tracked face (NaN without one), frames, fps."""
    from star_track.smoothing import SMOOTHERS

    # The fan-out class the tracker builds (benchmarks.stability registers it; under `python -m` that module is
    # __main__, so importing it here would give a second class whose live list stays empty).
    fanout: Any = SMOOTHERS["bench-fanout"]
    fan = [(n, p) for _, n, p in configs]
    frames, outs = [], []
    with VideoSource(path) as src, Tracker(model, engine="onnxruntime", smoothing="bench-fanout", crop_from="raw",
                                           smoothing_params={"configs": fan}, max_faces=1, fps=src.fps) as tr:
        fps = src.fps
        fanout.live.clear()
        marks = []
        for vf in src:
            faces = tr.track(vf.image, vf.time)
            o = np.full((len(configs), 68, 2), np.nan)
            if faces:
                f = faces[0]
                s = next(s for s in fanout.live if s.last_points is not None
                         and np.array_equal(s.last_points, f.raw_landmarks))
                o = np.stack(s.outputs)
                marks.append((o, s, s.updates))
            outs.append(o)
            frames.append(vf.image)
    for o, s, updates in marks:  # the look-ahead filters' final revisions
        s.settle(o, updates)
    return np.stack(outs, 1), frames, fps


def track_clip_plain(path: Path, model: str | None, lookahead: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed and raw landmarks (T, 68, 2) of the first-tracked face of a plain ``Tracker(max_faces=1)`` (the
    product as shipped: its crops follow its own smoothed output; with ``lookahead``, its settled output), NaN
    without a face."""
    out, settled = [], []
    with VideoSource(path) as src, Tracker(model, engine="onnxruntime", max_faces=1, fps=src.fps,
                                           lookahead=lookahead) as tr:
        for vf in src:
            tr.track(vf.image, vf.time)
            settled += tr.settled()
        for faces in [*settled, *tr.flush()]:
            out.append((faces[0].landmarks, faces[0].raw_landmarks) if faces else np.full((2, 68, 2), np.nan))
    both = np.asarray(out, np.float64)
    return both[:, 0], both[:, 1]


def real_clips(model: str | None, data: Path, peer: bool = True) -> dict:
    """Jitter (PEERS.md), speech and blinks kept, on every clip in ``data/videos``, with the MediaPipe peer."""
    rows = []
    for clip in sorted((data / "videos").glob("*.mp4")):
        out, frames, fps = track_clip(clip, model, CLIP_CONFIGS)
        raw = out[0]
        r: dict[str, Any] = {"clip": clip.name}
        systems = {label: out[i] for i, (label, _, _) in enumerate(CLIP_CONFIGS)}
        raws = dict.fromkeys(systems, raw)  # what each system smoothed
        systems["Tracker()"], raws["Tracker()"] = track_clip_plain(clip, model)
        for n in (RECORDED_LOOKAHEAD, *LIVE_LOOKAHEADS):
            systems[f"Tracker(lookahead={n})"], raws[f"Tracker(lookahead={n})"] = track_clip_plain(clip, model, n)
        if peer:
            start = int(np.argmax(np.isfinite(raw[:, 0, 0])))
            systems["MediaPipe Face Mesh + its One Euro"] = np.concatenate(
                [np.full((start, 68, 2), np.nan), run_peer(frames[start:], raw[start], fps)])
        closed = blink_labels(clip.name)
        for label, pts in systems.items():
            r[f"jitter::{label}"] = jitter(pts)
            if not label.startswith("MediaPipe"):
                r[f"lip_corr::{label}"], r[f"lip_sd::{label}"] = speech_kept(pts, raws[label])
                if closed:
                    r[f"blink_depth::{label}"] = blink_depth_kept(pts, raws[label], closed)
                    r[f"blink_delays::{label}"] = blink_delays(pts, raws[label], closed)
        rows.append(r)
    keys = sorted({k for r in rows for k in r if "::" in k and not k.startswith("blink_delays")})
    mean = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
    for label in {k.split("::")[1] for r in rows for k in r if k.startswith("blink_delays")}:  # over all blinks
        mean[f"blink_delay::{label}"] = float(np.mean([d for r in rows for d in r.get(f"blink_delays::{label}", [])]))
    return {"clips": rows, "mean": mean}


def print_equal_lag(items: list[dict], what: str, console) -> None:
    """One line per isotropic config of :func:`star_vs_isotropic`'s ``equal_lag``."""
    console.print(f"STAR covariance vs isotropic R in the {what}, at equal or lower sway lag:")
    for v in items:
        star = (f"best STAR-R with lag <= it: {v['star']}, jitter {100 * v['star_jitter_still']:.3f} lag "
                f"{100 * v['star_lag_sway']:.3f} -> {100 * v['jitter_gain']:.0f} % less jitter" if v["star"]
                else "no STAR-R config has lag that low")
        console.print(f"  {v['isotropic']}: jitter {100 * v['jitter_still']:.3f} lag {100 * v['lag_sway']:.3f} | {star}")


def report_face(res: dict, console) -> None:
    """Print the face-level filter's figures: expressions, STAR vs isotropic R, time, real clips."""
    from .common import print_table

    keep = ("none", "one-euro min_cutoff=0.25, beta=30", "kalman STAR-R r_scale=3")
    rows = [r for r in res["rows"] if r["label"] in keep or r["family"].startswith(("face", "Tracker("))]
    cols = ["smoother", "jitter still", "NMF still", "NMF all", "lag sway", "lag fast", "mouth delay",
            "mouth kept", "blink delay", "blink kept"]
    table = [[r["label"], *(f"{100 * r[k]:.3f}" for k in ("jitter_still", "nmf_still", "nmf_all", "lag_sway",
                                                          "lag_fast")),
              *(f"{r[k]:.2f}" for k in ("mouth_delay", "mouth_amplitude", "blink_delay", "blink_amplitude"))]
             for r in rows]
    print_table("Face-level filter (% IOD / % face size; delays in frames, amplitudes vs the unsmoothed output)",
                cols, table, console)
    res["face_markdown"] = cols, table
    for key, what in (("face_star_vs_isotropic", "face-level filter"),
                      ("lookahead_star_vs_isotropic", f"face-level filter with look-ahead {RECORDED_LOOKAHEAD}")):
        print_equal_lag(res[key]["equal_lag"], what, console)
    console.print("ms per update: " + ", ".join(f"{k} {v:.3f}" for k, v in res.get("ms_per_update", {}).items()))
    clips = res.get("real_clips")
    if clips:
        systems = sorted({k.split("::")[1] for k in clips["mean"] if k.startswith("jitter::")})
        cols = ["system", *(c["clip"].removesuffix(".mp4") for c in clips["clips"]), "mean", "x MediaPipe",
                "lip corr (min)", "lip SD (min)", "blink depth kept", "blink delay"]
        mp = clips["mean"].get("jitter::MediaPipe Face Mesh + its One Euro", float("nan"))
        table = []
        for s in systems:
            per = [c.get(f"jitter::{s}", float("nan")) for c in clips["clips"]]
            lip = [c.get(f"lip_corr::{s}", float("nan")) for c in clips["clips"]]
            sd = [c.get(f"lip_sd::{s}", float("nan")) for c in clips["clips"]]
            table.append([s, *(f"{x:.4f}" for x in per), f"{np.mean(per):.4f}", f"{np.mean(per) / mp:.2f}",
                          f"{np.min(lip):.3f}", f"{np.min(sd):.2f}",
                          f"{clips['mean'].get(f'blink_depth::{s}', float('nan')):.2f}",
                          f"{clips['mean'].get(f'blink_delay::{s}', float('nan')):.2f}"])
        print_table("Real clips: mean |second difference| of the 51 inner points / IOD (PEERS.md)", cols, table,
                    console)
        res["clips_markdown"] = cols, table
