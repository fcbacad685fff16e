"""The speed peer: MediaPipe's Face Mesh landmark model (468 points) on LiteRT, as most CPU users run it.

The model file lives in ``shared/models/peers`` (not shipped with the package); ``ai-edge-litert`` runs it
(``pip install "star-track[bench]"``). Used for speed comparisons only: its points follow neither the 300W nor
the WFLW definitions.
"""
from __future__ import annotations

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
