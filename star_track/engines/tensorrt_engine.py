"""TensorRT FP16 engine: build (cached) from the exported ONNX and run with the TensorRT 10+ tensor API.

Precision, the same on TensorRT 10 and 11: every network is built strongly typed
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: required on 10.x, accepted and ignored on 11.x where strong
typing is the only mode), so the ONNX's own types decide. ``fp16`` first converts the ONNX to mixed precision
(:mod:`star_track.engines.onnx_fp16`: FP16 body, FP32 InstanceNorm, decoding and IO): TensorRT 10 and 11 then
compute the same precisions (the deprecated ``BuilderFlag.FP16`` let TensorRT 10 run the decoding in FP16 too).
``fp32`` clears ``BuilderFlag.TF32`` (on by default), so it is IEEE FP32, not TF32.

Built engines are cached under ``$STAR_TRACK_CACHE/engines`` (default ``~/.cache/star-track/engines``), keyed by
the ONNX file's sha256, TensorRT version, GPU name and compute capability of the current CUDA device, precision,
the FP16 converter's version and the batch profile. Files are written to a unique temporary name, fsynced and
renamed, so concurrent builders never see each other's half-written files. A cached engine that fails to
deserialise (other GPU / TensorRT build) is rebuilt, not fatal.

Device buffers are torch CUDA tensors (torch is the one CUDA runtime the GPU install already needs for the
torch engine; it keeps this module free of raw CUDA bindings). tensorrt and torch are imported lazily.

Status: written against the documented TensorRT 10/11 Python API; not yet run on a GPU (none was available).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineUnavailable, MissingDependency, ModelError
from ..hashing import sha256_file
from ..model.meta import INPUT_NAME, OUTPUT_NAMES, ModelMeta, meta_from_properties
from . import GPU_HINT
from .base import check_crops, to_nchw_float

PRECISIONS = ("fp16", "fp32")


def require_tensorrt() -> Any:
    """Import ``tensorrt`` or fail with the install hint."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependency(f"TensorRT is not installed: {GPU_HINT}") from exc
    return tensorrt


def require_cuda_torch() -> Any:
    """Import torch and check that it sees a CUDA device, or fail with a one-line hint."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency(f"GPU engines need torch with CUDA for device buffers: {GPU_HINT}") from exc
    if not torch.cuda.is_available():
        raise EngineUnavailable("no CUDA GPU visible (torch.cuda.is_available() is False): "
                                "TensorRT needs an NVIDIA GPU")
    return torch


def trt_major(version: str) -> int:
    """Major version number of a TensorRT version string, e.g. ``"10.13.0.35"`` -> 10."""
    try:
        return int(str(version).split(".")[0])
    except ValueError as exc:
        raise ModelError(f"cannot parse TensorRT version {version!r}") from exc


def check_trt_version(version: str) -> int:
    """The TensorRT major version, or EngineUnavailable for versions older than 10."""
    major = trt_major(version)
    if major < 10:
        raise EngineUnavailable(f"TensorRT {version} is too old: star-track needs TensorRT 10 or newer ({GPU_HINT})")
    return major


def network_flags(trt: Any) -> int:
    """``create_network`` flags: strongly typed (explicit batch is the only mode since TensorRT 10; on 11 the
    strong-typing flag is accepted and ignored, strong typing being the only mode)."""
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def configure_precision(trt: Any, config: Any, precision: str) -> None:
    """Builder settings for ``precision``: never a weak-typing flag; fp32 without TF32."""
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default: 10-bit mantissa products


def engine_cache_dir() -> Path:
    """Where built TensorRT engines live."""
    from ..model.registry import cache_root

    return cache_root() / "engines"


@dataclass(frozen=True)
class EngineSpec:
    """Everything a serialised engine depends on; its hash names the cache file."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    converter: str = ""
    """Version of the FP16 ONNX conversion the engine was built from ("" for fp32)."""

    def key(self) -> str:
        """Stable short hash of all fields."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def filename(self, stem: str) -> str:
        """Cache file name: readable prefix + key."""
        return f"{stem}.{self.precision}.b{self.max_batch}.{self.key()}.engine"


def gpu_identity(device: int | None = None) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of a CUDA device (default: the current one, where the
    engine will run), via torch."""
    torch = require_cuda_torch()
    if device is None:
        device = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def make_spec(onnx_path: str | Path, trt_version: str, gpu_name: str, compute_capability: str,
              precision: str = "fp16", max_batch: int = 8, opt_batch: int | None = None) -> EngineSpec:
    """The :class:`EngineSpec` for building ``onnx_path`` on the described GPU/TensorRT."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if max_batch < 1:
        raise ModelError(f"max_batch must be >= 1, got {max_batch}")
    opt = max(1, min(opt_batch or max_batch, max_batch))
    if precision == "fp16":
        from .onnx_fp16 import CONVERTER_VERSION

        converter = f"onnx_fp16/{CONVERTER_VERSION}"
    else:
        converter = ""
    return EngineSpec(onnx_sha256=sha256_file(onnx_path), trt_version=str(trt_version), gpu_name=gpu_name,
                      compute_capability=compute_capability, precision=precision, min_batch=1,
                      opt_batch=opt, max_batch=max_batch, converter=converter)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file in the same folder (mkstemp), fsync and
    ``os.replace``: readers and concurrent writers only ever see a whole file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_engine(onnx_path: str | Path, max_batch: int = 8, precision: str = "fp16",
                 opt_batch: int | None = None, workspace_gib: float = 2.0, cache_dir: str | Path | None = None,
                 force: bool = False, log: Callable[[str], None] = _stderr) -> Path:
    """Build (or find in the cache) a TensorRT engine for ``onnx_path`` and return the engine file's path.

    The optimisation profile covers batch 1..``max_batch`` (tuned for ``opt_batch``, default ``max_batch``).
    ``force`` rebuilds even when a cached file exists.
    """
    trt = require_tensorrt()
    check_trt_version(trt.__version__)
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX model not found: {onnx_path}")
    name, cc = gpu_identity()
    spec = make_spec(onnx_path, trt.__version__, name, cc, precision, max_batch, opt_batch)
    out_dir = Path(cache_dir) if cache_dir else engine_cache_dir()
    path = out_dir / spec.filename(onnx_path.stem)
    if path.is_file() and not force:
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    log(f"Building TensorRT {trt.__version__} {precision} engine for {onnx_path.name} on {name} (sm {cc}), "
        f"batch 1..{max_batch}; this takes a minute or more, once per model/GPU/TensorRT version...")
    t0 = time.perf_counter()
    plan = _build_plan(trt, onnx_path, spec, workspace_gib, out_dir)
    atomic_write(path, plan)  # never a truncated engine under the final name, even with concurrent builders
    atomic_write(path.with_suffix(".json"), json.dumps(asdict(spec), indent=1, sort_keys=True).encode())
    log(f"TensorRT engine built in {time.perf_counter() - t0:.0f} s -> {path}")
    return path


def _remove_leftovers(out_dir: Path) -> None:
    """FP16 ONNX files earlier versions kept beside the engines, and temporary files of killed builders."""
    from ..io.claims import clean_stale_partials

    for old in out_dir.glob("*.fp16.onnx"):
        with contextlib.suppress(OSError):
            old.unlink()
    clean_stale_partials(out_dir)


def _build_plan(trt: Any, onnx_path: Path, spec: EngineSpec, workspace_gib: float, work_dir: Path) -> bytes:
    if spec.precision != "fp16":
        return _build_from(trt, onnx_path, onnx_path, spec, workspace_gib)
    from .onnx_fp16 import write_fp16_onnx

    # The mixed-precision ONNX is only an input to the build: a private temporary folder, always removed.
    # The pid in the name lets clean_stale_partials remove the folder of a builder that was killed.
    with tempfile.TemporaryDirectory(prefix=f".star-track-{os.getpid()}-fp16-", dir=work_dir) as tmp:
        source = write_fp16_onnx(onnx_path, Path(tmp) / f"{onnx_path.stem}.fp16.onnx")
        return _build_from(trt, onnx_path, source, spec, workspace_gib)


def _build_from(trt: Any, onnx_path: Path, source: Path, spec: EngineSpec, workspace_gib: float) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT could not parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    configure_precision(trt, config, spec.precision)
    inp = next((network.get_input(i) for i in range(network.num_inputs)
                if network.get_input(i).name == INPUT_NAME), None)
    if inp is None:
        raise ModelError(f"{onnx_path} has no input named {INPUT_NAME!r}")
    chw = tuple(inp.shape)[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (spec.min_batch, *chw), (spec.opt_batch, *chw), (spec.max_batch, *chw))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT failed to build an engine for {onnx_path} (see the log above)")
    return bytes(plan)


def load_engine(onnx_path: str | Path, max_batch: int = 8, precision: str = "fp16",
                log: Callable[[str], None] = _stderr, **build_kw: Any) -> Any:
    """Deserialise the cached engine for ``onnx_path`` (building it on a miss). An engine that does not
    deserialise (another GPU or TensorRT version, a corrupt file) is rebuilt once."""
    trt = require_tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    path = build_engine(onnx_path, max_batch, precision, log=log, **build_kw)
    for attempt in range(2):
        try:
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
        except Exception as exc:  # some versions raise, others return None
            engine, reason = None, str(exc)
        else:
            reason = "deserialize_cuda_engine returned None"
        if engine is not None:
            return _EngineHandle(engine, runtime, path)
        if attempt == 0:
            log(f"Cached TensorRT engine {path.name} is unusable here ({reason}); rebuilding...")
            path = build_engine(onnx_path, max_batch, precision, force=True, log=log, **build_kw)
    raise ModelError(f"TensorRT cannot load the engine it just built: {path}")


@dataclass
class _EngineHandle:
    """An ICudaEngine with the runtime that must outlive it."""

    engine: Any
    runtime: Any
    path: Path


def read_onnx_meta(onnx_path: str | Path) -> ModelMeta:
    """The :class:`ModelMeta` stored in an exported ONNX file (via onnx if installed, else ONNX Runtime)."""
    try:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    except ImportError:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        props = sess.get_modelmeta().custom_metadata_map
    return meta_from_properties(props, onnx_path)


class TensorRTEngine:
    """:class:`~star_track.engines.base.LandmarkEngine` on TensorRT (FP16 by default), CUDA device 0.

    Batches larger than ``max_batch`` run in chunks.
    """

    def __init__(self, onnx_path: str | Path, max_batch: int = 8, precision: str = "fp16",
                 log: Callable[[str], None] = _stderr):
        trt = require_tensorrt()
        self._torch = torch = require_cuda_torch()
        self.meta = read_onnx_meta(onnx_path)
        self.max_batch = max_batch
        self.precision = precision
        self._handle = load_engine(onnx_path, max_batch, precision, log=log)
        engine = self._handle.engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise ModelError("TensorRT could not create an execution context (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: _torch_dtype(torch, trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        missing = set(OUTPUT_NAMES) - set(self._outputs)
        if INPUT_NAME not in names or missing:
            raise ModelError(f"engine IO {names} lacks {INPUT_NAME!r} or {sorted(missing)}")
        self._device = torch.device("cuda", torch.cuda.current_device())
        self._stream = torch.cuda.Stream(self._device)
        self.name = f"tensorrt[{precision}]"

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, S, 3) uint8 BGR crops -> landmarks (B, N, 2), covariances (B, N, 2, 2), float32."""
        crops = check_crops(crops, self.meta.input_size)
        if len(crops) == 0:
            from .torch_engine import empty_outputs

            return empty_outputs(self.meta)
        parts = [self._run(crops[i:i + self.max_batch]) for i in range(0, len(crops), self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch, ctx = self._torch, self._context
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(to_nchw_float(crops)).to(self._device, self._dtypes[INPUT_NAME],
                                                          non_blocking=True)
            if not ctx.set_input_shape(INPUT_NAME, tuple(x.shape)):
                raise ModelError(f"TensorRT rejected input shape {tuple(x.shape)} (max batch {self.max_batch})")
            ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
            outs = {}
            for name in self._outputs:
                outs[name] = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=self._dtypes[name],
                                         device=self._device)
                ctx.set_tensor_address(name, outs[name].data_ptr())
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise ModelError("TensorRT execute_async_v3 failed")
            mean = outs["landmarks"].float().cpu()
            cov = outs["covariance"].float().cpu()
        self._stream.synchronize()
        return mean.numpy(), cov.numpy()


def _torch_dtype(torch: Any, np_dtype: Any) -> Any:
    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype
