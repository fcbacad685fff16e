"""The options several ``star-track`` commands share, declared once: the tracker options (``video``, ``webcam``,
``image``, ``batch``) and the output video codec.

A command takes the tracker options with :func:`tracker_options`, which adds the named options to its signature
(so typer parses and documents them) and hands the command one :class:`TrackerOptions`; that maps them to
:class:`~star_track.tracking.tracker.Tracker` arguments in one place (:meth:`TrackerOptions.tracker_kwargs`).
"""
from __future__ import annotations

import functools
import math
import inspect
import warnings
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

if TYPE_CHECKING:
    from ..tracking.tracker import Tracker


class Codec(str, Enum):
    """Video codecs ``--codec`` accepts."""

    h264 = "h264"
    hevc = "hevc"
    vp9 = "vp9"
    av1 = "av1"
    mpeg4 = "mpeg4"


class Smoothing(str, Enum):
    """``--smoothing`` values."""

    kalman = "kalman"
    face = "face"
    one_euro = "one-euro"
    none = "none"


@dataclass(frozen=True)
class TrackerOptions:
    """What the command line says about the :class:`~star_track.tracking.tracker.Tracker` to build."""

    model: str | None = None
    engine: str = "auto"
    smoothing: str = "face"
    max_faces: int | None = 4
    detector: str = "full"
    detect_every: int = 10
    output_68: bool = False
    flip_test: bool = False
    threads: int | None = None
    no_analysis: bool = False
    focal: float | None = None
    camera: tuple[float, float, float, float] | None = None
    lookahead: int | None = 0
    """Frames of look-ahead; None: :data:`~star_track.smoothing.RECORDED_LOOKAHEAD` with face smoothing, else 0."""

    def capped(self) -> "TrackerOptions":
        """These options with ``threads`` capped at the usable cores, and one note line on stderr when it was
        (the SDK's RuntimeWarning, said the command line's way)."""
        from ..tracking.arguments import capped_threads

        threads, note = capped_threads(self.threads)
        if note is not None:
            typer.echo(f"star-track: note: --{note.replace('=', ' ', 1)}", err=True)
        return replace(self, threads=threads)

    def tracker_kwargs(self) -> dict[str, Any]:
        """The :class:`~star_track.tracking.tracker.Tracker` keyword arguments these options stand for."""
        return {"model": self.model, "engine": self.engine, "smoothing": self.smoothing,
                "max_faces": self.max_faces or 1, "detect_every": self.detect_every, "detector": self.detector,
                "output_scheme": "68" if self.output_68 else None, "flip_test": self.flip_test,
                "threads": self.threads, "analysis": not self.no_analysis, "focal": self.focal,
                "camera": self.camera, "lookahead": self.frames_ahead()}

    def frames_ahead(self) -> int:
        """The Tracker's ``lookahead``: as given, or by default look-ahead where the smoother can revise."""
        from ..smoothing import default_lookahead

        return self.lookahead if self.lookahead is not None else default_lookahead(self.smoothing)

    def tracker(self, fps: float = 30.0, photo: bool = False, **changes: Any) -> "Tracker":
        """A Tracker with these options (``changes`` override some of them) for a ``fps`` video, or with
        ``photo`` the SDK's photo-mode Tracker (:meth:`~star_track.tracking.tracker.Tracker.for_photos`: its
        model unless these options name one, no smoothing).

        Non-finite model outputs are not warned about here: the commands report them as one line.
        """
        from ..tracking.face import NonFiniteOutputWarning
        from ..tracking.tracker import Tracker
        from ..uncertainty import UncalibratedUncertaintyWarning

        o = replace(self, **changes).capped()
        warnings.simplefilter("ignore", NonFiniteOutputWarning)
        kwargs = o.tracker_kwargs()
        if photo:
            del kwargs["smoothing"], kwargs["lookahead"]
        with warnings.catch_warnings(record=True) as caught:  # the SDK's warnings, said the command line's way
            warnings.simplefilter("always", UncalibratedUncertaintyWarning)
            tracker = (Tracker.for_photos if photo else Tracker)(fps=fps, **kwargs)
        for w in caught:
            if issubclass(w.category, UncalibratedUncertaintyWarning):
                typer.echo(f"star-track: warning: {w.message}", err=True)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if o.output_68 and tracker.model_scheme.num_points == 68:  # harmless, but say it did nothing
            typer.echo(f"star-track: note: --68 has no effect: the model already outputs 68 points "
                       f"({tracker.model_scheme.name})", err=True)
        return tracker


OPTIONS: dict[str, tuple[Any, Any]] = {
    "smoothing": (Smoothing, typer.Option(Smoothing.face, "--smoothing", "-s", help="Temporal smoothing.")),
    "model": (Optional[str], typer.Option(None, "--model", "-m", help="Model: 'default', a name in the model "
                                          "cache, or a .onnx path.")),
    "engine": (str, typer.Option("auto", "--engine", "-e", help="auto, onnxruntime, tensorrt or torch.")),
    "max_faces": (int, typer.Option(4, "--max-faces", min=1, help="Most faces tracked at once.")),
    "detector": (str, typer.Option("full", "--detector", help="Face detector: full (default; faces up to ~5 m), "
                                   "short (selfie distance, faster) or a .tflite path.")),
    "detect_every": (int, typer.Option(10, "--detect-every", min=1, help="Run the face detector at least every "
                                       "K frames.")),
    "output_68": (bool, typer.Option(False, "--68", help="Output 300W 68-point landmarks (reduces 98-point "
                                     "models).")),
    "flip_test": (bool, typer.Option(False, "--flip-test", help="Also run each face mirrored and average: more "
                                     "accurate, 2x engine time.")),
    "threads": (Optional[int], typer.Option(None, "--threads", min=1, help="CPU threads of the ONNX Runtime "
                                            "engine (default: 1 per run, the fastest per face, with several "
                                            "faces split across the cores; N: exactly N, no split).")),
}
"""Parameter name -> (type, typer option) of every shared option."""
OPTIONS["lookahead"] = (Optional[int], typer.Option(
    None, "--lookahead", min=0, metavar="FRAMES", help="Revise each frame's landmarks with the next FRAMES frames "
    "before writing it: steadier output at no lag in the file (default 8 with --smoothing face; 0: as live)."))


def _focal(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a focal length in pixels > 0, got {value}")
    return value


def _camera(value: str | None) -> tuple[float, float, float, float] | None:
    """``fx,fy,cx,cy`` in pixels (a usage error, exit 2, when it is not four finite numbers with fx, fy > 0)."""
    if value is None:
        return None
    try:
        fx, fy, cx, cy = (float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"must be fx,fy,cx,cy in pixels (four numbers), got {value!r}") from None
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or not (fx > 0 and fy > 0):
        raise typer.BadParameter(f"must be four finite numbers fx,fy,cx,cy with fx, fy > 0, got {value!r}")
    return fx, fy, cx, cy


OPTIONS.update({
    "no_analysis": (bool, typer.Option(False, "--no-analysis", help="Skip head pose, eye/mouth openness and "
                                       "blinks (saves ~0.25 ms per face; their columns stay empty).")),
    "focal": (Optional[float], typer.Option(None, "--focal", callback=_focal, metavar="PX",
                                            help="Camera focal length in pixels for the head pose (default: the "
                                            "frame width).")),
    "camera": (Optional[str], typer.Option(None, "--camera", "--intrinsics", callback=_camera,
                                           metavar="FX,FY,CX,CY", help="Full camera intrinsics in pixels for "
                                           "the head pose (overrides --focal; default centre: the frame's).")),
})


def _check_lookahead(picked: dict[str, Any]) -> None:
    """``--lookahead``: with face smoothing only, at most MAX_LOOKAHEAD frames (a usage error otherwise)."""
    from ..smoothing import MAX_LOOKAHEAD

    frames = picked.get("lookahead")
    if frames and picked.get("smoothing", "face") != "face":
        raise typer.BadParameter("needs --smoothing face (the filter that revises past frames)",
                                 param_hint="'--lookahead'")
    if frames is not None and frames > MAX_LOOKAHEAD:
        raise typer.BadParameter(f"at most {MAX_LOOKAHEAD} frames (each waiting frame is held in memory)",
                                 param_hint="'--lookahead'")


def tracker_options(*names: str, **overrides: tuple[Any, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: add the options ``names`` (keys of :data:`OPTIONS`; ``overrides`` give some of them another
    type and option) to a command, which receives them as ``tracker_options: TrackerOptions``."""
    table = {n: overrides.get(n, OPTIONS[n]) for n in names}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            picked = {n: kwargs.pop(n) for n in table}
            if isinstance(picked.get("smoothing"), Enum):
                picked["smoothing"] = picked["smoothing"].value
            _check_lookahead(picked)
            return command(tracker_options=TrackerOptions(**picked), **kwargs)

        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.name != "tracker_options"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=tp)
                 for n, (tp, opt) in table.items()]
        signature = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added)
        run.__signature__ = signature  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        del run.__wrapped__  # typer must see the new signature, not the command's own
        return run

    return decorate
