"""A frame of ``star-track video --ellipses`` on a real clip, for ``docs/ellipses_frame.png``, with the ellipse
shapes it shows measured from the same run's landmark file.

Runs the real CLI (``star-track video CLIP -o OUT.mp4 -l OUT.csv --ellipses``), takes the middle frame of the
annotated video, crops it around the face and enlarges it 2x. From the landmark CSV (calibrated covariances) it
prints the median 2-σ semi-axes and elongation (major / minor) of the jaw (points 0-16) and the eye corners
(36, 39, 42, 45) over all frames.

    python -m benchmarks.ellipses [--clip ../shared/data/videos/WDA_BobMenendez_000.mp4]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from star_track.io.landmarks import read_landmarks_csv

from .common import DEFAULT_DATA, DOCS_DIR, write_json

JAW = list(range(17))
EYE_CORNERS = [36, 39, 42, 45]


def axes_2sigma(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-σ semi-axes (major, minor) in pixels of covariances (..., 2, 2)."""
    lam = np.clip(np.linalg.eigvalsh(cov), 0, None)
    return 2 * np.sqrt(lam[..., 1]), 2 * np.sqrt(lam[..., 0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", type=Path, default=DEFAULT_DATA / "videos" / "WDA_BobMenendez_000.mp4")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=DOCS_DIR / "ellipses_frame.png")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        video, csv = Path(tmp) / "ellipses.mp4", Path(tmp) / "landmarks.csv"
        cmd = [sys.executable, "-m", "star_track.cli.entry", "video", str(a.clip), "-o", str(video), "-l", str(csv),
               "--ellipses", "--no-progress", *(["--model", a.model] if a.model else [])]
        subprocess.run(cmd, check=True)
        d = read_landmarks_csv(csv)
        cap = cv2.VideoCapture(str(video))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        mid = int(d["frame"][len(d["frame"]) // 2])
        cap.set(cv2.CAP_PROP_POS_FRAMES, mid)
        ok, frame = cap.read()
        cap.release()
    if not ok:
        raise SystemExit(f"could not read frame {mid} of {n}")
    row = int(np.flatnonzero(d["frame"] == mid)[0])
    x1, y1, x2, y2 = d["box"][row]
    side = 1.35 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h, w = frame.shape[:2]
    l, t = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    r, b = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    crop = cv2.resize(frame[t:b, l:r], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), crop)
    major, minor = axes_2sigma(d["covariance"])
    iod = np.linalg.norm(d["landmarks"][:, 45] - d["landmarks"][:, 36], axis=1)
    stats = {}
    for name, idx in (("jaw", JAW), ("eye_corners", EYE_CORNERS)):
        stats[name] = {"major_2sigma_px": float(np.median(major[:, idx])),
                       "minor_2sigma_px": float(np.median(minor[:, idx])),
                       "elongation": float(np.median(major[:, idx] / np.maximum(minor[:, idx], 1e-9))),
                       "major_2sigma_iod_pct": float(100 * np.median(major[:, idx] / iod[:, None]))}
        s = stats[name]
        print(f"{name}: median 2-sigma semi-axes {s['major_2sigma_px']:.1f} x {s['minor_2sigma_px']:.1f} px "
              f"(major {s['major_2sigma_iod_pct']:.1f} % of the eye distance), elongation {s['elongation']:.2f}")
    print(f"median expected error (predicted NME) {100 * np.nanmedian(d['expected_error']):.2f} %; "
          f"inter-ocular {np.median(iod):.0f} px; frame {mid} -> {a.out}")
    write_json("ellipses", {"command": "python -m benchmarks.ellipses", "clip": a.clip.name, "frame": mid,
                            "records": len(d["frame"]), "stats": stats,
                            "median_expected_error": float(np.nanmedian(d["expected_error"]))})


if __name__ == "__main__":
    main()
