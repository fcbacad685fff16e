"""The one annotation format every reader converts to: JSON Lines, one face per line.

Fields: ``image`` (path relative to the dataset root), ``landmarks`` ([[x, y], ...] 0-based pixels),
``box`` ([x1, y1, x2, y2] or null), ``attributes`` (list of tags, e.g. "largepose"), ``split``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class FaceAnnotation:
    """One annotated face."""

    image: str
    landmarks: np.ndarray  # (N, 2) float, 0-based pixel coordinates
    box: tuple[float, float, float, float] | None = None
    attributes: tuple[str, ...] = ()
    split: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["landmarks"] = np.round(np.asarray(self.landmarks, np.float64), 4).tolist()
        d["attributes"] = list(self.attributes)
        return json.dumps(d)

    @classmethod
    def from_json(cls, line: str) -> "FaceAnnotation":
        d = json.loads(line)
        d["landmarks"] = np.asarray(d["landmarks"], np.float32)
        d["box"] = tuple(d["box"]) if d.get("box") is not None else None
        d["attributes"] = tuple(d.get("attributes", ()))
        return cls(**d)


def write_annotations(faces: list[FaceAnnotation], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for face in faces:
            f.write(face.to_json() + "\n")
    return path


def read_annotations(path: str | Path) -> list[FaceAnnotation]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    faces = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                faces.append(FaceAnnotation.from_json(line))
            except (ValueError, KeyError, TypeError) as e:  # not JSON, or not a face's fields
                raise ValueError(f"{path} line {n}: not a face annotation ({type(e).__name__}: {e})") from None
    return faces
