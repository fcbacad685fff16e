"""Jitter on real talking-head clips (no annotations): raw network output vs smoothed, in still stretches.

Every clip in ``videos/`` is tracked once by the real :class:`Tracker`; as in :mod:`benchmarks.stability` a
fan-out smoother hands the tracker's own measurements to each smoother configuration. A frame is *still* when
the face's raw landmark centroid, averaged over a 5-frame window, moves less than ``--still`` inter-ocular
distances per frame, and so does its inter-ocular distance (no zoom). Jitter = RMS frame-to-frame landmark
displacement over consecutive still frames, in % of the inter-ocular distance, for all 68 points and for the
rigid ones (brows, nose, eyes: speech moves the mouth and jaw even when the head is still).

A picture strip (``docs/clip_strip.png``) shows 8 consecutive still frames zoomed on the eye region, raw on
top, smoothed below, each with its landmark trail over the previous frames.

    python -m benchmarks.clips [--model PATH] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from .common import (DEFAULT_DATA, DOCS_DIR, RESULTS_DIR, make_console, markdown_table, model_info, model_label,
                     print_table, write_json)
from .face_stability import track_clip
from .stability import FanOutSmoother  # noqa: F401  (registers the 'bench-fanout' smoother track_clip uses)
from .synthetic import SCHEME

CONFIGS = [("raw", "none", {}), ("kalman default", "kalman", {}), ("one-euro default", "one-euro", {}),
           ("kalman r_scale=0.01", "kalman", {"r_scale": 0.01}),
           ("one-euro 0.25/10", "one-euro", {"min_cutoff": 0.25, "beta": 10.0})]
"""Raw, the product defaults of the two smoothers, and one low-lag setting of each from benchmarks.stability
(clips have no ground truth, so only jitter is measured here: the laggier filter always looks calmer).
Labels: (label, smoother, parameters); ``one-euro 0.25/10`` is min_cutoff=0.25, beta=10."""
RIGID = np.r_[17:48]  # brows, nose, eyes


def still_mask(raw: np.ndarray, threshold: float, window: int = 5) -> np.ndarray:
    """(T,) frames whose windowed centroid speed and scale change are below ``threshold`` IOD per frame."""
    c = raw.mean(axis=1)  # NaN where no face
    d = SCHEME.inter_ocular(raw)
    k = np.ones(window) / window
    cs = np.stack([np.convolve(c[:, i], k, mode="same") for i in range(2)], 1)
    ds = np.convolve(d, k, mode="same")
    speed = np.r_[np.inf, np.linalg.norm(np.diff(cs, axis=0), axis=1)] / d
    zoom = np.r_[np.inf, np.abs(np.diff(ds))] / d
    with np.errstate(invalid="ignore"):
        ok = (speed < threshold) & (zoom < threshold) & np.isfinite(d)
    half = window // 2  # the moving average is biased at the ends
    ok[:half] = ok[len(ok) - half:] = False
    return ok


def still_jitter(out: np.ndarray, mask: np.ndarray, points: np.ndarray | slice = slice(None)) -> float:
    """RMS displacement (% IOD) between consecutive frames that are both still."""
    pair = mask[1:] & mask[:-1]
    if not pair.any():
        return float("nan")
    d = np.linalg.norm(np.diff(out, axis=0)[:, points], axis=-1) / SCHEME.inter_ocular(out[1:])[:, None]
    return float(100 * np.sqrt(np.mean(d[pair] ** 2)))


def strip(frames: list[np.ndarray], raw: np.ndarray, smooth: np.ndarray, mask: np.ndarray, path: Path,
          n: int = 8, tile: int = 150, trail: int = 6) -> Path | None:
    """Raw (top) vs smoothed (bottom) over the ``n`` consecutive frames (plus ``trail`` before) with the most
    still frames, zoomed on the eyes and nose."""
    ok = np.isfinite(raw[:, 0, 0]) & np.isfinite(smooth[:, 0, 0])
    starts = [s for s in range(trail, len(mask) - n + 1) if ok[s - trail:s + n].all()]
    if not starts:
        return None
    start = max(starts, key=lambda s: (int(mask[s - trail:s + n].sum()), -s))
    span = slice(start - trail, start + n)
    centre = np.nanmean(smooth[span][:, 17:48], axis=(0, 1))
    side = 1.4 * float(np.nanmean(SCHEME.inter_ocular(smooth[span])))
    k = tile / side
    m = np.array([[k, 0, tile / 2 - k * centre[0]], [0, k, tile / 2 - k * centre[1]]])
    rows = []
    for pts, color in ((raw, (0, 0, 255)), (smooth, (0, 200, 0))):
        tiles = []
        for t in range(start, start + n):
            img = cv2.warpAffine(frames[t], m, (tile, tile), flags=cv2.INTER_CUBIC)
            hist = pts[t - trail:t + 1] @ m[:, :2].T + m[:, 2]
            for i in range(68):
                cv2.polylines(img, [np.round(hist[:, i] * 16).astype(np.int32)], False, (255, 255, 0), 1,
                              cv2.LINE_AA, 4)
            for p in hist[-1]:
                cv2.circle(img, (int(round(p[0] * 16)), int(round(p[1] * 16))), 2 * 16, color, -1, cv2.LINE_AA, 4)
            tiles.append(img)
        rows.append(np.hstack(tiles))
    label = np.full((18, rows[0].shape[1], 3), 255, np.uint8)
    cv2.putText(label, f"top: raw network output   bottom: Kalman (STAR covariance)   frames {start}-{start + n - 1}, "
                f"trails = last {trail} frames", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_small_png(np.vstack([label, rows[0], rows[1]]), path)
    return path


def save_small_png(img_bgr: np.ndarray, path: Path, colors: int = 256) -> None:
    """PNG with an adaptive palette (a few hundred KB instead of MBs for photo strips)."""
    from PIL import Image

    Image.fromarray(img_bgr[:, :, ::-1]).quantize(colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--still", type=float, default=0.01, help="still: centroid speed < this many IOD per frame")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--docs", type=Path, default=DOCS_DIR)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    clips = sorted((a.data / "videos").glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no clips in {a.data / 'videos'}")
    rows, table, strip_path, best_still = [], [], None, -1
    for clip in clips:
        out, frames, fps = track_clip(clip, a.model, CONFIGS)
        mask = still_mask(out[0], a.still)
        r = {"clip": clip.name, "frames": len(frames), "face_frames": int(np.isfinite(out[0, :, 0, 0]).sum()),
             "still_frames": int(mask.sum())}
        for ci, cfg in enumerate(CONFIGS):
            name = cfg[0]
            r[f"jitter_all::{name}"] = still_jitter(out[ci], mask)
            r[f"jitter_rigid::{name}"] = still_jitter(out[ci], mask, RIGID)
        rows.append(r)
        if r["still_frames"] > best_still:  # strip from the clip with the most still frames
            best_still = r["still_frames"]
            strip_path = strip(frames, out[0], out[1], mask, a.docs / "clip_strip.png") or strip_path
    labels = [c[0] for c in CONFIGS]
    cols = ["clip", "still frames", *(f"{l}: all" for l in labels), *(f"{l}: rigid" for l in labels)]
    for r in rows:
        table.append([r["clip"].removesuffix(".mp4"), f"{r['still_frames']} / {r['face_frames']}",
                      *(f"{r[f'jitter_all::{l}']:.3f}" for l in labels),
                      *(f"{r[f'jitter_rigid::{l}']:.3f}" for l in labels)])
    mean = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k.startswith("jitter")}
    table.append(["mean", f"{sum(r['still_frames'] for r in rows)} / {sum(r['face_frames'] for r in rows)}",
                  *(f"{mean[f'jitter_all::{l}']:.3f}" for l in labels),
                  *(f"{mean[f'jitter_rigid::{l}']:.3f}" for l in labels)])
    console = make_console()
    print_table(f"Still-face jitter on real clips, % IOD per frame (model {model_label(a.model)})", cols, table,
                console)
    console.print(f"strip: {strip_path}")
    path = write_json("clips", {"command": "python -m benchmarks.clips" + (f" --model {a.model}" if a.model else ""),
                                "model": model_label(a.model), "model_info": model_info(a.model),
                                "still_threshold": a.still, "clips": rows,
                                "mean": mean, "strip": strip_path, "seconds": time.perf_counter() - t0,
                                "markdown": markdown_table(cols, table)}, a.out)
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
