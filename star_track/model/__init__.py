"""Models: what a landmark model file says about itself (:mod:`.meta`), where models live (:mod:`.registry`),
the landmark point layouts (:mod:`.schemes`), and the files shipped with the package (``bundled/``: the landmark
``.onnx`` models with their cards, the BlazeFace detector ``.tflite`` files and their licence)."""
from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
"""The one folder of the files shipped with the package (landmark models, model cards, face detectors)."""
