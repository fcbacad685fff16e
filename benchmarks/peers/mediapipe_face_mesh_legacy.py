"""MediaPipe's legacy Face Mesh solution timed on frames held in memory: the end-to-end speed peer.

Runs under the peer's own environment (``.peer-mp``: mediapipe 0.10.21 needs numpy < 2, see
``shared/docs/PEERS.md``), never under star-track's: stdlib, numpy, OpenCV and mediapipe only, no star_track.
``python -m benchmarks.speed --setup-peer`` creates that environment.

Input: a video (decoded with OpenCV) or a ``.npy`` of BGR frames (N, H, W, 3) uint8 handed over by the parent
benchmark. Every frame is decoded and converted to RGB before timing; each pass starts a fresh
``FaceMesh(static_image_mode=False, max_num_faces=N, refine_landmarks=False)`` (its detector, tracking and
smoothing graph) and times only ``process()`` per frame. Prints one JSON line on stdout (``--serve``: one per
pass asked for on stdin); with ``--landmarks-out`` also saves the last pass's faces on the 300W-68 points (one
mesh vertex per point, PEERS.md's map: good for jitter, too coarse for NME) as (frames, max_faces, 68, 2) pixels,
NaN where no face.

    .peer-mp/bin/python benchmarks/peers/mediapipe_face_mesh_legacy.py CLIP.mp4 [--max-faces 1] [--passes 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

MESH_TO_68 = (162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
              70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
              168, 197, 5, 4, 75, 97, 2, 326, 305,
              33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
              61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87)
"""One Face Mesh vertex per 300W landmark (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67)."""


def fail(message: str) -> None:
    """One clear error line, exit 1 (the parent shows it)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def load_frames(path: Path, limit: int | None):
    """All frames (N, H, W, 3) uint8 RGB, from a ``.npy`` of BGR frames or a video."""
    import cv2
    import numpy as np

    if not path.is_file():
        fail(f"{path} not found")
    if path.suffix == ".npy":
        bgr = np.load(path)
        if bgr.ndim != 4 or bgr.shape[-1] != 3 or bgr.dtype != np.uint8:
            fail(f"{path}: expected (N, H, W, 3) uint8 frames, got {bgr.shape} {bgr.dtype}")
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr[:limit]]
    else:
        cap = cv2.VideoCapture(str(path))
        frames = []
        while limit is None or len(frames) < limit:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        cap.release()
    if not frames:
        fail(f"{path}: no frames")
    return frames


def run_pass(face_mesh_cls, frames, max_faces: int):
    """One pass with a fresh graph: (wall and process CPU seconds inside ``process()``, faces per frame, the 68
    points per frame). CPU time counts every thread of the graph: on a busy machine it moves less than wall time."""
    import numpy as np

    h, w = frames[0].shape[:2]
    idx = list(MESH_TO_68)
    total, cpu, counts = 0.0, 0.0, []
    points = np.full((len(frames), max_faces, 68, 2), np.nan, np.float32)
    with face_mesh_cls(static_image_mode=False, max_num_faces=max_faces, refine_landmarks=False) as mesh:
        for i, rgb in enumerate(frames):
            t0, c0 = time.perf_counter(), time.process_time()
            res = mesh.process(rgb)
            total += time.perf_counter() - t0
            cpu += time.process_time() - c0
            faces = res.multi_face_landmarks or []
            counts.append(len(faces))
            for k, face in enumerate(faces[:max_faces]):  # outside the timed call: not part of the peer's cost
                lm = face.landmark
                points[i, k] = [(lm[j].x * w, lm[j].y * h) for j in idx]
    return total, cpu, counts, points


def summary(args: argparse.Namespace, version: str, frames: list, seconds: list[float], cpu: list[float],
            counts: list[int]) -> dict:
    """The JSON record the parent parses (:func:`benchmarks.peer.parse_peer_json`): best of ``seconds``."""
    h, w = frames[0].shape[:2]
    best = min(seconds)
    return {"peer": "mediapipe-face-mesh-legacy", "mediapipe": version, "source": str(args.source),
            "frames": len(frames), "width": w, "height": h, "max_faces": args.max_faces, "passes": len(seconds),
            "pass_seconds": seconds, "pass_cpu_seconds": cpu, "fps": len(frames) / best,
            "ms_per_frame": 1e3 * best / len(frames),
            "faces_per_frame": counts, "faces_mean": sum(counts) / len(counts),
            "landmarks_out": None if args.landmarks_out is None else str(args.landmarks_out)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="video file, or .npy of BGR frames (N, H, W, 3) uint8")
    p.add_argument("--max-faces", type=int, default=1)
    p.add_argument("--passes", type=int, default=3, help="timed passes; the best is reported")
    p.add_argument("--frames", type=int, default=None, help="use at most this many frames")
    p.add_argument("--landmarks-out", type=Path, default=None, help=".npy for the 68 points of the last pass")
    p.add_argument("--serve", action="store_true",
                   help="print {\"ready\": true}, then run one pass per line read from stdin and print its record "
                        "(the parent interleaves these passes with its own, so both see the same machine state)")
    a = p.parse_args(argv)
    if a.max_faces < 1 or a.passes < 1:
        fail("--max-faces and --passes must be at least 1")
    frames = load_frames(a.source, a.frames)
    try:
        import mediapipe as mp
        face_mesh_cls = mp.solutions.face_mesh.FaceMesh
    except (ImportError, AttributeError) as e:
        fail(f"mediapipe's legacy Face Mesh is not available ({e}); it needs mediapipe==0.10.21")
    requests = iter(sys.stdin.readline, "") if a.serve else range(a.passes)
    if a.serve:
        print(json.dumps({"ready": True, "frames": len(frames)}), flush=True)
    seconds: list[float] = []
    cpu: list[float] = []
    for _ in requests:
        s, c, counts, points = run_pass(face_mesh_cls, frames, a.max_faces)
        if a.landmarks_out is not None:
            import numpy as np

            np.save(a.landmarks_out, points)
        seconds.append(s)
        cpu.append(c)
        if a.serve:
            print(json.dumps(summary(a, mp.__version__, frames, [s], [c], counts)), flush=True)
    if not a.serve:
        print(json.dumps(summary(a, mp.__version__, frames, seconds, cpu, counts)))


if __name__ == "__main__":
    main()
