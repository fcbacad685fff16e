"""Argument checks of the tracker's API: a ValueError naming the argument, never a TypeError from deep inside;
engine threads capped at the usable cores."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..engines.onnxruntime_engine import usable_cores
from ..errors import ModelError
from ..model.schemes import LandmarkScheme, get_scheme
from ..smoothing import MAX_LOOKAHEAD

MAX_TIMESTAMP_S = 1e12
"""Largest accepted timestamp magnitude (seconds; epoch times fit comfortably)."""


def check_timestamp(timestamp: float) -> float:
    """``timestamp`` as a float, else a ValueError: a finite number of seconds within :data:`MAX_TIMESTAMP_S` (a
    string is not one, even "1.0")."""
    try:
        if isinstance(timestamp, (str, bytes)):
            raise TypeError
        t = float(timestamp)
    except (TypeError, ValueError):
        raise ValueError(f"timestamp must be a number of seconds, got {timestamp!r}") from None
    if not math.isfinite(t) or abs(t) > MAX_TIMESTAMP_S:
        raise ValueError(f"timestamp must be a finite number of seconds within +-{MAX_TIMESTAMP_S:g}, got {t}")
    return t


def capped_threads(threads: int | None) -> tuple[int | None, str | None]:
    """``threads`` validated (None, or an integer >= 0) and capped at :func:`usable_cores`, with the one-line
    note to give when it was capped (more engine threads than cores only adds contention).

    Raises:
        ValueError: not None and not an integer >= 0.
    """
    if threads is None:
        return None, None
    threads = int_arg("threads", threads, 0)
    cores = usable_cores()
    if threads > cores:
        return cores, f"threads={threads} is more than the {cores} usable CPU cores: using {cores}"
    return threads, None


def boxes_arg(boxes: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    """``boxes`` as (K, 4) x1, y1, x2, y2 pixels, else a ValueError: one box (4,) or several (K, 4), finite, with
    x2 > x1 and y2 > y1, each overlapping the image."""
    try:
        b = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"boxes must be numbers (x1, y1, x2, y2), got {boxes!r}") from None
    if b.shape[-1:] != (4,) or b.ndim not in (1, 2):
        raise ValueError(f"boxes must be one box (4,) or several (K, 4) of x1, y1, x2, y2, got shape {b.shape}")
    b = b.reshape(-1, 4)
    h, w = image_shape[:2]
    for box in b.tolist():
        if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"boxes: {box} is not a box (finite x1, y1, x2, y2 with x2 > x1 and y2 > y1)")
        if box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h:
            raise ValueError(f"boxes: {box} lies outside the {w}x{h} image")
    return b


def int_arg(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (an integral float passes), else a ValueError naming ``name``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(value) or value != int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def bool_arg(name: str, value: Any) -> bool:
    """``value`` if it is a bool (numpy's too), else a ValueError naming ``name`` (``"no"`` would be truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice_arg(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming ``name`` and the choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def float_arg(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] ((low, high] with ``low_open``), else a ValueError naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, (bool, str)) or not math.isfinite(v) or v < low or v > high or (low_open and v == low):
        bounds = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}")
    return v


def output_scheme_arg(output_scheme: str | int | None, model_scheme: LandmarkScheme, model_name: str
                      ) -> LandmarkScheme:
    """The scheme of the returned landmarks: the model's (``None``, or ``"98"`` for a 98-point model), or
    300W-68 reduced from it (``"68"``). Asking a model for points it cannot give is a :class:`ModelError`."""
    if output_scheme in ("98", "wflw98", 98):  # the model's own points, if it has those
        if model_scheme.num_points != 98:
            raise ModelError(f"model {model_name!r} outputs {model_scheme.num_points} points "
                             f"({model_scheme.name}); 98 points need a 98-point model, e.g. star98-fast")
        return model_scheme
    if output_scheme not in (None, "68", "300w68", 68):
        raise ValueError(f"output_scheme must be None, '68' or '98', got {output_scheme!r}")
    if output_scheme is None or model_scheme.num_points == 68:
        return model_scheme
    if model_scheme.to_68 is None:
        raise ModelError(f"model scheme {model_scheme.name} ({model_scheme.num_points} points) "
                         "cannot be reduced to 68 points")
    return get_scheme("300w68")


def lookahead_params(smoothing: str, params: dict[str, Any] | None, lookahead: int) -> dict[str, Any]:
    """The smoother parameters of a Tracker with ``lookahead`` frames (given as the Tracker's argument, which the
    queue of waiting frames needs too, never as a smoother parameter)."""
    params = dict(params or {})
    if lookahead > MAX_LOOKAHEAD:
        raise ValueError(f"lookahead must be at most {MAX_LOOKAHEAD} frames (each waiting frame is held in memory, "
                         f"and beyond ~8 the output hardly changes), got {lookahead}")
    if "lookahead" in params:
        raise ValueError("pass lookahead to the Tracker (Tracker(lookahead=...)), not in smoothing_params")
    if lookahead and str(smoothing).replace("_", "-").lower() != "face":
        raise ValueError(f"lookahead needs smoothing='face' (the filter that revises past frames), got "
                         f"smoothing={smoothing!r}")
    return params | ({"lookahead": lookahead} if lookahead else {})
