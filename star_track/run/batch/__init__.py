"""Batch processing: many videos, every core, or a Ray cluster; resumable, idempotent, one manifest.

:func:`run_batch` (and ``star-track batch``) runs :func:`~star_track.run.loop.process_video` once per input
video and writes, under ``out_dir`` mirroring the input tree, ``NAME.<format>`` (landmarks) and, when asked,
``NAME.annotated.mp4``, plus one JSON line per video in ``out_dir/manifest.jsonl``.

* **Resumable and idempotent.** A video is skipped when the manifest's latest row for it says ``ok`` with the
  same settings hash (model file, tracker options, output format and options, star-track version), the input
  has the same size and modification time, and every output is there with the size and sha256 the row
  recorded (checked, not assumed). Anything else is redone and its outputs replaced.
* **Atomic.** Each output is written to a hidden ``.NAME.partial-PID.EXT`` beside its final name (the writers'
  own partial files inside it) and renamed into place only when the whole video is done; the manifest row is
  appended (and fsync'd) after that. A batch killed at any point leaves complete outputs or none under final
  names; partial files of dead processes are removed by the next run
  (:func:`~star_track.io.claims.clean_stale_partials`).
* **Failure isolation.** An unreadable or corrupt video is a ``failed`` row with a one-line ``error`` and the
  batch goes on; a worker process that dies (a crash in native code) is replaced and its video tried again
  once, then recorded as failed.
* **Parallelism.** ``workers`` processes (default: the usable cores divided by the engine's threads, i.e. N
  workers x 1 ONNX Runtime thread), each with one :class:`~star_track.tracking.tracker.Tracker` built once and reused
  (reset per video). ``ray_address`` runs the same per-video task (:func:`~star_track.run.batch.task.run_task`) as Ray tasks instead:
  Ray does placement, retries (``max_retries``) and back-pressure.
* **Never the user's files.** An existing output file the manifest does not record (written or claimed) is
  never replaced: that video is a failed row saying so. The batch's own outputs are never inputs.

Manifest rows (``manifest.jsonl``, one JSON object per line; the latest row of an input wins, and the file is
compacted to one row per input at the start of each run): ``input``, ``outputs`` (kind -> ``{"path", "bytes",
"sha256"}``), ``frames``, ``frames_with_faces``, ``face_records``, ``max_faces``, ``video_seconds``, ``seconds``,
``status`` (``ok``, ``failed``, ``interrupted``; :func:`run_batch` also returns ``skipped`` rows, which are not
written; ``started`` rows are written before a video is dispatched), ``error``, ``settings`` (hash),
``input_bytes``, ``input_mtime_ns``, ``worker`` (host:pid), ``finished`` (UTC ISO time), ``claimed`` (kind ->
output path the batch owns).

The modules: :mod:`.inputs` (which videos, where their outputs go), :mod:`.task` (one video), :mod:`.manifest`,
:mod:`.pool` (local processes), :mod:`.ray`, :mod:`.report` (the summary table) and :mod:`.runner`
(:func:`plan`, :func:`run_batch`).
"""
from __future__ import annotations

from .inputs import LIST_EXTENSIONS, VIDEO_EXTENSIONS, find_videos
from .manifest import MANIFEST, BatchWarning, is_complete, read_manifest
from .ray import CLUSTER_HINT, check_ray_address
from .report import summary_table
from .runner import FORMATS, BatchRows, default_workers, plan, run_batch, settings_hash
from .task import VideoTask, run_task

__all__ = ["BatchRows", "BatchWarning", "CLUSTER_HINT", "FORMATS", "LIST_EXTENSIONS", "MANIFEST", "VIDEO_EXTENSIONS",
           "VideoTask", "check_ray_address", "default_workers", "find_videos", "is_complete", "plan", "read_manifest",
           "run_batch", "run_task", "settings_hash", "summary_table"]
