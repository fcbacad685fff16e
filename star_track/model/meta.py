"""What a STAR model file says about itself: network size, landmark scheme and crop framing.

Stored as JSON under the ONNX metadata key ``star_track`` so that the runtime (no torch, no onnx package)
can read it through ONNX Runtime, and so a model can never be paired with the wrong crop geometry.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Mapping

from ..crop import LANDMARK_CROP_SCALE
from ..errors import ModelError

METADATA_KEY = "star_track"
"""The ONNX metadata key that holds a model's :class:`ModelMeta` as JSON."""
INPUT_NAME = "images"
"""The input of every star-track ONNX model: (B, 3, S, S) float BGR in 0..255."""
OUTPUT_NAMES = ("landmarks", "covariance")
"""Its outputs: (B, N, 2) landmarks and (B, N, 2, 2) covariances in [-1, 1] crop units."""
HEATMAP_TENSOR = "heatmaps"
"""The last stack's fused heatmap tensor in every exported graph (a graph output only if asked for)."""


@dataclass(frozen=True)
class ModelMeta:
    """Self-description of a landmark model."""

    name: str
    scheme: str
    input_size: int
    network: dict = field(default_factory=dict)
    crop_scale: float = LANDMARK_CROP_SCALE
    box_calibration: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """(dx, dy, k) for :func:`star_track.crop.crop_from_box`: the default for detectors not listed below."""
    box_calibrations: dict = field(default_factory=dict)
    """Per bundled detector name (``"short"``, ``"full"``): its own (dx, dy, k), fitted on labelled faces."""
    mirror_shift: float = 0.0
    """How far right of the mirror-consistent position the model's points sit, in outer-eye distances: the
    labelling convention it learned (300W's labels: ~0.01). Flip averaging keeps it
    (:class:`star_track.engines.flip_average.FlipAveragedEngine`)."""
    uncertainty: dict = field(default_factory=dict)
    """Calibration of the STAR covariance into the real error covariance (:mod:`star_track.uncertainty`),
    fitted on held-out faces by ``python -m train calibrate-uncertainty``; empty = uncalibrated."""
    extra: dict = field(default_factory=dict)

    def calibration_for(self, detector: str) -> tuple[float, float, float]:
        """Box calibration for a detector name (or the default for a user-supplied detector file)."""
        return tuple(self.box_calibrations.get(str(detector), self.box_calibration))

    def to_json(self) -> str:
        """The JSON stored under :data:`METADATA_KEY`."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        """Inverse of :meth:`to_json` (unknown keys are ignored)."""
        d = json.loads(text)
        d["box_calibration"] = tuple(d.get("box_calibration", (0.0, 0.0, 1.0)))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def meta_from_properties(properties: Mapping[str, str], path: object) -> ModelMeta:
    """The :class:`ModelMeta` in an ONNX file's metadata ``properties`` (key -> value), validated: the one
    reader behind every engine.

    Raises:
        ModelError: no :data:`METADATA_KEY` entry (not a star-track model), or one that does not parse or names
            an unknown landmark scheme.
    """
    from .schemes import get_scheme

    if METADATA_KEY not in properties:
        raise ModelError(f"{path} has no '{METADATA_KEY}' metadata: not a star-track model "
                         "(export it with `python -m export`)")
    try:
        meta = ModelMeta.from_json(properties[METADATA_KEY])
        get_scheme(meta.scheme)
    except (ValueError, TypeError, KeyError) as e:
        raise ModelError(f"{path} has invalid '{METADATA_KEY}' metadata: {e}") from None
    return meta
