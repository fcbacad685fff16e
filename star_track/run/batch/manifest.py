"""The batch's record, ``manifest.jsonl`` in the output folder: one JSON row per video (the latest row of an
input wins), read forgivingly (bad lines are warnings), rewritten atomically, appended with fsync; what it says
decides which videos are done (:func:`is_complete`) and which files are the batch's own."""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from ...errors import OutputError
from ...hashing import sha256_file
from ...io.claims import partial_path
from .task import VideoTask

MANIFEST = "manifest.jsonl"
"""The manifest's file name in the output folder."""


class BatchWarning(UserWarning):
    """A problem :func:`run_batch` worked around (a bad manifest line, --workers above the cores)."""


def warn(message: str, on_warning: Callable[[str], Any] | None) -> None:
    """Pass a one-line warning to ``on_warning``, or issue it as a :class:`BatchWarning` when that is None."""
    if on_warning is not None:
        on_warning(message)
    else:
        warnings.warn(message, BatchWarning, stacklevel=3)


def _bad_row(row: Any) -> str | None:
    """Why a parsed manifest line is not a usable row (None when it is)."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    if not isinstance(row.get("input"), str) or not row["input"]:
        return 'no "input" path'
    if not isinstance(row.get("status"), str):
        return 'no "status"'
    for key in ("outputs", "claimed"):
        recs = row.get(key, {})
        if not isinstance(recs, dict):
            return f'"{key}" is not an object'
        for rec in recs.values():
            path = rec.get("path") if isinstance(rec, dict) and key == "outputs" else rec
            if not isinstance(path, str):
                return f'"{key}" holds a path that is not a string'
    try:
        json.dumps(row, allow_nan=False)
    except ValueError:
        return "a NaN or infinite number"
    return None


def read_manifest(out_dir: str | os.PathLike, on_warning: Callable[[str], Any] | None = None) -> dict[str, dict]:
    """The latest manifest row per input (absolute path) in ``out_dir/manifest.jsonl``.

    A line that is not a manifest row (not JSON, not UTF-8, not an object with an ``input`` path and a
    ``status``) is ignored with a warning naming the file and line (``on_warning``, else
    :class:`BatchWarning`); the next run's compaction drops it. A torn last line (a killed run) is ignored
    silently.
    """
    rows: dict[str, dict] = {}
    path = Path(out_dir) / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return rows
    except IsADirectoryError:
        raise OutputError(f"{path}: is a folder, not the batch's manifest") from None
    except OSError as e:
        raise OutputError(f"{path}: cannot read the manifest ({e.strerror or e})") from None
    lines = data.split(b"\n")
    bad = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            why = _bad_row(row)
        except UnicodeDecodeError:
            why = "not UTF-8 text"
        except ValueError:
            why = "not JSON"
        if why is None:
            rows[row["input"]] = row
        elif number < len(lines):  # the last piece has no newline: a torn line, not garbage
            bad.append(f"{path}:{number}: {why}")
    for message in bad[:5]:
        warn(f"{message}; line ignored", on_warning)
    if len(bad) > 5:
        warn(f"{path}: {len(bad) - 5} more bad line(s) ignored", on_warning)
    return rows


def write_manifest(out_dir: Path, rows: Iterable[dict]) -> None:
    """Rewrite the manifest atomically (temp + rename)."""
    path = out_dir / MANIFEST
    tmp = partial_path(out_dir / MANIFEST)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"{path}: cannot write the manifest ({e.strerror or e})") from None


def append_manifest(f: IO[str], *rows: dict) -> None:
    """Append ``rows`` to the open manifest and fsync it (a row is on disk before the batch goes on)."""
    if not rows:
        return
    f.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))
    f.flush()
    os.fsync(f.fileno())


def recorded_outputs(rows: dict[str, dict]) -> set[str]:
    """Every output path the manifest records as the batch's own (written, or claimed before writing)."""
    paths: set[str] = set()
    for row in rows.values():
        paths.update(rec["path"] for rec in (row.get("outputs") or {}).values())
        paths.update((row.get("claimed") or {}).values())
    return {os.path.abspath(p) for p in paths}


def is_complete(row: dict | None, task: VideoTask) -> bool:
    """True when ``row`` shows ``task`` done with the same settings and input, and every output is on disk
    with the recorded size and sha256."""
    if not row or row.get("status") != "ok" or row.get("settings") != task.settings:
        return False
    try:
        st = os.stat(task.input)
    except OSError:
        return False
    if (row.get("input_bytes"), row.get("input_mtime_ns")) != (st.st_size, st.st_mtime_ns):
        return False
    outs = row.get("outputs") or {}
    if set(outs) != set(task.outputs):
        return False
    for kind, final in task.outputs.items():
        rec = outs[kind]
        if rec.get("path") != final:
            return False
        try:
            if os.stat(final).st_size != rec.get("bytes") or sha256_file(final) != rec.get("sha256"):
                return False
        except OSError:
            return False
    return True


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder."""
    try:
        f = open(out_dir / ".batch.lock", "w")
    except OSError as e:  # a read-only folder, a full disk: say which folder, not the lock file's OSError
        raise OutputError(f"{out_dir}: cannot write in the output folder ({e.strerror or e})") from None
    try:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no lock
            pass
        except OSError:
            raise OutputError(f"{out_dir}: another star-track batch is writing this folder") from None
        yield
    finally:
        f.close()
