"""Batch throughput: video-seconds tracked per wall-clock second with 1 and 2 local workers and on a local Ray
runtime, and the overhead per video (``python -m benchmarks.batch [--clips 8] [--frames 50] [--model PATH]``).

The clips are the first ``--frames`` frames of the real videos in ``$STAR_TRACK_DATA/videos`` (cycled to
``--clips`` files). Each configuration runs into a fresh output folder, so nothing is skipped; wall time
includes starting the workers and loading one model per worker, as a user's batch does.

* throughput = video-seconds of the clips / wall seconds of :func:`star_track.run_batch`;
* scaling = throughput / the 1-worker throughput;
* overhead per video = (wall x workers - the videos' own loop seconds) / videos: start-up, model loading,
  opening files, hashing outputs, scheduling.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import DEFAULT_DATA, environment, print_table, write_json
from star_track import run_batch


def cut_clips(folder: Path, videos: list[Path], clips: int, frames: int) -> list[Path]:
    """``clips`` short H.264 clips (the first ``frames`` frames of the real videos, in turn), cut with the SDK."""
    from itertools import islice

    from star_track import VideoSink, VideoSource

    out = []
    for k in range(clips):
        src = videos[k % len(videos)]
        dst = folder / f"{src.stem}_{k}.mp4"
        with VideoSource(src) as source, VideoSink(dst, source.fps, source.size) as sink:
            for frame in islice(source, frames):
                sink.write(frame.image, frame.time)
        out.append(dst)
    return out


def measure(name: str, inputs: Path, out: Path, workers: int, ray: str | None, model: str | None) -> dict:
    t0 = time.perf_counter()
    rows = run_batch([inputs], out, workers=workers, ray_address=ray, tracker_kwargs={"model": model})
    wall = time.perf_counter() - t0
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"{name}: {len(bad)} videos not ok: {bad[0]['error']}")
    video_s = sum(r["video_seconds"] for r in rows)
    loop_s = sum(r["seconds"] for r in rows)
    return {"run": name, "workers": workers, "videos": len(rows), "video_seconds": round(video_s, 2),
            "wall_seconds": round(wall, 2), "throughput": round(video_s / wall, 3),
            "overhead_per_video_s": round((wall * workers - loop_s) / len(rows), 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    ap.add_argument("--save", action="store_true", help="write benchmarks/results/batch.json")
    args = ap.parse_args(argv)
    videos = sorted((args.data / "videos").glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos in {args.data / 'videos'}")
    tmp = Path(tempfile.mkdtemp(prefix="star-track-batch-bench-"))
    try:
        clips = tmp / "clips"
        clips.mkdir()
        cut_clips(clips, videos, args.clips, args.frames)
        results = [measure("1 worker", clips, tmp / "w1", 1, None, args.model),
                   measure("2 workers", clips, tmp / "w2", 2, None, args.model)]
        if not args.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                print('ray not installed (pip install "star-track[cluster]"): Ray run skipped')
            else:
                results.append(measure("ray local, 2 CPUs", clips, tmp / "ray", 2, "local", args.model))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = results[0]["throughput"]
    for r in results:
        r["scaling"] = round(r["throughput"] / base, 2)
    cols = ["run", "videos", "video_seconds", "wall_seconds", "throughput", "scaling", "overhead_per_video_s"]
    print_table(f"batch throughput ({args.clips} clips x {args.frames} frames; video-s per wall-s)", cols,
                [[r[c] for c in cols] for r in results])
    if args.save:
        print(write_json("batch", {"clips": args.clips, "frames": args.frames, "results": results,
                                   "environment": environment()}))


if __name__ == "__main__":
    main()
