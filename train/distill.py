"""Distillation data for a fast student: every face we have, labelled by a teacher where no label exists.

Sources (all under the shared data folder):

- the labelled training faces (true labels, 68 points: every WFLW face on a training photo, test-split and
  train-split, since ``shared/data`` has the WFLW train labels; the former ``wflw_unlabeled`` photos are among
  them, so no WFLW photo is pseudo-labelled any more);
- the 300W photos (``300w``), labelled by the *teacher* so the student learns one 68-point convention (the
  300W labels themselves follow a different one; see the model card). Images of the fixed by-image held-out
  split (:func:`train.prepare.is_w300_validation_image`) are left out, so a later 300W held-out figure stays clean;
- frames of the talking-head clips (``videos``, every ``frame_step``-th frame, written as JPEG under ``out``).

The teacher runs through the SDK with flip averaging (:func:`train.pseudo_label.pseudo_label`); the student is
then trained with the STAR loss on the union, so its targets are the teacher's landmarks where there is no
label and the true landmarks where there are.
"""
from __future__ import annotations

from pathlib import Path

from .annotations import FaceAnnotation, write_annotations
from .prepare import is_w300_validation_image
from .pseudo_label import pseudo_label


def extract_frames(videos: Path, out: Path, frame_step: int = 5) -> int:
    """Every ``frame_step``-th frame of each ``videos/*.mp4`` as ``out/<clip>/<index>.jpg``; returns the count."""
    import cv2

    from star_track import VideoSource

    count = 0
    for clip in sorted(videos.glob("*.mp4")):
        target = out / clip.stem
        target.mkdir(parents=True, exist_ok=True)
        with VideoSource(clip) as source:
            for frame in source:
                if frame.index % frame_step == 0:
                    cv2.imwrite(str(target / f"{frame.index:05d}.jpg"), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                    count += 1
    return count


SOURCES = ("300w", "video_frames")
"""Every source the teacher labels, in order: the 300W photos, the clip frames. (The former ``wflw_unlabeled``
photos are labelled WFLW training photos now: their faces come with ``labelled``.)"""


def build_distillation_set(teacher: str | Path, data_root: Path, labelled: list[FaceAnnotation], out: Path,
                           work_dir: Path = Path("data/distill"), frame_step: int = 5,
                           sources: tuple[str, ...] = SOURCES) -> dict[str, int]:
    """Write ``out`` (.jsonl): the ``labelled`` faces plus teacher labels for each of ``sources`` (leave out
    "300w" when its labels are among ``labelled``); returns the number of faces per source. Image paths are
    relative to ``data_root / "wflw"`` (the training image root)."""
    root = data_root / "wflw"
    faces: list[FaceAnnotation] = list(labelled)
    counts = {"labelled": len(faces)}
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown distillation source(s) {sorted(unknown)} (known: {', '.join(SOURCES)})")
    folders = {"300w": data_root / "300w"}
    videos = data_root / "videos"
    if "video_frames" in sources and videos.is_dir():
        frames = work_dir.resolve() / "frames"
        extract_frames(videos, frames, frame_step)
        folders["video_frames"] = frames
    for name in sources:
        folder = folders.get(name)
        if folder is None or not folder.is_dir():
            counts[name] = 0
            continue
        found = pseudo_label(teacher, folder, relative_to=root)
        if name == "300w":
            found = [f for f in found if not is_w300_validation_image(_relative_to_300w(f.image))]
        for f in found:
            f.extra["source"] = name
        counts[name] = len(found)
        faces += found
    write_annotations(faces, out)
    return counts


def _relative_to_300w(image: str) -> str:
    """``../300w/afw/x.jpg`` (relative to the wflw root) -> ``afw/x.jpg``, the path relative to the 300W root
    (:func:`train.prepare.w300_split_key` makes it ``300w/afw/x.jpg``, the key the split hashes)."""
    parts = Path(image).parts
    if len(parts) < 3 or parts[:2] != ("..", "300w"):
        raise ValueError(f"{image!r} is not a 300W photo relative to the WFLW root (../300w/...)")
    return str(Path(*parts[2:]))
