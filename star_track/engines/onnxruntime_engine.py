"""ONNX Runtime implementation of :class:`star_track.engines.base.LandmarkEngine` (the default engine)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..model.meta import OUTPUT_NAMES, ModelMeta, meta_from_properties
from ..model.schemes import get_scheme
from ..errors import ModelError
from .base import check_crops, to_nchw_float


def preferred_providers(available: list[str] | None = None) -> list[str]:
    """CUDA first when this onnxruntime build has it, CPU always last."""
    import onnxruntime as ort

    available = list(ort.get_available_providers()) if available is None else available
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Intra-op threads when none are asked for: 1.

    Measured on 2 cores (``python -m benchmarks.speed --peer-only``, benchmarks/README.md section 4): a second
    thread slows ``star68-fast`` (2.5 vs 1.8 ms per face) and only pays for the 2-stack model at batch 4; one
    thread per engine also keeps a busy machine (other processes, the workers of ``star-track batch``) from
    oversubscribing its cores.
    """
    return 1


def session_options(threads: int):
    """ONNX Runtime session options for the landmark engine.

    ``threads`` intra-op threads (0 = ONNX Runtime's default), full graph optimisation, and thread-pool
    **spinning off**: idle pool threads otherwise busy-wait between calls, stealing the cores other processes
    need (on a loaded 2-core machine ONNX Runtime was seen 5-10x slower with spinning; with these options two
    busy processes beside it slowed ``star68-fast`` by 4 %, MediaPipe's peer model by 5 %).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def read_meta(session, path: Path) -> ModelMeta:
    """The model's :class:`ModelMeta` from the ONNX custom metadata key ``star_track``."""
    return meta_from_properties(session.get_modelmeta().custom_metadata_map, path)


class OnnxRuntimeEngine:
    """A STAR ONNX model on ONNX Runtime.

    Args:
        model_path: ``.onnx`` written by :func:`star_track.nn.onnx_export.export_onnx`.
        providers: execution providers in order of preference (default: CUDA if available, then CPU).
        threads: intra-op threads; ``None`` = :func:`default_threads` (1), and on the CPU a batch of several crops
            (faces, a flip pair) is split across up to :func:`usable_cores` threads, one run of a slice each
            (faster than ONNX Runtime's own intra-op threads at these sizes: README "Speed"). A number: exactly
            that many intra-op threads, no split (``star-track batch`` workers run with 1); 0 = ONNX Runtime's
            own default (one per core). See :func:`session_options` for why spinning is off.

    Raises:
        ModelError: missing file, not an ONNX model, no star-track metadata, or outputs that disagree with
            the metadata (e.g. wrong landmark count for the declared scheme).
    """

    def __init__(self, model_path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        path = Path(model_path)
        if not path.exists():
            raise ModelError(f"model {path} does not exist")
        if not path.is_file():
            raise ModelError(f"model {path} is not a file")
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        opts = session_options(self.threads)
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts,
                                                 providers=providers or preferred_providers())
        except Exception as e:  # onnxruntime raises its own pybind exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"model {path} is not a loadable ONNX model: {first}") from None
        self.meta = read_meta(self._session, path)
        self.path = path
        self.providers: list[str] = list(self._session.get_providers())
        cpu = self.providers[0] == "CPUExecutionProvider"
        self.batch_threads = usable_cores() if threads is None and cpu else 1
        """Threads that share one batch (each runs a slice of it: ONNX Runtime's runs release the GIL)."""
        self._pool: ThreadPoolExecutor | None = None
        self.name = f"onnxruntime[{self.providers[0]}]"
        self._check_io(path)

    def _check_io(self, path: Path) -> None:
        inputs = self._session.get_inputs()
        outputs = {o.name: o for o in self._session.get_outputs()}
        if len(inputs) != 1 or any(name not in outputs for name in OUTPUT_NAMES):
            raise ModelError(f"{path}: expected one input and outputs 'landmarks', 'covariance'; got inputs "
                             f"{[i.name for i in inputs]}, outputs {list(outputs)}")
        self._input = inputs[0].name
        s = self.meta.input_size
        shape = inputs[0].shape
        if len(shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(shape[1:], (3, s, s))):
            raise ModelError(f"{path}: input shape {shape} does not match metadata input_size {s}")
        n = get_scheme(self.meta.scheme).num_points
        lm = outputs["landmarks"].shape
        if len(lm) != 3 or (isinstance(lm[1], int) and lm[1] != n) or (isinstance(lm[2], int) and lm[2] != 2):
            raise ModelError(f"{path}: outputs {lm[1] if len(lm) > 1 else '?'} landmarks but its metadata "
                             f"declares scheme {self.meta.scheme} ({n} points)")

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, S, 3) uint8 BGR crops -> means (B, N, 2) and covariances (B, N, 2, 2) in [-1, 1] crop units."""
        crops = check_crops(crops, self.meta.input_size)
        n = get_scheme(self.meta.scheme).num_points
        if len(crops) == 0:
            return np.zeros((0, n, 2), np.float32), np.zeros((0, n, 2, 2), np.float32)
        x = to_nchw_float(crops)
        parts = np.array_split(x, min(self.batch_threads, len(x)))
        if len(parts) == 1:
            mean, cov = self._run(x)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.batch_threads - 1, thread_name_prefix="star-track-engine")
            later = [self._pool.submit(self._run, part) for part in parts[1:]]
            first = self._run(parts[0])
            mean, cov = (np.concatenate(out) for out in zip(first, *(f.result() for f in later)))
        if mean.shape[1:] != (n, 2) or cov.shape[1:] != (n, 2, 2):
            raise ModelError(f"{self.path}: produced {mean.shape} landmarks, expected (B, {n}, 2)")
        return mean.astype(np.float32, copy=False), cov.astype(np.float32, copy=False)

    def close(self) -> None:
        """Stop the threads that run a batch's slices (idempotent; the engine stays usable and starts them again
        when a batch needs them). :meth:`Tracker.close <star_track.tracking.tracker.Tracker.close>` calls it."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, cov = self._session.run(list(OUTPUT_NAMES), {self._input: x})
        return mean, cov
