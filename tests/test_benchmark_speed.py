"""The end-to-end speed benchmark's logic, without the MediaPipe peer venv: the peer record parser, best-of and
ratio arithmetic, the clip composition and the peer script's pass loop (with a stand-in FaceMesh)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peer import PEER_SCRIPT, LegacyFaceMeshPeer, best_of, parse_peer_json
from benchmarks.speed_e2e import compose_grid, grid_layout, headline, per_extra_face, pooled, tracker_pass


def record(seconds: list[float], frames: int = 4, faces: int = 1, cpu: list[float] | None = None) -> dict:
    r = {"frames": frames, "max_faces": faces, "pass_seconds": seconds, "fps": frames / min(seconds),
         "ms_per_frame": 1e3 * min(seconds) / frames, "faces_per_frame": [faces] * frames,
         "faces_mean": float(faces)}
    return r if cpu is None else {**r, "pass_cpu_seconds": cpu}


def test_parser_takes_the_last_record_and_skips_logs_and_ready():
    text = "\n".join(['{"ready": true, "frames": 4}', "W0000 some mediapipe log", json.dumps(record([0.5])),
                      "I0000 closing", json.dumps(record([0.25])), ""])
    assert parse_peer_json(text)["pass_seconds"] == [0.25]


@pytest.mark.parametrize("text, message", [
    ("", "no peer record"),
    ('{"ready": true}\nnot json {', "no peer record"),
    (json.dumps({"frames": 4, "fps": 10.0}), "lacks max_faces"),
    (json.dumps({**record([0.5]), "faces_per_frame": [1, 1]}), "inconsistent"),
    (json.dumps({**record([0.5]), "pass_seconds": []}), "inconsistent"),
])
def test_parser_rejects_what_is_not_a_whole_record(text, message):
    with pytest.raises(ValueError, match=message):
        parse_peer_json(text)


def test_best_of_keeps_every_pass_and_the_fastest():
    best = best_of([record([0.4], 8, cpu=[0.3]), record([0.2], 8, cpu=[0.24]), record([0.3], 8, cpu=[0.16])])
    assert best["pass_seconds"] == [0.4, 0.2, 0.3] and best["passes"] == 3
    assert best["fps"] == pytest.approx(40.0) and best["ms_per_frame"] == pytest.approx(25.0)
    assert best["cpu_ms_per_frame"] == pytest.approx(20.0)  # the least CPU time, whichever pass had it
    assert "cpu_ms_per_frame" not in best_of([record([0.4])])  # an older peer script: no CPU figure
    with pytest.raises(ValueError):
        best_of([])


def row(name: str, frames: int, ours: list[float], peer: list[float] | None, stages: float = 1.0) -> dict:
    """A result row whose CPU seconds are half the wall seconds for ours, the same for the peer."""
    r = {"setting": name, "frames": frames, "size": "512x512", "faces": 1, "ours_pass_seconds": ours,
         "ours_fps": frames / min(ours), "ours_ms": 1e3 * min(ours) / frames, "ours_faces_mean": 1.0,
         "ours_pass_cpu_seconds": [s / 2 for s in ours], "ours_cpu_ms": 1e3 * min(ours) / 2 / frames,
         "stages_ms": {"engine": stages, "track": 2 * stages}}
    if peer is not None:
        r.update(peer_pass_seconds=peer, peer_fps=frames / min(peer), peer_ms=1e3 * min(peer) / frames,
                 peer_faces_mean=1.0, peer_pass_cpu_seconds=peer, peer_cpu_ms=1e3 * min(peer) / frames)
    return r


def test_pooled_clips_are_all_frames_over_the_summed_best_passes():
    rows = [row("a", 100, [1.0, 0.5], [0.25, 0.3]), row("b", 300, [2.0, 1.5], [1.0, 0.75])]
    p = pooled(rows, "both")
    assert p["frames"] == 400
    assert p["ours_fps"] == pytest.approx(400 / 2.0) and p["peer_fps"] == pytest.approx(400 / 1.0)
    assert p["ratio"] == pytest.approx(0.5) and p["ours_ms"] == pytest.approx(5.0)
    assert p["ours_cpu_ms"] == pytest.approx(2.5) and p["peer_cpu_ms"] == pytest.approx(2.5)
    assert p["cpu_ratio"] == pytest.approx(1.0)
    no_peer = pooled([row("a", 100, [1.0], None), rows[1]], "both")
    assert "ratio" not in no_peer and "peer_fps" not in no_peer


def test_per_extra_face_is_a_third_of_the_one_to_four_difference():
    one, four = row("1", 10, [0.05], [0.04], stages=1.0), row("4", 10, [0.14], [0.07], stages=4.0)
    x = per_extra_face(one, four)
    assert x["ours_ms"] == pytest.approx(3.0) and x["peer_ms"] == pytest.approx(1.0)
    assert x["stage_engine_ms"] == pytest.approx(1.0) and x["stage_track_ms"] == pytest.approx(2.0)
    one.pop("peer_ms")
    assert "peer_ms" not in per_extra_face(one, four)


def test_headline_names_the_cpu_and_the_ratios():
    engine_rows = [{"batch": 1, "model": "MediaPipe Face Mesh (LiteRT)", "ms_per_face": 1.0, "x_peer": 1.0},
                   {"batch": 1, "model": "star68-fast.onnx", "ms_per_face": 2.5, "x_peer": 2.5},
                   {"batch": 4, "model": "star68-fast.onnx", "ms_per_face": 2.0, "x_peer": 2.2}]
    summary = [pooled([row("a", 100, [1.0], [0.5])], "clips"), row("4 faces", 10, [0.2], None)]
    text = headline({"summary": summary, "per_extra_face": {"ours_ms": 3.0}}, engine_rows, "Some CPU", 1)
    assert text.splitlines()[0] == "CPU: Some CPU"
    assert "star68-fast.onnx 2.50 ms/face vs MediaPipe face-mesh model 1.00 ms (2.50x)" in text
    assert "2.20x" not in text  # batch-4 rows are in the table, not the headline
    assert "ours 100.0 fps (10.00 ms) vs MediaPipe 200.0 fps (5.00 ms) = 0.50x" in text
    assert "4 faces: ours 50.0 fps (20.00 ms) (no peer)" in text


def test_grid_keeps_the_face_size_from_one_face_to_four():
    side1, (c1,) = grid_layout(1, (1280, 720))
    side4, corners = grid_layout(4, (1280, 720))
    assert side1 == side4 == 360
    assert c1 == (460, 180)
    assert corners == [(280, 0), (640, 0), (280, 360), (640, 360)]
    with pytest.raises(ValueError):
        grid_layout(5, (1280, 720))


def test_compose_grid_puts_clip_i_in_tile_i_on_the_background():
    clips = [np.full((n, 16, 16, 3), 50 * (k + 1), np.uint8) for k, n in enumerate((5, 3, 4))]
    out = compose_grid(clips, (64, 40), 4)
    assert out.shape == (3, 40, 64, 3) and out.dtype == np.uint8  # the shortest clip's length
    side, corners = grid_layout(4, (64, 40))
    for i, (x, y) in enumerate(corners):
        assert (out[:, y:y + side, x:x + side] == 50 * (i % 3 + 1)).all()  # the 4th tile reuses clip 0
    assert not np.isin(out[:, :, :corners[0][0]], (50, 100, 150)).all()  # left margin: the gradient
    assert (out[0] == out[2]).all()  # constant clips: every frame alike


class FakeTracker:
    """Reports 1 ms of engine on every frame and 5 ms of detection on every 4th, through ``on_stage``."""

    def __init__(self):
        self.on_stage = None
        self.resets = 0
        self.times: list[float] = []

    def reset(self):
        self.resets += 1

    def track(self, frame, t):
        self.times.append(t)
        self.on_stage("engine", 1e-3)
        if len(self.times) % 4 == 1:
            self.on_stage("detect", 5e-3)
        return [object()] * int(frame[0, 0, 0])


def test_tracker_pass_means_every_stage_over_all_frames():
    frames = np.zeros((8, 2, 2, 3), np.uint8)
    frames[::2, 0, 0, 0] = 2
    tr = FakeTracker()
    seconds, cpu, counts, stages = tracker_pass(tr, frames, fps=25.0)
    assert tr.resets == 1 and tr.on_stage is None and tr.times == pytest.approx([i / 25 for i in range(8)])
    assert counts == [2, 0] * 4 and cpu >= 0
    assert stages["engine"] == pytest.approx(1.0) and stages["detect"] == pytest.approx(2 * 5.0 / 8)
    assert stages["crop"] == 0.0 and stages["track"] == pytest.approx(1e3 * seconds / 8)
    assert stages["other"] == pytest.approx(stages["track"] - 1.0 - 1.25)


def load_peer_script():
    spec = importlib.util.spec_from_file_location("mp_legacy_peer", PEER_SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeMesh:
    """A stand-in for mediapipe's FaceMesh: frame t holds t % 3 faces, vertex j at (j / 1000, t / 100)."""

    def __init__(self, static_image_mode: bool, max_num_faces: int, refine_landmarks: bool):
        assert static_image_mode is False and refine_landmarks is False
        self.t = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def process(self, rgb):
        class P:
            def __init__(self, x, y):
                self.x, self.y = x, y

        class F:
            landmark = [P(j / 1000, self.t / 100) for j in range(468)]

        class R:
            multi_face_landmarks = [F()] * (self.t % 3) or None

        self.t += 1
        return R()


def test_peer_pass_counts_faces_and_maps_468_to_68_points():
    peer = load_peer_script()
    assert len(peer.MESH_TO_68) == 68 and len(set(peer.MESH_TO_68)) == 68 and max(peer.MESH_TO_68) < 468
    frames = [np.zeros((100, 200, 3), np.uint8)] * 4
    seconds, cpu, counts, points = peer.run_pass(FakeMesh, frames, max_faces=1)
    assert seconds >= 0 and cpu >= 0 and counts == [0, 1, 2, 0]
    assert points.shape == (4, 1, 68, 2) and np.isnan(points[0]).all() and np.isnan(points[3]).all()
    assert points[1, 0, 0] == pytest.approx([162 / 1000 * 200, 1 / 100 * 100])  # jaw 0 = vertex 162, in pixels
    assert points[2, 0, 30, 0] == pytest.approx(4 / 1000 * 200)  # nose tip = vertex 4


def test_peer_reads_a_frames_npy_and_says_what_is_wrong(tmp_path):
    peer = load_peer_script()
    bgr = np.zeros((3, 8, 8, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    np.save(tmp_path / "f.npy", bgr)
    frames = peer.load_frames(tmp_path / "f.npy", 2)
    assert len(frames) == 2 and (frames[0][..., 2] == 255).all()  # RGB: blue is last
    np.save(tmp_path / "bad.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(SystemExit):
        peer.load_frames(tmp_path / "bad.npy", None)


def test_peer_process_that_cannot_start_is_one_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"did not start.*missing\.npy not found"):
        LegacyFaceMeshPeer(tmp_path / "missing.npy", 1, python=Path(sys.executable))
