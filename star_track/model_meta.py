"""What a STAR model file says about itself: network size, landmark scheme and crop framing.

Stored as JSON under the ONNX metadata key ``star_track`` so that the runtime (no torch, no onnx package)
can read it through ONNX Runtime, and so a model can never be paired with the wrong crop geometry.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .crop import LANDMARK_CROP_SCALE

METADATA_KEY = "star_track"


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
    uncertainty: dict = field(default_factory=dict)
    """Calibration of the STAR covariance into the real error covariance (:mod:`star_track.uncertainty`),
    fitted on held-out faces by ``python -m train calibrate-uncertainty``; empty = uncalibrated."""
    extra: dict = field(default_factory=dict)

    def calibration_for(self, detector: str) -> tuple[float, float, float]:
        """Box calibration for a detector name (or the default for a user-supplied detector file)."""
        return tuple(self.box_calibrations.get(str(detector), self.box_calibration))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        d = json.loads(text)
        d["box_calibration"] = tuple(d.get("box_calibration", (0.0, 0.0, 1.0)))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
