"""The speed peers: MediaPipe's Face Mesh landmark model (468 points) on LiteRT, as most CPU users run it
(:class:`PeerFaceMesh`, engine vs engine), and MediaPipe's whole legacy Face Mesh solution in its own venv
(:class:`LegacyFaceMeshPeer`, end to end).

The model file lives in ``shared/models/peers`` (not shipped with the package); ``ai-edge-litert`` runs it
(``pip install "star-track[bench]"``). Used for speed comparisons only: its points follow neither the 300W nor
the WFLW definitions.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from .common import REPO

PEER_MODEL = Path(os.environ.get("STAR_TRACK_PEER_MODEL",
                                 REPO.parent / "shared" / "models" / "peers" / "mediapipe_face_mesh.tflite"))


class PeerFaceMesh:
    """One LiteRT interpreter of the Face Mesh model: BGR face crop in, (468, 2) crop-pixel points out."""

    def __init__(self, path: str | Path = PEER_MODEL, threads: int = 2):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise SystemExit('the MediaPipe peer model needs ai-edge-litert: pip install "star-track[bench]"') \
                from None
        if not Path(path).is_file():
            raise SystemExit(f"peer model {path} not found (set $STAR_TRACK_PEER_MODEL)")
        self._interp = Interpreter(model_path=str(path), num_threads=threads)
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        self._input = inp["index"]
        self.size = int(inp["shape"][1])
        outs = self._interp.get_output_details()
        self._points = max(outs, key=lambda o: int(np.prod(o["shape"])))["index"]

    def run(self, crop_bgr: np.ndarray) -> np.ndarray:
        """Landmarks (468, 2) in the pixels of a ``size`` x ``size`` crop."""
        if crop_bgr.shape[:2] != (self.size, self.size):
            crop_bgr = cv2.resize(crop_bgr, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        x = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 255.0
        self._interp.set_tensor(self._input, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._points).reshape(-1, 3)[:, :2]


# -- the end-to-end peer: MediaPipe's legacy Face Mesh solution in its own environment ---------------------------
PEER_VENV = Path(os.environ.get("STAR_TRACK_PEER_VENV", REPO / ".peer-mp"))
"""The peer's own venv (mediapipe 0.10.21 needs numpy < 2, star-track's venv has numpy 2)."""
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "mediapipe_face_mesh_legacy.py"
PEER_PACKAGES = ("mediapipe==0.10.21", "numpy<2", "opencv-python-headless==4.10.0.84")
SETUP_LINE = ("python -m benchmarks.speed --setup-peer   (or: python -m venv .peer-mp && .peer-mp/bin/pip install "
              + " ".join(f'"{p}"' for p in PEER_PACKAGES) + ")")
"""How to create the peer's environment, printed when it is missing."""
PEER_KEYS = ("frames", "max_faces", "pass_seconds", "fps", "ms_per_frame", "faces_per_frame", "faces_mean")


def peer_python(venv: Path = PEER_VENV) -> Path | None:
    """The peer venv's interpreter, or None when the venv has not been created."""
    for exe in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
        if exe.is_file():
            return exe
    return None


def setup_peer(venv: Path = PEER_VENV) -> Path:
    """Create the peer venv with :data:`PEER_PACKAGES` (from the package registry); returns its interpreter."""
    import subprocess
    import sys

    if peer_python(venv) is None:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    exe = peer_python(venv)
    if exe is None:
        raise SystemExit(f"creating the venv {venv} left no python in it")
    subprocess.run([str(exe), "-m", "pip", "install", *PEER_PACKAGES], check=True)
    return exe


def parse_peer_json(text: str) -> dict:
    """The peer's record from its stdout: the last line that is a JSON object with every key of
    :data:`PEER_KEYS` (earlier lines may be the ``ready`` line or logging). ``ValueError`` when there is none or
    it is inconsistent (pass count, faces per frame)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or "ready" in rec:
            continue
        missing = [k for k in PEER_KEYS if k not in rec]
        if missing:
            raise ValueError(f"peer record lacks {', '.join(missing)}: {line[:200]}")
        if len(rec["faces_per_frame"]) != rec["frames"] or not rec["pass_seconds"]:
            raise ValueError(f"peer record is inconsistent: {rec['frames']} frames, "
                             f"{len(rec['faces_per_frame'])} face counts, {len(rec['pass_seconds'])} passes")
        return rec
    raise ValueError(f"no peer record in its output: {text.strip()[-300:]!r}")


def best_of(records: list[dict]) -> dict:
    """One record for several single-pass records of the same frames: the fastest pass, every pass's seconds
    (wall and CPU)."""
    if not records:
        raise ValueError("no peer passes")
    seconds = [s for r in records for s in r["pass_seconds"]]
    cpu = [s for r in records for s in r.get("pass_cpu_seconds", [])]
    best = min(records, key=lambda r: min(r["pass_seconds"]))
    n = best["frames"]
    out = {**best, "pass_seconds": seconds, "passes": len(seconds), "fps": n / min(seconds),
           "ms_per_frame": 1e3 * min(seconds) / n, "pass_cpu_seconds": cpu}
    if cpu:  # the least CPU time of any pass: the work, with the least disturbance
        out["cpu_ms_per_frame"] = 1e3 * min(cpu) / n
    return out


class LegacyFaceMeshPeer:
    """The peer script in ``--serve`` mode on one ``.npy`` of frames: :meth:`run_pass` times one pass there,
    so the parent can interleave the peer's passes with its own (both see the same machine state)."""

    def __init__(self, frames_npy: Path, max_faces: int, python: Path | None = None):
        import subprocess
        import tempfile

        exe = python or peer_python()
        if exe is None:
            raise FileNotFoundError(f"no peer environment at {PEER_VENV}: {SETUP_LINE}")
        self._log = tempfile.TemporaryFile()  # mediapipe logs a lot to stderr: a pipe nobody reads would block it
        self._proc = subprocess.Popen([str(exe), str(PEER_SCRIPT), str(frames_npy), "--max-faces", str(max_faces),
                                       "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True)
        ready = self._read()
        if '"ready"' not in ready:
            try:
                self._proc.wait(timeout=10)  # it has closed its stdout: it is exiting (its stderr says why)
            except subprocess.TimeoutExpired:
                pass
            why = self._tail(ready)
            self.close()
            raise RuntimeError(f"the peer did not start: {why}")

    def _read(self) -> str:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline()

    def _tail(self, line: str = "") -> str:
        self._log.seek(0)
        err = self._log.read().decode(errors="replace").strip().splitlines()
        return (line.strip() or "no output") + (f"; stderr: {err[-1]}" if err else "")

    def run_pass(self) -> dict:
        """One timed pass of the peer over all its frames (a fresh FaceMesh graph): its record."""
        assert self._proc.stdin is not None
        self._proc.stdin.write("pass\n")
        self._proc.stdin.flush()
        line = self._read()
        try:
            return parse_peer_json(line)
        except ValueError:
            raise RuntimeError(f"the peer failed: {self._tail(line)}") from None

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except Exception:  # a hung peer must not hang the benchmark
            self._proc.kill()
            self._proc.wait()
        self._log.close()

    def __enter__(self) -> "LegacyFaceMeshPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
