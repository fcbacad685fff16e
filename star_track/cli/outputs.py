"""What the ``video``, ``webcam`` and ``image`` commands share about their outputs: checked before any work, all
closed even when one fails, and the one-line notes about the run."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import OutputError
from ..io.claims import input_paths, same_file
from .exits import fail

STDOUT = "-"
"""``--landmarks-out -``: landmarks to stdout (CSV for video, JSON for image)."""


def check_outputs(input: str, outputs: list[tuple[Optional[Path], str]], overwrite: bool) -> None:
    """Validate every output (kind ``video``, ``image`` or ``landmarks``) before any work or any write."""
    from ..io.images import check_image_output  # here: OpenCV and PyAV are not loaded for --help
    from ..io.landmarks import check_landmarks_path
    from ..io.sink import check_video_output

    checks = {"video": check_video_output, "image": check_image_output, "landmarks": check_landmarks_path}
    sources = input_paths(input)  # a file: URL names a local file too
    given = [(p, kind) for p, kind in outputs if p is not None and str(p) != STDOUT]
    for p, kind in given:
        checks[kind](p, overwrite)
        # Checked even with --overwrite: replacing the input would destroy it (it is read while writing). The
        # same file by device and inode: a hard link or another spelling of the path counts.
        if any(same_file(p, src) for src in sources):
            raise OutputError(f"{p}: output would overwrite the input")
    if len(given) == 2 and (os.path.realpath(given[0][0]) == os.path.realpath(given[1][0])
                            or same_file(given[0][0], given[1][0])):
        raise OutputError(f"{given[0][0]}: --out and --landmarks-out are the same file")


def check_encoding(video: Optional[Path], needs: str, codec: str | None, crf: int | None, preset: str | None) -> None:
    """``--codec``/``--crf``/``--preset`` checked before any work: without an output video (``needs`` names the
    option that gives one) or with a setting the codec does not take, a usage error (exit 2)."""
    used = [n for n, v in (("--codec", codec), ("--crf", crf), ("--preset", preset)) if v is not None]
    if not used:
        return
    if video is None:
        raise fail(f"{' and '.join(used)} set the output video's encoding: give {needs} too (or leave them out)", 2)
    from ..errors import VideoError
    from ..io.av_video import encoder_options
    from ..io.sink import sink_codec

    try:
        encoder_options(sink_codec(video, codec), crf, preset)
    except VideoError as e:
        raise fail(str(e), 2) from None


def close_all(*outputs: Any) -> None:
    """Close every output even when one of them fails (the first failure is raised after all are closed)."""
    first: Exception | None = None
    for out in outputs:
        if out is None:
            continue
        try:
            out.close()
        except Exception as e:  # noqa: BLE001 - re-raised below
            first = first or e
    if first is not None:
        raise first


def report_nonfinite(tracker: Any, subject: str) -> None:
    """One warning line when the model's output was NaN/inf for some faces (they were left out)."""
    n = getattr(tracker, "nonfinite_faces", 0)
    if n:
        typer.echo(f"star-track: warning: {subject}: {n} face(s) left out: the model returned non-finite "
                   "landmarks", err=True)
