"""``star-track plot``: a run's landmark file (CSV, JSON, Parquet or NPZ) as one PNG report: per track over time,
the head angles, eye and mouth openness with the blinks marked, the expected error, and the frames without the
face (:mod:`star_track.analysis.plot`)."""
from __future__ import annotations

from pathlib import Path

import typer

from ..exits import error_boundary, fail


def plot(
    landmarks_file: Path = typer.Argument(..., help="A landmarks file written by star-track video/batch/image "
                                          "(.csv, .json, .parquet or .npz)."),
    out: Path = typer.Option(..., "--out", "-o", help="The report picture (.png)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report."),
) -> None:
    """Plot a run: head angles, eye and mouth openness with blinks, expected error, per track over time."""
    if out.suffix.lower() != ".png":
        raise fail(f"{out}: the report is a PNG picture: give --out NAME.png", 2)
    from ...analysis.plot import REPORT_COLUMNS, series_by_track, write_report
    from ...io.landmarks import read_landmarks
    from ...io.paths import check_output_path

    with error_boundary(str(landmarks_file)):
        if not landmarks_file.is_file():
            raise fail(f"{landmarks_file}: no such file")
        check_output_path(out, overwrite)
        rows = read_landmarks(landmarks_file)
        columns = {k: v for k, v in rows.items() if k in (*REPORT_COLUMNS, "track_id")}
        try:
            write_report(out, series_by_track(columns), frame_times=rows.get("frame_times"),
                         title=landmarks_file.name)
        except Exception as e:  # the report's own errors name no file: this one does
            raise fail(f"{landmarks_file}: {e}".replace(": plot: ", ": ")) from None
    typer.echo(f"wrote {out} ({len(set(rows['track_id'].tolist()))} track(s))")
