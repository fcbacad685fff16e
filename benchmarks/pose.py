"""Head pose and face state (issue 28): accuracy on known poses, roll on turned real photos, time per face.

    nice -n 10 python -m benchmarks.pose [--data ../shared/data] [--photos 20] [--rounds 15]

Rows:
* synthetic: the 3D mean face projected at random known poses (yaw +-60, pitch +-30, roll +-45, face ~180 px
  wide in 640x480) with 1 px Gaussian landmark noise: MAE per angle of the batched solver (all 500 faces in one
  :func:`solve_pose_arrays` call; tests the solver, not the mean face);
* roll: real 300W (AFW) photos turned in-plane by +-30 / +-60 degrees with cv2.warpAffine; star68-fast photo mode
  finds the face and its landmarks, :func:`analyze_photo` its pose; the error is |change of roll - turn|
  (median, 90th percentile);
* speed, microseconds per face on one core, for 1 and 4 faces per frame:
  - ``cold``: :func:`solve_pose_arrays` from nothing (weak-perspective start, ~3 Gauss-Newton steps) plus
    :func:`openness_arrays`;
  - ``warm``: the same started from the previous frame's poses (video: mostly one step);
  - ``analyzer``: :meth:`FrameAnalyzer.update`, what the tracker calls per frame: warm pose, smoothing,
    openness, blink detection and the per-face states;
  - ``reference_*``: the single-face :func:`solve_pose` + :func:`face_openness` (cold: SQPnP + 3 steps; warm:
    1 step), per face.
  Every variant is timed in each of ``--rounds`` rounds of 300 calls, interleaved, and the best round is kept;
  the time is the process's CPU time (``time.process_time``), which other processes on a shared machine
  inflate less than wall time. The budget of the issue is 200 us per face.
* tracker path, what a user pays per frame: ``Tracker(analysis=False)`` runs the real clip RD_Radio2_000 (first
  ``--tracker-frames`` frames, 1 face) and the 1280x720 2x2 grid of the 4 clips (4 faces, as benchmarks.speed_e2e
  composes it), and after each ``track`` call :meth:`FaceStates.video` (what ``Tracker(analysis=True)`` runs at
  the end of ``track``) is timed on its faces with the thread's CPU time: caches as cold as the landmark engine
  leaves them, real head motion (a second Gauss-Newton step on about 60 % of frames, where the synthetic rows
  above take one). ``warm``: a second FaceStates on the same faces right after (the cold-cache share is the
  difference). Median and best of ``--tracker-passes`` passes after one warm-up pass.

Real photos with pose labels: none here. AFLW2000-3D / 300W-LP / BIWI are research-only downloads and not in the
shared data, so the real-face MAE of the acceptance (<= 8 degrees) cannot be measured here.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from star_track.analysis.analyzer import FrameAnalyzer, analyze_photo
from star_track.analysis.mean_face import mean_face
from star_track.analysis.openness import face_openness, openness_arrays
from star_track.analysis.pose import Camera, project, rotation_from_euler, solve_pose
from star_track.analysis.pose_batch import solve_core, solve_pose_arrays

from .common import DEFAULT_DATA, write_json


def synthetic(n: int = 500, noise: float = 1.0, seed: int = 0) -> dict:
    """MAE per angle on the mean face at random known poses with Gaussian landmark noise."""
    face = mean_face(68)
    cam = Camera.default(640, 480)
    rng = np.random.default_rng(seed)
    truth = rng.uniform([-60, -30, -45], [60, 30, 45], (n, 3))
    uv = np.stack([project(face.points, rotation_from_euler(*a), np.array([0.0, 0.0, 60.0]), cam) for a in truth])
    uv += rng.normal(0, noise, uv.shape)
    got = solve_pose_arrays(uv, np.tile(np.eye(2) * noise ** 2, (n, 68, 1, 1)), camera=cam)
    mae = np.abs(got.angles - truth).mean(0)
    return {"faces": n, "noise_px": noise, "mae_yaw": mae[0], "mae_pitch": mae[1], "mae_roll": mae[2],
            "mae": float(mae.mean())}


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    size = (int(round(h * s + w * c)), int(round(h * c + w * s)))
    m[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
    return cv2.warpAffine(image, m, size)


def roll(data: Path, photos: int) -> dict:
    """Roll change on real photos turned in-plane by known angles."""
    from star_track import Tracker

    images = sorted((data / "300w" / "afw").glob("*.jpg"))[:photos]
    out: dict[str, list[float]] = {}
    with Tracker(model="star68-fast") as tracker:
        def roll_of(img):
            faces = tracker.detect_image(img)
            if not faces:
                return None
            f = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            pose = analyze_photo(f.landmarks[None], f.covariance[None], (img.shape[1], img.shape[0]))[0].pose
            return None if pose is None else pose.roll

        for path in images:
            img = cv2.imread(str(path))
            r0 = roll_of(img)
            for angle in (30, -30, 60, -60):
                r1 = roll_of(_rotate(img, angle))
                if r0 is not None and r1 is not None:
                    # OpenCV's positive angle turns the picture counter-clockwise: roll goes down by it.
                    err = ((r1 - r0 + 180) % 360 - 180) + angle
                    out.setdefault(str(abs(angle)), []).append(abs(err))
    return {f"turn_{k}": {"pairs": len(v), "median_err": float(np.median(v)), "p90_err": float(np.percentile(v, 90))}
            for k, v in out.items()}


def _frame_faces(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    face = mean_face(68)
    cam = Camera.default(640, 480)
    uv = np.stack([project(face.points, rotation_from_euler(20 - 12 * i, -10 + 4 * i, 5), np.array([6.0 * i - 9, -1.0,
                                                                                                    70.0]), cam)
                   for i in range(count)])
    uv += rng.normal(0, 1.0, uv.shape)
    return uv, np.tile(np.array([[2.0, 0.5], [0.5, 1.5]]), (count, 68, 1, 1))


def _variants(count: int) -> dict[str, Callable[[], object]]:
    """The timed calls for ``count`` faces per frame."""
    cam = Camera.default(640, 480)
    face = mean_face(68)
    uv, cov = _frame_faces(count, np.random.default_rng(1))
    prev = solve_pose_arrays(uv, cov, camera=cam)
    start = (prev.rotation, prev.translation)

    def pose_and_openness(init):
        c = solve_core(uv, cov, cam, init, face)
        return openness_arrays(c.normalised, c.rotation, c.translation, face)

    analyzer, ids, clock = FrameAnalyzer(), list(range(count)), [0.0]

    def analyzer_frame():
        clock[0] += 0.04
        return analyzer.update(ids, uv, cov, (640, 480), clock[0])

    out: dict[str, Callable[[], object]] = {"cold": lambda: pose_and_openness(None),
                                            "warm": lambda: pose_and_openness(start), "analyzer": analyzer_frame}
    if count == 1:
        ref = solve_pose(uv[0], cov[0], camera=cam)
        out["reference_cold"] = lambda: face_openness(uv[0], solve_pose(uv[0], cov[0], camera=cam))
        out["reference_warm"] = lambda: face_openness(uv[0], solve_pose(uv[0], cov[0], camera=cam, init=ref,
                                                                        iterations=1))
    return out


def speed(rounds: int = 15, calls: int = 300) -> dict:
    """Microseconds of CPU time per face, best round of each variant, variants interleaved."""
    out = {}
    for count in (1, 4):
        fns = _variants(count)
        best = dict.fromkeys(fns, np.inf)
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.process_time()
                for _ in range(calls):
                    fn()
                best[name] = min(best[name], (time.process_time() - t0) / calls / count * 1e6)
        out[f"faces_{count}"] = {f"{k}_us_per_face": v for k, v in best.items()}
    return out


def tracker_path(data: Path, frames: int = 150, passes: int = 5) -> dict:
    """Microseconds of thread CPU time per frame of :meth:`FaceStates.video` right after ``Tracker.track``."""
    from star_track import Tracker
    from star_track.tracking.states import FaceStates

    from .speed_e2e import compose_grid, load_clip

    clips = {p.name: load_clip(p, frames)[0] for p in sorted((data / "videos").glob("*.mp4"))[:4]}  # decoded once
    one = "RD_Radio2_000.mp4"
    videos = {"faces_1": clips[one] if one in clips else load_clip(data / "videos" / one, frames)[0],
              "faces_4": compose_grid(list(clips.values()), (1280, 720), 4)}
    out = {}
    with Tracker(model="star68-fast", analysis=False) as tracker:
        for name, video in videos.items():
            cold, warm, faces_seen = [], [], 0
            for p in range(passes + 1):
                tracker.reset()
                states, twin, c, w, faces_seen = FaceStates(), FaceStates(), 0, 0, 0
                for i, frame in enumerate(video):
                    faces = tracker.track(frame)
                    t0 = time.thread_time_ns()
                    states.video(faces, frame.shape, i / 25.0)
                    t1 = time.thread_time_ns()
                    twin.video(faces, frame.shape, i / 25.0)
                    c, w, faces_seen = c + t1 - t0, w + time.thread_time_ns() - t1, faces_seen + len(faces)
                if p:  # pass 0 warms up
                    cold.append(c / len(video) / 1e3)
                    warm.append(w / len(video) / 1e3)
            per_frame = float(np.median(cold))
            out[name] = {"frames": len(video), "faces_per_frame": faces_seen / len(video),
                         "us_per_frame": per_frame, "us_per_face": per_frame * len(video) / max(faces_seen, 1),
                         "best_us_per_frame": min(cold), "warm_us_per_frame": float(np.median(warm)),
                         "passes": cold}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--skip-roll", action="store_true", help="leave out the real-photo roll rows (no model run)")
    ap.add_argument("--tracker-frames", type=int, default=150, help="frames per clip of the tracker-path rows")
    ap.add_argument("--tracker-passes", type=int, default=5, help="timed passes of the tracker-path rows (0: skip)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    result = {"synthetic": synthetic(), "speed": speed(args.rounds),
              "real_pose_mae": "not measurable here: no real photos with public pose labels in the shared data"}
    if (args.data / "300w" / "afw").is_dir() and not args.skip_roll:
        result["roll"] = roll(args.data, args.photos)
    if (args.data / "videos").is_dir() and args.tracker_passes > 0:
        result["tracker_path"] = tracker_path(args.data, args.tracker_frames, args.tracker_passes)
    s = result["synthetic"]
    print(f"synthetic (1 px noise, {s['faces']} faces): MAE yaw {s['mae_yaw']:.2f}, pitch {s['mae_pitch']:.2f}, "
          f"roll {s['mae_roll']:.2f} deg")
    for k, v in result.get("roll", {}).items():
        print(f"roll, photos {k.replace('turn_', 'turned ')} deg: median error {v['median_err']:.2f} deg, "
              f"p90 {v['p90_err']:.2f} ({v['pairs']} pairs)")
    for k, v in result["speed"].items():
        row = ", ".join(f"{name.replace('_us_per_face', '')} {us:.0f}" for name, us in v.items())
        print(f"us per face, {k.replace('faces_', '')} face(s) per frame: {row}")
    for v in result.get("tracker_path", {}).values():
        print(f"tracker path, {v['faces_per_frame']:.2f} face(s) per frame: {v['us_per_frame']:.0f} us per frame "
              f"({v['us_per_face']:.0f} per face; best pass {v['best_us_per_frame']:.0f}, warm caches "
              f"{v['warm_us_per_frame']:.0f}), median of {len(v['passes'])} passes over {v['frames']} frames")
    print(result["real_pose_mae"])
    write_json("pose", result)


if __name__ == "__main__":
    main()
