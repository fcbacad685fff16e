"""Speed: per-stage timing and end-to-end FPS of the real pipeline, with dlib and bare face detection for scale.

Test videos are composed from real held-out face photos (1, 3 or 8 faces pasted on a gradient background,
drifting a few pixels per frame, camera noise), written to mp4 and decoded back, at 640x480 and 1280x720.
Each frame goes through what ``star-track video --out`` does: decode (:class:`VideoSource`) ->
:meth:`Tracker.track` -> :func:`draw_faces` -> encode (:class:`VideoSink`).

Stages inside the tracker are timed by its public hook :attr:`Tracker.on_stage`: ``detect``, ``crop``,
``engine`` (batched per frame; decoding runs inside the ONNX graph), ``back-map`` (to frame pixels + confidence
score), ``smooth``; ``other`` is the rest of ``Tracker.track`` (association, crop geometry, bookkeeping). Per
frame; median and p90.

Engine vs peer: ms per face of each landmark model (the default ``star68-fast-int8``, its float ``star68-fast`` and
``star68-accurate``; or ``--model``) and of
MediaPipe's Face Mesh model (LiteRT, the speed peer, :mod:`benchmarks.peer`) on the same real face crops in the
same process, at batch 1 and per face at batch 4; with ``--loaded`` again while two busy processes run beside it.

End to end vs MediaPipe (:mod:`benchmarks.speed_e2e`, right after the engine comparison, in the same run and
the same results file ``speed_mediapipe.json``): ``Tracker()`` and MediaPipe's legacy Face Mesh solution (its own
venv, ``--setup-peer`` creates it) on the talking-head clips and on 1 and 4 faces in 1280x720, frames in memory.

    python -m benchmarks.speed [--model PATH] [--frames 90] [--torch-checkpoint runs/x/best.pt] [--loaded]
    python -m benchmarks.speed --vs-mediapipe   # only the two comparisons with MediaPipe
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from star_track import FaceDetector, Tracker, VideoSink, VideoSource, create_engine, draw_faces

from .peer import PEER_MODEL, PeerFaceMesh, setup_peer
from .speed_e2e import headline, run_e2e
from .common import (DEFAULT_DATA, RESULTS_DIR, DlibPipeline, cpu_name, load_faces, make_console,
                     markdown_table, model_info, model_label, print_table, write_json)

STAGES = ("decode", "detect", "crop", "engine", "back-map", "smooth", "other", "draw", "encode")
DEFAULT_MODELS = ("star68-fast-int8", "star68-fast", "star68-accurate")
"""Engines timed beside the peer unless ``--model`` names others."""
RESOLUTIONS = ((640, 480), (1280, 720))
FACE_COUNTS = (1, 4, 8)


# -- test videos -----------------------------------------------------------------------------------------
def face_patches(faces: list, data: Path, n: int) -> list[np.ndarray]:
    """Square photo crops (2x the landmark box) of the ``n`` largest held-out faces without a hard attribute
    (pose, occlusion...): speed runs need faces every pipeline finds."""
    plain = [f for f in faces if not f.attributes] or faces
    order = sorted(plain, key=lambda f: -float(np.ptp(f.landmarks[:, 0])))[:n]
    out = []
    for f in order:
        img = cv2.imread(str(data / "wflw" / f.image))
        if img is None:
            raise SystemExit(f"{data / 'wflw' / f.image}: not a readable image")
        lo, hi = f.landmarks.min(0), f.landmarks.max(0)
        c, side = (lo + hi) / 2, float(max(hi - lo)) * 2.0
        m = np.array([[1, 0, side / 2 - c[0]], [0, 1, side / 2 - c[1]]], np.float64)
        out.append(cv2.warpAffine(img, m, (int(side), int(side)), borderMode=cv2.BORDER_REPLICATE))
    return out


def compose_video(path: Path, patches: list[np.ndarray], size: tuple[int, int], n_faces: int, frames: int,
                  fps: float = 30.0, seed: int = 0) -> Path:
    """Write a test video: ``n_faces`` patches on a grid, drifting slowly, with pixel noise."""
    w, h = size
    cols = {1: 1, 3: 3}.get(n_faces, 4)
    rows = int(np.ceil(n_faces / cols))
    cell = min(w / cols, h / rows)
    side = int(cell * (0.6 if n_faces == 1 else 0.9))
    tiles = [cv2.resize(patches[i % len(patches)], (side, side), interpolation=cv2.INTER_AREA) for i in range(n_faces)]
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([90 + 60 * xx / w, 100 + 40 * yy / h, 120 - 30 * xx / w], -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    with VideoSink(path, fps, size, overwrite=True) as sink:
        for t in range(frames):
            img = bg.copy()
            for i, tile in enumerate(tiles):
                r, c = divmod(i, cols)
                cx = (c + 0.5) * w / cols + 6 * np.sin(0.15 * t + i)
                cy = (r + 0.5) * h / rows + 4 * np.cos(0.11 * t + i)
                x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
                x0, y0 = min(max(x0, 0), w - side), min(max(y0, 0), h - side)
                img[y0:y0 + side, x0:x0 + side] = tile
            img += rng.normal(0, 2.0, img.shape).astype(np.float32)
            sink.write(np.clip(img, 0, 255).astype(np.uint8))
    return path


# -- timing hooks ---------------------------------------------------------------------------------------
class StageClock:
    """Accumulates seconds per stage for the current frame."""

    def __init__(self) -> None:
        self.now: dict[str, float] = defaultdict(float)

    def add(self, stage: str, seconds: float) -> None:
        self.now[stage] += seconds

    def take(self) -> dict[str, float]:
        out, self.now = dict(self.now), defaultdict(float)
        return out

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - t0)
        return timed


@contextlib.contextmanager
def instrument(tracker: Tracker, clock: StageClock) -> Iterator[None]:
    """Time the tracker's stages through its public timing hook (:attr:`Tracker.on_stage`)."""
    tracker.on_stage = clock.add
    try:
        yield
    finally:
        tracker.on_stage = None


# -- runs -------------------------------------------------------------------------------------------------
def stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values) * 1e3
    return {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "mean_ms": float(v.mean())}


def run_pipeline(video: Path, engine, detect_every: int, max_faces: int, warmup: int = 5) -> dict:
    """decode -> track -> draw -> encode over ``video``; per-stage stats and FPS (after ``warmup`` frames)."""
    clock = StageClock()
    per_frame: list[dict[str, float]] = []
    faces_seen = []
    with tempfile.TemporaryDirectory() as tmp, VideoSource(video) as src, \
            Tracker(engine=engine, smoothing="kalman", max_faces=max_faces, detect_every=detect_every,
                    fps=src.fps) as tracker, \
            VideoSink(Path(tmp) / "out.mp4", src.fps, src.size) as sink, instrument(tracker, clock):
        it = iter(src)
        while True:
            t0 = time.perf_counter()
            vf = next(it, None)
            t1 = time.perf_counter()
            if vf is None:
                break
            faces = tracker.track(vf.image, vf.time)
            t2 = time.perf_counter()
            img = draw_faces(vf.image, faces, tracker.scheme)
            t3 = time.perf_counter()
            sink.write(img)
            t4 = time.perf_counter()
            inner = clock.take()
            row = {"decode": t1 - t0, "draw": t3 - t2, "encode": t4 - t3, **inner,
                   "other": (t2 - t1) - sum(inner.values()), "track": t2 - t1, "total": t4 - t0}
            per_frame.append(row)
            faces_seen.append(len(faces))
    rows = per_frame[warmup:]
    out = {s: stats([r.get(s, 0.0) for r in rows]) for s in (*STAGES, "track", "total")}
    total = sum(r["total"] for r in rows)
    track = sum(r["track"] for r in rows)
    return {"stages": out, "fps_end_to_end": len(rows) / total, "fps_tracker": len(rows) / track,
            "frames": len(rows), "faces_tracked_mean": float(np.mean(faces_seen[warmup:]))}


def run_detector_only(video: Path, model: str = "full", warmup: int = 5) -> dict:
    """Mediapipe BlazeFace alone on every frame (decode excluded): the floor of any detect-every-frame pipeline."""
    times, found = [], []
    with VideoSource(video) as src, FaceDetector(model, mode="video") as det:
        for vf in src:
            t0 = time.perf_counter()
            d = det.detect(vf.image, int(vf.time * 1000))
            times.append(time.perf_counter() - t0)
            found.append(len(d))
    t = times[warmup:]
    return {**stats(t), "fps": len(t) / sum(t), "faces_mean": float(np.mean(found[warmup:]))}


def run_dlib(video: Path, dlib: DlibPipeline, frames: int, warmup: int = 2) -> dict:
    """dlib HOG detection + 68-point predictor on every frame (decode excluded)."""
    times, found = [], []
    with VideoSource(video) as src:
        for i, vf in enumerate(src):
            if i >= frames + warmup:
                break
            t0 = time.perf_counter()
            boxes, _ = dlib.run(vf.image)
            times.append(time.perf_counter() - t0)
            found.append(len(boxes))
    t = times[warmup:]
    return {**stats(t), "fps": len(t) / sum(t), "faces_mean": float(np.mean(found[warmup:]))}


# -- engine vs the MediaPipe peer ------------------------------------------------------------------------
def engine_vs_peer(models: list[str | None], patches: list[np.ndarray], threads: int, repeats: int) -> list[dict]:
    """Median ms per face of each model (ONNX Runtime, ``threads``) and of the peer (LiteRT, same threads) on
    the same face patches, interleaved so both see the same machine state."""
    peer = PeerFaceMesh(PEER_MODEL, threads=threads)
    engines = [(model_label(m), create_engine(m, "onnxruntime", threads=threads)) for m in models]
    rows = []
    for batch in (1, 4):
        times: dict[str, list[float]] = defaultdict(list)
        for r in range(repeats + 5):
            picks = [patches[(r + i) % len(patches)] for i in range(batch)]
            t0 = time.perf_counter()
            for p in picks:  # the peer model has a fixed batch of 1
                peer.run(p)
            if r >= 5:
                times["MediaPipe Face Mesh (LiteRT)"].append((time.perf_counter() - t0) / batch)
            for label, eng in engines:
                s = eng.meta.input_size
                crops = np.stack([cv2.resize(p, (s, s), interpolation=cv2.INTER_AREA) for p in picks])
                t0 = time.perf_counter()
                eng.infer(crops)
                if r >= 5:
                    times[label].append((time.perf_counter() - t0) / batch)
        peer_ms = 1e3 * float(np.median(times["MediaPipe Face Mesh (LiteRT)"]))
        for label, t in times.items():
            ms = 1e3 * float(np.median(t))
            rows.append({"batch": batch, "model": label, "ms_per_face": ms, "x_peer": ms / peer_ms,
                         "threads": threads})
    return rows


@contextlib.contextmanager
def busy_processes(n: int = 2) -> Iterator[None]:
    """``n`` processes spinning on the CPU beside the benchmark (a loaded machine)."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def peer_table(console, rows: list[dict], title: str) -> str:
    cols = ["batch", "model", "ms / face", "x MediaPipe peer"]
    table = [[r["batch"], r["model"], f"{r['ms_per_face']:.2f}", f"{r['x_peer']:.2f}"] for r in rows]
    print_table(title, cols, table, console)
    return markdown_table(cols, table)


def arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=None,
                   help="ONNX model path or name; repeat for several (default: star68-fast-int8, star68-fast and "
                   "star68-accurate)")
    p.add_argument("--torch-checkpoint", default=None, help="also time the torch engine on this .pt checkpoint")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--frames", type=int, default=90, help="frames per test video (5 warm-up frames dropped)")
    p.add_argument("--dlib-frames", type=int, default=20, help="frames timed for dlib per video")
    p.add_argument("--quick", action="store_true", help="640x480 with 1 and 4 faces, no dlib")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: the runtime's)")
    p.add_argument("--peer-repeats", type=int, default=200, help="timed calls per model in the peer comparison")
    p.add_argument("--loaded", action="store_true", help="repeat the peer comparison beside 2 busy processes")
    p.add_argument("--peer-only", action="store_true", help="only the engine vs peer comparison")
    p.add_argument("--vs-mediapipe", action="store_true",
                   help="only the engine vs peer comparison and end to end vs MediaPipe (no composed videos, dlib)")
    p.add_argument("--clips", nargs="*", default=None, help="talking-head clips for the end-to-end section "
                   "(default: every DATA/videos/*.mp4)")
    p.add_argument("--e2e-frames", type=int, default=None, help="frames per clip end to end (default: all)")
    p.add_argument("--passes", type=int, default=3, help="timed passes end to end; the best counts")
    p.add_argument("--setup-peer", action="store_true", help="create the MediaPipe peer venv (.peer-mp) and exit")
    return p


def main(argv: list[str] | None = None) -> None:
    a = arguments().parse_args(argv)
    if a.setup_peer:
        print(f"peer environment ready: {setup_peer()}")
        return
    console = make_console()
    t_start = time.perf_counter()
    from star_track.engines.onnxruntime_engine import default_threads

    threads = default_threads() if a.threads is None else a.threads
    patches = face_patches(load_faces(), a.data, max(FACE_COUNTS))
    models = a.model or list(DEFAULT_MODELS)
    peer = {"idle": engine_vs_peer(models, patches, threads, a.peer_repeats)}
    peer_md = {"idle": peer_table(console, peer["idle"], f"Engine vs MediaPipe peer, idle, {cpu_name()}, "
                                                         f"{threads} thread(s)")}
    if a.loaded:
        with busy_processes(2):
            peer["loaded"] = engine_vs_peer(models, patches, threads, a.peer_repeats)
        peer_md["loaded"] = peer_table(console, peer["loaded"], "Same, beside 2 busy processes")
    write_json("speed_peer", {"command": "python -m benchmarks.speed --peer-only"
                              + "".join(f" --model {m}" for m in a.model or []) + (" --loaded" if a.loaded else ""),
                              "threads": threads, "runs": peer,
                              "markdown": peer_md}, a.out)
    if a.peer_only:
        return
    vs_mediapipe(a, sys.argv[1:] if argv is None else argv, peer["idle"], peer_md["idle"], threads, console)
    if not a.vs_mediapipe:
        pipelines(a, models, patches, console, t_start)


def vs_mediapipe(a: argparse.Namespace, argv: list[str], engine_rows: list[dict], engine_md: str, threads: int,
                 console) -> None:
    """End to end vs MediaPipe; written with the engine comparison of the same run and the CPU's name."""
    clips = [Path(c) for c in a.clips] if a.clips else sorted((a.data / "videos").glob("*.mp4"))
    e2e = run_e2e(clips, a.e2e_frames, a.passes, console)
    head = headline(e2e, engine_rows, cpu_name(), threads)
    console.print(head)
    write_json("speed_mediapipe", {"command": " ".join(["python -m benchmarks.speed", *argv]),
                                   "processor": cpu_name(), "threads": threads, "engine_vs_peer": engine_rows,
                                   "end_to_end": e2e, "headline": head,
                                   "markdown": {"engine": engine_md, **e2e["markdown"]}}, a.out)


def pipelines(a: argparse.Namespace, models: list[str], patches: list[np.ndarray], console, t_start: float) -> None:
    """Composed test videos through decode -> track -> draw -> encode, BlazeFace alone, dlib."""
    engines = [(model_label(m), create_engine(m, "onnxruntime", threads=a.threads)) for m in models]
    if a.torch_checkpoint:
        engines.append((a.torch_checkpoint, create_engine(a.torch_checkpoint, "torch")))
    dlib = {} if a.quick else {up: DlibPipeline(upsample=up) for up in (0, 1)}
    resolutions = RESOLUTIONS[:1] if a.quick else RESOLUTIONS
    counts = (1, 4) if a.quick else FACE_COUNTS
    runs, floor, base = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in resolutions:
            for n in counts:
                video = compose_video(Path(tmp) / f"v{size[0]}_{n}.mp4", patches, size, n, a.frames)
                for label, engine in engines:
                    for every in (10, 1):
                        r = run_pipeline(video, engine, every, max_faces=max(FACE_COUNTS))
                        runs.append({"size": f"{size[0]}x{size[1]}", "faces": n, "model": label,
                                     "engine": engine.name, "detect_every": every, **r})
                        console.print(f"{size[0]}x{size[1]} {n} faces {label} detect_every={every}: "
                                      f"{r['fps_end_to_end']:.1f} fps end to end, {r['fps_tracker']:.1f} tracker "
                                      f"({r['faces_tracked_mean']:.1f} faces tracked)")
                for det in ("full", "short"):
                    floor.append({"size": f"{size[0]}x{size[1]}", "faces": n, "detector": det,
                                  **run_detector_only(video, det)})
                for up, d in dlib.items():
                    base.append({"size": f"{size[0]}x{size[1]}", "faces": n, "upsample": up,
                                 **run_dlib(video, d, a.dlib_frames)})
    report(console, runs, floor, base, a, time.perf_counter() - t_start)


def short_engine(name: str) -> str:
    """``onnxruntime[CPUExecutionProvider]`` -> ``ort-CPU`` (keeps tables narrow)."""
    return name.replace("onnxruntime", "ort").replace("[", "-").replace("ExecutionProvider]", "")


def report(console, runs: list[dict], floor: list[dict], base: list[dict], a, seconds: float) -> None:
    cols = ["video", "faces", "model", "engine", "detect every", "tracked", "FPS end-to-end", "FPS tracker",
            "frame ms med / p90"]
    fps_rows = [[r["size"], r["faces"], r["model"], short_engine(r["engine"]), r["detect_every"],
                 f"{r['faces_tracked_mean']:.1f}", f"{r['fps_end_to_end']:.1f}", f"{r['fps_tracker']:.1f}",
                 f"{r['stages']['total']['median_ms']:.1f} / {r['stages']['total']['p90_ms']:.1f}"] for r in runs]
    print_table(f"End-to-end speed (decode -> track -> draw -> encode), {cpu_name()}", cols, fps_rows, console)
    scols = ["video", "faces", "model", "every", *STAGES]
    stage_rows = [[r["size"], r["faces"], r["model"], r["detect_every"],
                   *(f"{r['stages'][s]['median_ms']:.2f}/{r['stages'][s]['p90_ms']:.2f}" for s in STAGES)]
                  for r in runs]
    print_table("Per-stage time per frame, ms (median / p90)", scols, stage_rows, console)
    bcols = ["video", "faces", "pipeline", "found", "FPS", "ms med / p90"]
    base_rows = [[f["size"], f["faces"], f"BlazeFace {f['detector']} alone", f"{f['faces_mean']:.1f}",
                  f"{f['fps']:.1f}", f"{f['median_ms']:.1f} / {f['p90_ms']:.1f}"] for f in floor]
    base_rows += [[b["size"], b["faces"], f"dlib HOG (upsample {b['upsample']}) + 68-pt", f"{b['faces_mean']:.1f}",
                   f"{b['fps']:.1f}", f"{b['median_ms']:.1f} / {b['p90_ms']:.1f}"] for b in base]
    print_table("Reference pipelines (per frame, decode excluded)", bcols, base_rows, console)
    ratios = []
    for r in runs:
        for b in base:
            if b["size"] == r["size"] and b["faces"] == r["faces"]:
                ratios.append({"size": r["size"], "faces": r["faces"], "model": r["model"], "engine": r["engine"],
                               "detect_every": r["detect_every"], "dlib_upsample": b["upsample"],
                               "ours_fps_tracker": r["fps_tracker"], "dlib_fps": b["fps"],
                               "ratio": r["fps_tracker"] / b["fps"]})
    rcols = ["video", "faces", "model", "detect every", "dlib upsample", "ours tracker FPS", "dlib FPS",
             "ours / dlib"]
    ratio_rows = [[x["size"], x["faces"], x["model"], x["detect_every"],
                   x["dlib_upsample"], f"{x['ours_fps_tracker']:.1f}", f"{x['dlib_fps']:.1f}", f"{x['ratio']:.2f}x"]
                  for x in ratios]
    print_table("Ours (Tracker.track, like dlib without decode/draw/encode) vs dlib", rcols, ratio_rows, console)
    path = write_json("speed", {
        "command": "python -m benchmarks.speed" + "".join(f" --model {m}" for m in a.model or [])
                   + (" --quick" if a.quick else ""),
        "models": {m: model_info(m) for m in a.model or DEFAULT_MODELS}, "frames": a.frames,
        "seconds": seconds, "processor": cpu_name(),
        "runs": runs,
        "detector_only": floor, "dlib": base, "ratios": ratios,
        "markdown": {"fps": markdown_table(cols, fps_rows), "stages": markdown_table(scols, stage_rows),
                     "reference": markdown_table(bcols, base_rows), "ratio": markdown_table(rcols, ratio_rows)}},
        a.out)
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
