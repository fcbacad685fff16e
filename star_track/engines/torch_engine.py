"""PyTorch implementation of :class:`star_track.engines.base.LandmarkEngine`: FP16 on CUDA, FP32 on CPU.

Runs :class:`star_track.nn.network.StarInference` (network + the same in-graph decoding as the ONNX export) from
a checkpoint, so a freshly trained model can be tracked with before it is exported. Needs torch.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..model.meta import ModelMeta
from ..errors import ModelError
from .base import check_crops, to_nchw_float


class TorchEngine:
    """A STAR checkpoint on PyTorch.

    Args:
        model_path_or_checkpoint: our ``.pt`` / an official STAR ``.pkl`` path, an already loaded checkpoint
            dict, or a ``(StarNet, ModelMeta)`` pair.
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``...; default CUDA when available, else CPU.
        fp16: run the network in half precision; default True on CUDA, False on CPU (decoding stays FP32).
        prefer_ema: use the checkpoint's EMA weights when present.
        threads: CPU threads for torch (``torch.set_num_threads``: process-wide). On a machine whose cores are
            busy with other work, 1 avoids OpenMP oversubscription (measured: 2 s -> 75 ms per crop).
    """

    def __init__(self, model_path_or_checkpoint: str | Path | Mapping[str, Any] | tuple, device: str | None = None,
                 fp16: bool | None = None, prefer_ema: bool = True, threads: int | None = None):
        from ..errors import require_torch

        torch = require_torch("the torch engine")
        from ..nn.network import StarInference

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        net, self.meta = _load(model_path_or_checkpoint, prefer_ema)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"device {self.device} requested but torch sees no CUDA GPU")
        self.fp16 = (self.device.type == "cuda") if fp16 is None else bool(fp16)
        self._dtype = torch.float16 if self.fp16 else torch.float32
        if isinstance(model_path_or_checkpoint, tuple):  # the caller's own network: .to() would convert it
            net = copy.deepcopy(net)
        # decode_heatmaps_torch casts the heatmaps to float32 itself, so only the network runs in FP16.
        self._module = StarInference(net.to(self.device, self._dtype).eval()).eval()
        self.name = f"torch[{self.device.type}{'-fp16' if self.fp16 else ''}]"

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, S, 3) uint8 BGR crops -> landmarks (B, N, 2), covariances (B, N, 2, 2), float32."""
        torch = self._torch
        crops = check_crops(crops, self.meta.input_size)
        if len(crops) == 0:
            return empty_outputs(self.meta)
        x = torch.from_numpy(to_nchw_float(crops)).to(self.device, self._dtype, non_blocking=True)
        with torch.inference_mode(), _ieee_fp32(torch, self.device.type == "cuda" and not self.fp16):
            mean, cov = self._module(x)
        return mean.float().cpu().numpy(), cov.float().cpu().numpy()


@contextlib.contextmanager
def _ieee_fp32(torch: Any, enabled: bool) -> Iterator[None]:
    """FP32 on CUDA means IEEE FP32 here, not TF32 (cuDNN convolutions default to TF32): set for the call only,
    since these switches are process-wide."""
    if not enabled:
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        saved = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = saved
    else:
        saved = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = saved


def empty_outputs(meta: ModelMeta) -> tuple[np.ndarray, np.ndarray]:
    """Outputs for an empty batch: (0, N, 2) and (0, N, 2, 2) float32."""
    from ..model.schemes import get_scheme

    n = get_scheme(meta.scheme).num_points
    return np.zeros((0, n, 2), np.float32), np.zeros((0, n, 2, 2), np.float32)


def _load(source: Any, prefer_ema: bool) -> tuple[Any, ModelMeta]:
    from ..nn.checkpoint import load_trainer_state, load_checkpoint, load_official_state
    from ..nn.network import StarNet

    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], StarNet):
        return source[0], source[1]
    if isinstance(source, Mapping):
        if "model" in source and "config" in source:
            return load_trainer_state(source, "checkpoint", prefer_ema)
        if "net" in source:
            return load_official_state(source)
        raise ModelError("checkpoint dict has neither config/model (star-track) nor net (official STAR) keys")
    path = Path(source)
    if path.suffix == ".onnx":
        raise ModelError(f"{path}: the torch engine loads .pt/.pkl checkpoints; use onnxruntime or tensorrt "
                         "for ONNX models")
    return load_checkpoint(path, prefer_ema=prefer_ema)
