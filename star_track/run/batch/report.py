"""What a batch did, for people: the summary table ``star-track batch`` prints."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def summary_table(rows: Sequence[dict], max_rows: int = 30):
    """A rich Table: one line per video that is not plain ``ok``/``skipped`` (and all when there are few),
    then the totals."""
    from rich.table import Table

    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    table = Table(title="star-track batch", show_lines=False)
    for col, just in (("video", "left"), ("status", "left"), ("frames", "right"), ("with faces", "right"),
                      ("blinks", "right"), ("seconds", "right"), ("note", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    shown = list(rows) if len(rows) <= max_rows else [r for r in rows if r["status"] not in ("ok", "skipped")
                                                      or (r["frames"] and not r["frames_with_faces"])]
    style = {"ok": "green", "skipped": "dim", "failed": "red", "interrupted": "yellow"}
    for r in shown[:max_rows]:
        note = r.get("error") or ("no face found" if r.get("frames") and not r.get("frames_with_faces") else "")
        table.add_row(Path(r["input"]).name, f"[{style.get(r['status'], '')}]{r['status']}",
                      str(r.get("frames", 0)), str(r.get("frames_with_faces", 0)), _blinks(r),
                      f"{r.get('seconds', 0):.1f}", note)
    if len(shown) > max_rows:
        table.add_row(f"... {len(shown) - max_rows} more (see the manifest)", "", "", "", "", "", "")
    video_s = sum(r.get("video_seconds") or 0 for r in rows if r["status"] == "ok")
    table.caption = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + \
        f"; {video_s:.1f} s of video processed"
    return table


def _blinks(row: dict) -> str:
    """Blinks per track (``#0 3, #1 1``), ``0`` when none, blank for a row without the count (an older run)."""
    blinks = row.get("blinks")
    if blinks is None:
        return ""
    return ", ".join(f"#{k} {n}" for k, n in blinks.items()) or "0"
