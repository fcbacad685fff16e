"""``star-track image``: every face in a still image (photo mode) as JSON, a landmark file and/or an annotated
image (the SDK is imported when the command runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..exits import error_boundary
from ..options import TrackerOptions, tracker_options
from ..outputs import STDOUT, check_outputs, report_nonfinite

_IMAGE_MAX_FACES = (Optional[int], typer.Option(None, "--max-faces", min=1, help="Most faces returned "
                                                 "(default: all)."))


_IMAGE_MODEL = (Optional[str], typer.Option(None, "--model", "-m", help="Model: 'default' (the fast video "
                                            "model), a name in the model cache, or a .onnx path (default here: "
                                            "the most precise bundled model, star68-precise-int8)."))


_IMAGE_FLIP = (bool, typer.Option(True, "--flip-test/--no-flip-test", help="Also run each face mirrored and "
                                   "average (the default for photos: lower error, 2x the landmark time); "
                                   "--no-flip-test: one pass."))


@tracker_options("model", "engine", "max_faces", "detector", "output_68", "flip_test", "threads", "no_analysis",
                 "focal", "camera", max_faces=_IMAGE_MAX_FACES, model=_IMAGE_MODEL, flip_test=_IMAGE_FLIP)
def image(
    input: str = typer.Argument(..., help="Input image."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Annotated output image."),
    landmarks_out: Optional[Path] = typer.Option(None, "--landmarks-out", "-l", help="Landmarks "
                                                 ".csv/.json/.npz/.parquet; without -o and -l (or with -l -) "
                                                 "the faces are printed as JSON on stdout."),
    single_pass: bool = typer.Option(False, "--single-pass", help="One whole-image detector pass (fast, as in video) "
                                     "instead of photo mode's tiles and rolled passes: misses small and rolled faces."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    ellipses: bool = typer.Option(False, "--ellipses", help="Draw uncertainty ellipses."),
    pose: bool = typer.Option(False, "--pose", help="Draw each face's head axes."),
    tracker_options: TrackerOptions = TrackerOptions(),
) -> None:
    """Landmarks of every face in a single image (photo mode: small and rolled faces too; by default with the most
    precise bundled model and flip averaging)."""
    to_stdout = landmarks_out is not None and str(landmarks_out) == STDOUT or (out is None and landmarks_out is None)
    if to_stdout:
        landmarks_out = None
    from ...draw import draw_faces
    from ...io.claims import write_exclusive
    from ...io.images import jpeg_ends_early, read_image, write_image
    from ...io.landmarks import faces_document, open_landmark_writer
    from ...tracking.face import as_bgr

    with error_boundary(input):
        check_outputs(input, [(out, "image"), (landmarks_out, "landmarks")], overwrite)
        img = read_image(input)  # EXIF orientation applied: landmarks in display coordinates
        if jpeg_ends_early(input, img):
            typer.echo(f"star-track: warning: {input}: the file ends early (truncated or damaged?): its lower part "
                       "decoded as gray", err=True)
        max_faces = tracker_options.max_faces
        # The SDK's photo mode: the most precise bundled model unless --model names one (~16x the default's
        # engine time with flips: a photo can afford it).
        tracker = tracker_options.tracker(photo=True)
        with tracker:
            faces = tracker.detect_image(img, max_faces=max_faces, search="single" if single_pass else "photo")
        report_nonfinite(tracker, Path(input).name)
        if to_stdout:
            typer.echo(faces_document(faces, tracker.scheme, input))
        if landmarks_out is not None and landmarks_out.suffix.lower() == ".json":  # the same document as stdout
            write_exclusive(landmarks_out, (faces_document(faces, tracker.scheme, input) + "\n").encode(), overwrite)
        elif landmarks_out is not None:
            w = open_landmark_writer(landmarks_out, tracker.scheme.num_points, tracker.scheme.name, 0.0, overwrite)
            w.write(0, 0.0, faces)
            w.close()
        if out is not None:
            canvas = draw_faces(as_bgr(img).copy(), faces, tracker.scheme, ellipses=ellipses, pose=pose)
            write_image(out, canvas, overwrite)  # same name rules as every other output
    summary = f"{len(faces)} face(s) in {input}" + "".join(f"; wrote {p}" for p in (out, landmarks_out) if p)
    typer.echo(summary, err=to_stdout)  # stdout holds only the JSON then
