"""A batch from start to end: :func:`plan` (inputs -> one :class:`~star_track.run.batch.task.VideoTask` per
video, unique output names), then :func:`run_batch` (lock the output folder, compact the manifest, skip the
videos that are done, refuse to replace the user's files, run the rest on a process pool or Ray)."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ... import __version__
from ...errors import OutputError, StarTrackError, VideoError
from ...hashing import sha256_file
from ...io.claims import clean_stale_partials
from ...io.landmarks import FORMATS as LANDMARK_FORMATS
from ...io.landmarks import require_pyarrow
from ...model.registry import resolve_model
from ...smoothing import default_lookahead
from ...tracking.arguments import usable_cores
from ..progress import progress_bar
from ..signals import StopFlag
from .inputs import as_input_list, find_videos, mirror_paths
from .manifest import (MANIFEST, append_manifest, is_complete, output_lock, read_manifest, recorded_outputs, warn,
                       write_manifest)
from .pool import run_pool
from .ray import connect_ray, run_ray
from .task import VideoTask, failed_row

FORMATS = tuple(ext[1:] for ext in LANDMARK_FORMATS)
"""``landmarks_format`` values: ``csv``, ``json``, ``npz``, ``parquet``."""


class BatchRows(list):
    """The rows :func:`run_batch` returns (a list of dicts), plus :attr:`signal`: the SIGINT/SIGTERM that
    stopped the batch early, else None."""

    signal: int | None = None

    @property
    def failed(self) -> list[dict]:
        """The rows of the videos that failed."""
        return [r for r in self if r["status"] == "failed"]


def settings_hash(tracker_kwargs: dict[str, Any], landmarks_format: str, video_options: dict[str, Any] | None,
                  ) -> str:
    """A short hash of everything that changes the outputs: the model file's bytes, the detector (file bytes
    when a path), the tracker options, the output format and the annotated-video options, star-track's
    version."""
    kw = dict(tracker_kwargs)
    model = resolve_model(kw.pop("model", None))
    kw["model_sha256"] = sha256_file(model)
    det = kw.get("detector", "full")
    if det not in ("full", "short") and Path(str(det)).is_file():
        kw["detector"] = sha256_file(det)
    payload = {"tracker": kw, "format": landmarks_format, "video": video_options, "version": __version__}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_workers(threads: int | None = None) -> int:
    """Usable cores // the engine's threads per worker (at least 1): the CPU used fully, not oversubscribed."""
    return max(1, usable_cores() // max(1, threads or 1))


def plan(inputs: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
         landmarks_format: str = "csv", annotated_video: bool = False, settings: str = "",
         tracker_kwargs: dict[str, Any] | None = None, video_options: dict[str, Any] | None = None,
         exclude: Iterable[str] = ()) -> list[VideoTask]:
    """The tasks of a batch: one per input video, outputs under ``out_dir`` mirroring the input tree.

    Folder and glob searches never take the batch's own outputs as inputs: ``out_dir`` (when it is inside a
    searched folder) and the paths in ``exclude`` (the outputs its manifest records) are left out."""
    out = Path(os.path.abspath(out_dir))
    videos = find_videos(inputs, out_dir=out, exclude=exclude)
    tasks: list[VideoTask] = []
    # Output names are unique (case-folded, for case-insensitive file systems) and never an input's name:
    # a.mp4 -> a.csv; then a.mkv -> a.mkv.csv; then a.mkv.mp4 (its stem a.mkv is taken) -> a.mkv.mp4.csv; then
    # NAME.2.csv, NAME.3.csv, ...
    taken = {os.path.abspath(v).casefold() for v, _ in videos}
    for (video, _), rel in zip(videos, mirror_paths(videos)):
        base = out / rel.parent
        for stem in itertools.chain((rel.stem, rel.name), (f"{rel.name}.{n}" for n in itertools.count(2))):
            outputs = {"landmarks": str(base / f"{stem}.{landmarks_format}")}
            if annotated_video:
                outputs["video"] = str(base / f"{stem}.annotated.mp4")
            if not any(p.casefold() in taken for p in outputs.values()):
                break
        taken.update(p.casefold() for p in outputs.values())
        tasks.append(VideoTask(str(video), outputs, settings, dict(tracker_kwargs or {}), dict(video_options or {})))
    return tasks


def tracker_defaults(tracker_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """A batch's Tracker arguments: ``tracker_kwargs`` with, unless given, 1 engine thread (one per worker) and,
    with face smoothing, the recorded-video look-ahead (:data:`~star_track.smoothing.RECORDED_LOOKAHEAD`, as
    ``star-track video``)."""
    kwargs = {"threads": 1, **(tracker_kwargs or {})}
    kwargs.setdefault("lookahead", default_lookahead(str(kwargs.get("smoothing", "face"))))
    return kwargs


def run_batch(inputs: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
              workers: int | None = None,
              ray_address: str | None = None, tracker_kwargs: dict[str, Any] | None = None,
              landmarks_format: str = "csv", annotated_video: bool = False,
              video_options: dict[str, Any] | None = None, max_retries: int = 2, num_gpus: float | None = None,
              on_result: Callable[[dict], Any] | None = None, progress: bool = False,
              on_warning: Callable[[str], Any] | None = None, ray_timeout: float = 30.0) -> BatchRows:
    """Track every video in ``inputs`` into ``out_dir``; return the manifest rows (skipped videos included).

    Args:
        inputs: files, folders, glob patterns, ``.txt``/``.csv`` lists of paths (:func:`find_videos`); one str
            or PathLike is one input.
        out_dir: output folder (created); outputs mirror the input tree, plus ``manifest.jsonl``.
        workers: local worker processes (default :func:`default_workers`; at most :func:`usable_cores`, with a
            warning); with Ray, the CPUs of a local runtime started here.
        ray_address: run on Ray: ``"local"`` (a runtime started here, or the one already initialised in this
            process), ``"auto"`` (the running cluster, e.g. inside ``ray job submit``) or ``"ray://host:10001"``.
        tracker_kwargs: keyword arguments of :class:`~star_track.tracking.tracker.Tracker` (:func:`tracker_defaults`).
        landmarks_format: ``csv``, ``json``, ``npz`` or ``parquet``.
        annotated_video: also write ``NAME.annotated.mp4``; ``video_options``: ``codec``, ``crf``, ``preset``,
            ``audio`` (copy the input's audio, default True), ``draw`` (default True), ``ellipses``.
        max_retries: Ray's retries of a task whose worker died; locally, a video whose worker process died is
            tried once more.
        ray_timeout: seconds to wait for the cluster at ``ray_address`` to answer (:func:`check_ray_address`).
        num_gpus: GPUs each Ray task requests (default: 1 for the ``tensorrt`` and ``torch`` engines, else 0).
        on_result: called with each new row as it arrives (the CLI's progress bar).
        progress: show a progress bar over videos on stderr (on a terminal).
        on_warning: called with each one-line warning (a bad manifest line, ...); default: a
            :class:`BatchWarning`.

    Raises:
        StarTrackError: bad settings (unknown format, missing model), no video found, another batch is using
            ``out_dir``, ray not installed. Problems with single videos are rows, never exceptions.
    """
    inputs = as_input_list(inputs)
    workers = _checked_workers(workers, on_warning)
    if landmarks_format not in FORMATS:
        raise OutputError(f"unsupported landmarks format {landmarks_format!r} (use {', '.join(FORMATS)})")
    if landmarks_format == "parquet":
        require_pyarrow("--landmarks-format parquet")
    kwargs = tracker_defaults(tracker_kwargs)
    _note_uncalibrated(kwargs.get("model"), on_warning)
    vopts = {"audio": True, "draw": True, "ellipses": False, **(video_options or {})} if annotated_video else {}
    settings = settings_hash(kwargs, landmarks_format, vopts or None)
    out = Path(os.path.abspath(out_dir))
    # Outputs of earlier runs (when out_dir is, or is inside, an input folder) are not inputs; read again, with
    # warnings, under the lock.
    recorded = recorded_outputs(read_manifest(out, lambda _: None)) if out.is_dir() else set()
    tasks = plan(inputs, out, landmarks_format=landmarks_format, annotated_video=annotated_video,
                 settings=settings, tracker_kwargs=kwargs, video_options=vopts, exclude=recorded)
    if not tasks:
        raise VideoError(f"no videos found in {', '.join(map(str, inputs)) or '(no inputs)'}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    run = _Run(workers=workers, ray_address=ray_address, max_retries=max_retries, num_gpus=num_gpus,
               on_result=on_result, progress=progress, on_warning=on_warning, ray_timeout=ray_timeout)
    with output_lock(out):
        return _run_locked(tasks, out, run)


def _note_uncalibrated(model: Any, on_warning: Callable[[str], Any] | None) -> None:
    """The Tracker's note about a model without uncertainty calibration, once for the batch (each worker's own is
    silenced); nothing here for a model ONNX Runtime cannot read (its videos fail with the reason)."""
    from ...engines.onnxruntime_engine import OnnxRuntimeEngine
    from ...model.schemes import get_scheme
    from ...uncertainty import UncertaintyCalibration, uncalibrated_note

    try:
        meta = OnnxRuntimeEngine(resolve_model(model), providers=["CPUExecutionProvider"], threads=1).meta
    except (StarTrackError, ValueError):
        return
    if not UncertaintyCalibration.from_meta(meta, get_scheme(meta.scheme).num_points).fitted:
        warn(uncalibrated_note(meta.name), on_warning)


def _checked_workers(workers: int | None, on_warning: Callable[[str], Any] | None) -> int | None:
    """``workers`` validated and capped at the usable cores (more processes only add memory and switching)."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    cores = usable_cores()
    if workers > cores:
        warn(f"{workers} workers asked for, but {cores} cores are usable: using {cores}", on_warning)
        return cores
    return workers


@dataclass(frozen=True)
class _Run:
    """How :func:`run_batch` runs its tasks (its arguments beyond the inputs and outputs)."""

    workers: int | None
    ray_address: str | None
    max_retries: int
    num_gpus: float | None
    on_result: Callable[[dict], Any] | None
    progress: bool
    on_warning: Callable[[str], Any] | None
    ray_timeout: float


def _triage(tasks: list[VideoTask], previous: dict[str, dict], out: Path
            ) -> tuple[dict[str, dict], list[VideoTask], list[dict]]:
    """Split ``tasks`` into the done ones (their ``skipped`` rows), the ones to run, and the refused ones (a
    file the manifest does not record is the user's: `batch d --out-dir d` beside d/talk.csv is never
    replaced)."""
    owned = recorded_outputs(previous)
    skipped: dict[str, dict] = {}
    pending: list[VideoTask] = []
    refused: list[dict] = []
    for t in tasks:
        if is_complete(previous.get(t.input), t):
            skipped[t.input] = {**previous[t.input], "status": "skipped"}
            continue
        foreign = [p for p in t.outputs.values() if os.path.lexists(p) and os.path.abspath(p) not in owned]
        if foreign:
            row = failed_row(t, f"{foreign[0]}: exists and is not an output recorded in {out / MANIFEST}; not "
                                "replaced (move it away, or choose another --out-dir)")
            row["claimed"] = {k: p for k, p in t.outputs.items() if os.path.abspath(p) in owned}
            refused.append(row)
        else:
            pending.append(t)
    return skipped, pending, refused


def _run_locked(tasks: list[VideoTask], out: Path, run: _Run) -> BatchRows:
    previous = read_manifest(out, run.on_warning)
    write_manifest(out, previous.values())  # compacted: one row per input
    for folder in {Path(p).parent for t in tasks for p in t.outputs.values()}:
        clean_stale_partials(folder)
    results, pending, refused = _triage(tasks, previous, out)
    rows = BatchRows()
    # Ray is connected before the batch defers Ctrl-C (StopFlag), so a connection that waits can be interrupted.
    ray_started = False
    if pending and run.ray_address:
        ray_started = connect_ray(run.ray_address, run.workers or default_workers(), run.ray_timeout)
    try:
        with open(out / MANIFEST, "a", encoding="utf-8") as manifest, StopFlag() as stop, \
                progress_bar(run.progress, len(tasks), "videos", ["{task.fields[frames]} frames",
                             "{task.fields[failed]} failed"], completed=len(results), frames=0, failed=0) as bar:
            # Claimed before any worker writes: a batch killed after an output's rename, before its row, still
            # knows the file as its own on the next run.
            append_manifest(manifest, *({"input": t.input, "outputs": {}, "claimed": dict(t.outputs),
                                         "status": "started", "error": None, "settings": t.settings,
                                         "finished": None} for t in pending))
            totals = {"frames": 0, "failed": 0}

            def record(row: dict) -> None:
                results[row["input"]] = row
                if row["status"] in ("ok", "failed"):
                    append_manifest(manifest, row)
                totals["frames"] += int(row.get("frames") or 0)
                totals["failed"] += row["status"] == "failed"
                bar(**totals)
                if run.on_result is not None:
                    run.on_result(row)

            for row in refused:
                record(row)
            if pending and run.ray_address:
                run_ray(pending, run.max_retries, run.num_gpus, record, stop)
            elif pending:
                run_pool(pending, run.workers or default_workers(pending[0].tracker_kwargs.get("threads")), record,
                         stop)
            rows.signal = stop.signum
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    rows.extend(results[t.input] for t in tasks if t.input in results)
    return rows
