"""Shared pytest hooks and fixtures.

* tests marked ``gpu`` skip automatically on machines without a usable NVIDIA GPU;
* runtime fixtures: a random-weight stand-in model written through the real ONNX export, real face photos.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from star_track.model import BUNDLED_DIR

# CLI output must not depend on the terminal running the tests: rich wraps at $COLUMNS and styles by TERM.
os.environ.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")


@functools.lru_cache(maxsize=1)
def _gpu_skip_reason() -> str | None:
    """Why GPU tests cannot run here (None when they can). torch is imported only when a gpu test exists.

    Every GPU path (torch CUDA engine, TensorRT buffers) goes through torch's CUDA runtime, so a CUDA-capable
    torch is the test; tests that also need TensorRT add ``pytest.importorskip("tensorrt")``.
    """
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=f"gpu: {reason}"))


# --- runtime fixtures (SDK / CLI tests) -------------------------------------------------------------


def _shared_data() -> Path:
    """The real face data the tests read: ``$STAR_TRACK_DATA`` when set, else ``shared/data`` beside the checkout
    (``../shared/data``), else the workplace's ``/work/shared/data``. Tests that need it skip, naming the path,
    when none exists. The one convention of the suite (README "Install and test")."""
    if os.environ.get("STAR_TRACK_DATA"):
        return Path(os.environ["STAR_TRACK_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


DATA = _shared_data()
BUNDLED_MODEL = BUNDLED_DIR / "star68-accurate.onnx"
# A real WFLW photo with one large, frontal face (box from list_68pt_rect_attr_test.txt).
FACE_IMAGE = "wflw/WFLW_images/{}"


def _export(tmp_dir: Path, name: str, scheme: str = "300w68", meta_scheme: str | None = None) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from star_track.nn.onnx_export import export_onnx
    from star_track.model.meta import ModelMeta
    from star_track.nn.network import NetworkConfig, StarNet

    torch.manual_seed(0)
    cfg = NetworkConfig(scheme=scheme, num_stacks=1, channels=32, depth=3, input_size=128)
    net = StarNet(cfg).eval()
    meta = ModelMeta(name=name, scheme=meta_scheme or scheme, input_size=cfg.input_size, network=cfg.to_dict())
    return export_onnx(net, meta, tmp_dir / f"{name}.onnx")


@pytest.fixture(scope="session")
def standin_model(tmp_path_factory) -> Path:
    """Tiny random-weight 300W-68 STAR model exported to ONNX with star-track metadata."""
    return _export(tmp_path_factory.mktemp("models"), "standin")


@pytest.fixture(scope="session")
def model_path(standin_model) -> Path:
    """The bundled trained model when it exists, else the random-weight stand-in."""
    return BUNDLED_MODEL if BUNDLED_MODEL.is_file() else standin_model


@pytest.fixture(scope="session")
def wrong_count_model(tmp_path_factory) -> Path:
    """A 68-point network whose metadata claims WFLW-98: must be refused."""
    return _export(tmp_path_factory.mktemp("bad"), "wrongcount", scheme="300w68", meta_scheme="wflw98")


def _first_face_line() -> tuple[Path, np.ndarray, np.ndarray]:
    ann = DATA / "wflw/derived_68pt/list_68pt_rect_attr_test.txt"
    best = None
    for line in ann.read_text().splitlines():
        v = line.split()
        pts = np.array(v[:136], np.float64).reshape(68, 2)
        box = np.array(v[136:140], np.float64)
        flags = [int(x) for x in v[140:146]]
        side = box[2] - box[0]
        if sum(flags) == 0 and 180 < side < 400:  # clean, large face
            best = (DATA / "wflw/WFLW_images" / v[146], pts, box)
            break
    if best is None:
        pytest.skip("no suitable face in the WFLW annotations")
    return best


@pytest.fixture(scope="session")
def face_photo() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image BGR, 68 ground-truth points, box) for a real WFLW face; skips if the data is absent."""
    if not (DATA / "wflw").is_dir():
        pytest.skip(f"real face data not found at {DATA}")
    path, pts, box = _first_face_line()
    img = cv2.imread(str(path))
    assert img is not None, path
    return img, pts, box


@pytest.fixture(scope="session")
def face_crop(face_photo) -> np.ndarray:
    """A 256x256 BGR crop around the real face (face fills ~55 % of the side)."""
    img, _, box = face_photo
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = (box[2] - box[0]) * 1.8
    m = np.array([[256 / side, 0, 128 - 256 / side * cx], [0, 256 / side, 128 - 256 / side * cy]])
    return cv2.warpAffine(img, m, (256, 256), borderMode=cv2.BORDER_REPLICATE)


def write_video(path: Path, frames, fps: float = 25.0) -> Path:
    """Write BGR frames as mp4v."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path



def to_variable_rate(src: Path, dst: Path, fast: int) -> tuple[Path, list[float]]:
    """Re-time ``src`` with ffmpeg: frames 0..fast-1 at 25 fps, then 10 fps (a variable-frame-rate file).
    Returns the file and the expected frame times in seconds. Skips when imageio-ffmpeg is absent."""
    import subprocess

    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    t_fast = fast * 0.04
    expr = f"if(lt(N,{fast}),N*0.04,{t_fast}+(N-{fast})*0.1)/TB"
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(src), "-vf", f"setpts='{expr}'",
                    "-fps_mode", "vfr", "-c:v", "mpeg4", "-q:v", "3", str(dst)], check=True)
    n = int(cv2.VideoCapture(str(src)).get(cv2.CAP_PROP_FRAME_COUNT))
    return dst, [i * 0.04 if i < fast else t_fast + (i - fast) * 0.1 for i in range(n)]


def disk_full_at(monkeypatch, frame: int) -> None:
    """Make every CSV landmark writer fail with ENOSPC ("No space left on device") when it writes ``frame``."""
    import errno

    from star_track.io.landmarks import CsvLandmarkWriter

    original = CsvLandmarkWriter.write

    def write(self, frame_index, time, faces):
        if frame_index == frame:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, frame_index, time, faces)

    monkeypatch.setattr(CsvLandmarkWriter, "write", write)


def signal_mid_run(cmd: list, watched: Path, min_bytes: int, sig: int, wait_s: float):
    """Start ``cmd``, wait until ``watched`` holds ``min_bytes`` (some frames are done), send ``sig``; return
    ``(returncode, stdout, stderr)``. Fails when the process ended before the signal."""
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + wait_s
    while time.time() < deadline and proc.poll() is None:
        if watched.exists() and watched.stat().st_size > min_bytes:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr
