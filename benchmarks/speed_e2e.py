"""End to end vs MediaPipe: star-track's ``Tracker()`` and MediaPipe's legacy Face Mesh on the same frames.

Settings: each real 512x512 talking-head clip (one face), and 1280x720 frames composed from the clips with one
face and with four (2x2 grid, every face the same size in both, so their difference is the cost of three extra
faces). All frames are decoded into memory first: no decode, draw or encode in the timed loop. Our side is
``Tracker()`` with its default settings (one ``track`` call per frame, the clip's timestamps); the peer is
``FaceMesh(static_image_mode=False, max_num_faces=<faces in the scene>, refine_landmarks=False)`` in its own venv
(:class:`benchmarks.peer.LegacyFaceMeshPeer`). After one warm-up pass each, the timed passes alternate ours /
peer, so both see the same machine state; the best pass of each counts. Our passes run with
:attr:`Tracker.on_stage` set: the best one also gives the mean time per frame of each stage. Both sides also
report process CPU time inside the timed calls (least of the passes; every thread counts): on a busy machine it
moves less than wall time, and it shows work a side spreads over several cores. The clips run once more
with ``Tracker(max_faces=1)``: told the number of faces, as MediaPipe is, ours skips the periodic search
for new faces too.
"""
from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .common import markdown_table, print_table
from .peer import SETUP_LINE, LegacyFaceMeshPeer, best_of, peer_python

TRACKER_STAGES = ("detect", "crop", "engine", "back-map", "smooth", "other")


# -- frames ------------------------------------------------------------------------------------------------------
def load_clip(path: Path, limit: int | None = None) -> tuple[np.ndarray, float]:
    """Every frame of a clip (up to ``limit``) as (N, H, W, 3) uint8 BGR, and its frame rate."""
    from star_track import VideoSource

    frames: list[np.ndarray] = []
    with VideoSource(path) as src:
        fps = float(src.fps)
        for vf in src:
            if limit is not None and len(frames) >= limit:
                break
            frames.append(vf.image)
    if not frames:
        raise SystemExit(f"{path}: no frames")
    return np.stack(frames), fps


def grid_layout(n_faces: int, size: tuple[int, int]) -> tuple[int, list[tuple[int, int]]]:
    """Tile side and the top-left corner of each of ``n_faces`` tiles: a grid of up to 2x2 cells of the frame
    (the tile is the cell's shorter side whatever the count, so a face has the same size with 1 face or 4),
    centred; one face sits in the middle."""
    if not 1 <= n_faces <= 4:
        raise ValueError(f"1 to 4 faces, got {n_faces}")
    w, h = size
    side = min(w // 2, h // 2)
    cols = 1 if n_faces == 1 else 2
    rows = (n_faces + cols - 1) // cols
    x0, y0 = (w - cols * side) // 2, (h - rows * side) // 2
    return side, [(x0 + (i % cols) * side, y0 + (i // cols) * side) for i in range(n_faces)]


def compose_grid(clips: list[np.ndarray], size: tuple[int, int], n_faces: int) -> np.ndarray:
    """(N, H, W, 3) frames: ``n_faces`` clips (clip ``i % len(clips)`` in tile ``i``) resized into a
    :func:`grid_layout` on a fixed gradient; N is the shortest clip's length."""
    if not clips:
        raise ValueError("no clips to compose")
    w, h = size
    side, corners = grid_layout(n_faces, size)
    n = min(len(c) for c in clips)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([90 + 60 * xx / w, 100 + 40 * yy / h, 120 - 30 * xx / w], -1).astype(np.uint8)
    out = np.empty((n, h, w, 3), np.uint8)
    out[:] = bg
    for i, (x, y) in enumerate(corners):
        clip = clips[i % len(clips)]
        for t in range(n):
            out[t, y:y + side, x:x + side] = cv2.resize(clip[t], (side, side), interpolation=cv2.INTER_AREA)
    return out


# -- our side ----------------------------------------------------------------------------------------------------
def tracker_pass(tracker: Any, frames: np.ndarray, fps: float) -> tuple[float, float, list[int], dict[str, float]]:
    """One pass from a reset tracker: wall and process CPU seconds inside ``track``, faces returned per frame,
    and the mean ms per frame of each stage (:attr:`Tracker.on_stage`; ``other``: the rest of ``track``). The
    hook costs two clock reads and a call per stage, a few microseconds per frame."""
    sums: dict[str, float] = defaultdict(float)

    def add(stage: str, seconds: float) -> None:
        sums[stage] += seconds

    tracker.reset()
    tracker.on_stage = add
    total, cpu, counts = 0.0, 0.0, []
    try:
        for i, frame in enumerate(frames):
            t0, c0 = time.perf_counter(), time.process_time()
            faces = tracker.track(frame, i / fps)
            total += time.perf_counter() - t0
            cpu += time.process_time() - c0
            counts.append(len(faces))
    finally:
        tracker.on_stage = None
    n = len(frames)
    stages = {s: 1e3 * sums[s] / n for s in TRACKER_STAGES if s != "other"}
    stages["track"] = 1e3 * total / n
    stages["other"] = stages["track"] - sum(stages[s] for s in TRACKER_STAGES if s != "other")
    return total, cpu, counts, stages


# -- one setting, both sides -------------------------------------------------------------------------------------
def compare(name: str, frames: np.ndarray, fps: float, n_faces: int, tracker: Any, passes: int,
            tmp: Path, with_peer: bool) -> dict:
    """Best-of-``passes`` frames/s of ours and of the peer on ``frames``, alternating, plus our stage times."""
    ours: list[tuple[float, float, list[int], dict[str, float]]] = []
    peer_recs: list[dict] = []
    peer = None
    if with_peer:
        npy = tmp / f"{name}.npy"
        np.save(npy, frames)
        peer = LegacyFaceMeshPeer(npy, max_faces=n_faces)
    try:
        for p in range(passes + 1):  # pass 0 warms both up and is not counted
            mine = tracker_pass(tracker, frames, fps)
            rec = peer.run_pass() if peer is not None else None
            if p:
                ours.append(mine)
                if rec is not None:
                    peer_recs.append(rec)
    finally:
        if peer is not None:
            peer.close()
    n = len(frames)
    seconds, _, counts, stages = min(ours, key=lambda o: o[0])  # the best pass's stages: they add up to it
    cpu = [o[1] for o in ours]
    row: dict[str, Any] = {"setting": name, "frames": n, "size": f"{frames.shape[2]}x{frames.shape[1]}",
                           "faces": n_faces, "ours_pass_seconds": [o[0] for o in ours], "ours_fps": n / seconds,
                           "ours_ms": 1e3 * seconds / n, "ours_pass_cpu_seconds": cpu,
                           "ours_cpu_ms": 1e3 * min(cpu) / n, "ours_faces_mean": float(np.mean(counts)),
                           "stages_ms": stages}
    if peer_recs:
        best = best_of(peer_recs)
        row.update(peer_fps=best["fps"], peer_ms=best["ms_per_frame"], peer_pass_seconds=best["pass_seconds"],
                   peer_faces_mean=best["faces_mean"], ratio=row["ours_fps"] / best["fps"])
        if "cpu_ms_per_frame" in best:
            row.update(peer_pass_cpu_seconds=best["pass_cpu_seconds"], peer_cpu_ms=best["cpu_ms_per_frame"],
                       cpu_ratio=best["cpu_ms_per_frame"] / row["ours_cpu_ms"])
    return row


def pooled(rows: list[dict], name: str) -> dict:
    """The 512x512 clips as one: all frames over the sum of each clip's best pass (ours and the peer's)."""
    n = sum(r["frames"] for r in rows)
    out: dict[str, Any] = {"setting": name, "frames": n, "size": rows[0]["size"], "faces": 1,
                           "ours_fps": n / sum(min(r["ours_pass_seconds"]) for r in rows),
                           "ours_faces_mean": float(np.mean([r["ours_faces_mean"] for r in rows]))}
    out["ours_ms"] = 1e3 / out["ours_fps"]
    if all("ours_cpu_ms" in r for r in rows):
        out["ours_cpu_ms"] = 1e3 * sum(min(r["ours_pass_cpu_seconds"]) for r in rows) / n
    if all("peer_fps" in r for r in rows):
        out["peer_fps"] = n / sum(min(r["peer_pass_seconds"]) for r in rows)
        out["peer_ms"] = 1e3 / out["peer_fps"]
        out["peer_faces_mean"] = float(np.mean([r["peer_faces_mean"] for r in rows]))
        out["ratio"] = out["ours_fps"] / out["peer_fps"]
        if "ours_cpu_ms" in out and all("peer_cpu_ms" in r for r in rows):
            out["peer_cpu_ms"] = 1e3 * sum(min(r["peer_pass_cpu_seconds"]) for r in rows) / n
            out["cpu_ratio"] = out["peer_cpu_ms"] / out["ours_cpu_ms"]
    return out


def per_extra_face(one: dict, four: dict) -> dict[str, float]:
    """ms per frame that each face beyond the first adds, from the 1- and 4-face settings of one layout."""
    out = {"ours_ms": (four["ours_ms"] - one["ours_ms"]) / 3}
    if "peer_ms" in one and "peer_ms" in four:
        out["peer_ms"] = (four["peer_ms"] - one["peer_ms"]) / 3
    stages = {s: (four["stages_ms"][s] - one["stages_ms"][s]) / 3 for s in four["stages_ms"]}
    return {**out, **{f"stage_{s}_ms": v for s, v in stages.items()}}


# -- the section -------------------------------------------------------------------------------------------------
def run_e2e(clip_paths: list[Path], frames: int | None, passes: int, console: Any) -> dict:
    """Every setting, both sides; prints the tables and returns rows, the per-extra-face cost and markdown."""
    from star_track import Tracker

    with_peer = peer_python() is not None
    if not with_peer:
        console.print(f"MediaPipe peer environment missing: only our figures follow. Create it with: {SETUP_LINE}",
                      soft_wrap=True)
    clips = [load_clip(p, frames) for p in clip_paths]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Tracker() as tracker:
        for path, (clip, fps) in zip(clip_paths, clips):
            rows.append(compare(path.stem, clip, fps, 1, tracker, passes, Path(tmp), with_peer))
        fps = clips[0][1]
        for n in (1, 4):
            grid = compose_grid([c for c, _ in clips], (1280, 720), n)
            rows.append(compare(f"1280x720 {n} face{'s' if n > 1 else ''}", grid, fps, n, tracker, passes,
                                Path(tmp), with_peer))
            del grid
        # Told the number of faces, as MediaPipe is (max_num_faces): no periodic search for new faces.
        with Tracker(max_faces=1) as told:
            told_rows = [compare(f"{path.stem} max_faces=1", clip, fps, 1, told, passes, Path(tmp), with_peer)
                         for path, (clip, fps) in zip(clip_paths, clips)]
    clip_rows, one, four = rows[:len(clip_paths)], rows[-2], rows[-1]
    summary = [pooled(clip_rows, f"{len(clip_rows)} clips 512x512, 1 face"), four,
               pooled(told_rows, f"{len(clip_rows)} clips 512x512, 1 face, Tracker(max_faces=1)")]
    rows += told_rows
    extra = per_extra_face(one, four)
    return {"rows": rows, "summary": summary, "per_extra_face": extra, "peer": with_peer,
            "markdown": tables(rows + summary[:1] + summary[2:], extra, console)}


def tables(rows: list[dict], extra: dict[str, float], console: Any) -> dict[str, str]:
    """Print the fps and stage tables; return them as markdown."""
    def f(r: dict, k: str, fmt: str = "{:.1f}") -> str:
        return fmt.format(r[k]) if k in r else "-"

    cols = ["setting", "frames", "faces ours/MP", "ours fps", "ours ms", "ours CPU ms", "MP fps", "MP ms",
            "MP CPU ms", "ours/MP fps", "ours/MP by CPU"]
    body = [[r["setting"], r["frames"], f"{r['ours_faces_mean']:.2f} / {f(r, 'peer_faces_mean', '{:.2f}')}",
             f(r, "ours_fps"), f(r, "ours_ms", "{:.2f}"), f(r, "ours_cpu_ms", "{:.2f}"), f(r, "peer_fps"),
             f(r, "peer_ms", "{:.2f}"), f(r, "peer_cpu_ms", "{:.2f}"), f(r, "ratio", "{:.2f}x"),
             f(r, "cpu_ratio", "{:.2f}x")] for r in rows]
    print_table("End to end, frames in memory: star-track Tracker() vs MediaPipe (MP) Face Mesh, legacy solution",
                cols, body, console)
    scols = ["setting", *TRACKER_STAGES, "track"]
    staged = [r for r in rows if "stages_ms" in r]
    sbody = [[r["setting"], *(f"{r['stages_ms'][s]:.2f}" for s in (*TRACKER_STAGES, "track"))] for r in staged]
    sbody.append(["per extra face (1 -> 4, 1280x720)",
                  *(f"{extra[f'stage_{s}_ms']:.2f}" for s in (*TRACKER_STAGES, "track"))])
    print_table("Tracker() stages, mean ms per frame of the best pass (Tracker.on_stage)", scols, sbody, console)
    peer_extra = f", MediaPipe {extra['peer_ms']:.2f} ms" if "peer_ms" in extra else ""
    console.print(f"per extra face: ours {extra['ours_ms']:.2f} ms{peer_extra}")
    return {"fps": markdown_table(cols, body), "stages": markdown_table(scols, sbody)}


def headline(e2e: dict, engine_rows: list[dict], cpu: str, threads: int) -> str:
    """The figures of one run in a few lines: engine vs face-mesh model, end to end 1 and 4 faces, extra face."""
    lines = [f"CPU: {cpu}"]
    peer_ms = next((r["ms_per_face"] for r in engine_rows if r["batch"] == 1 and "MediaPipe" in r["model"]), None)
    for r in engine_rows:
        if r["batch"] == 1 and "MediaPipe" not in r["model"]:
            lines.append(f"engine {r['model']} {r['ms_per_face']:.2f} ms/face vs MediaPipe face-mesh model "
                         f"{peer_ms:.2f} ms ({r['x_peer']:.2f}x), {threads} thread(s), batch 1")
    for r in e2e["summary"]:
        peer = (f" vs MediaPipe {r['peer_fps']:.1f} fps ({r['peer_ms']:.2f} ms) = {r['ratio']:.2f}x"
                if "ratio" in r else " (no peer)")
        if "cpu_ratio" in r:
            peer += (f"; CPU ms/frame ours {r['ours_cpu_ms']:.2f} vs {r['peer_cpu_ms']:.2f} = "
                     f"{r['cpu_ratio']:.2f}x")
        lines.append(f"end to end, {r['setting']}: ours {r['ours_fps']:.1f} fps ({r['ours_ms']:.2f} ms){peer}")
    x = e2e["per_extra_face"]
    lines.append(f"per extra face: ours {x['ours_ms']:.2f} ms" + (f", MediaPipe {x['peer_ms']:.2f} ms"
                                                                  if "peer_ms" in x else ""))
    return "\n".join(lines)
