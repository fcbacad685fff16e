"""Shape basis of the face-level smoother (:mod:`star_track.smoothing.face_level`): mean shape and region-wise
PCA modes of the training faces, for 68 (300W) and 98 (WFLW) points.

Training shapes only: the 300W training faces and the WFLW faces (official train list and test-subset files)
on photos outside the fixed held-out split (:func:`train.prepare.is_w300_validation_image`,
:func:`train.prepare.is_wflw_validation_image`); WFLW's 98 points also give 68 by the scheme's reduction.
Shapes are aligned by generalized Procrustes (similarity) to their mean; the mean is centred, eyes level,
scaled to a landmark box of sqrt(w h) = 1 ("face size" units).

Modes are PCA **per facial region** (jaw, each brow, nose, each eye, mouth), each zero outside its region, so a
wink or an asymmetric smile is one or two modes rather than a mix of global ones. A region keeps the leading
modes that explain ``--keep`` of its variance. The similarity directions are not removed here (the smoother
projects them out at load time, which keeps the stored modes sparse and the file small).

    python -m train.shape_basis [--data ../shared/data] [--keep 0.97]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from star_track.model.schemes import W300_68, WFLW_98, LandmarkScheme

from .prepare import WFLW_TRAIN_LIST, is_w300_validation_image, is_wflw_validation_image
from .readers import read_300w, read_wflw_list, read_wflw_subsets

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "star_track" / "smoothing" / "shape_basis.npz"
REGIONS = {"jaw": ("contour",), "brow_a": ("brow_a",), "brow_b": ("brow_b",),
           "nose": ("nose_bridge", "nose_bottom"), "eye_a": ("eye_a",), "eye_b": ("eye_b",),
           "mouth": ("lip_outer", "lip_inner")}
"""Region -> the scheme edges it joins. Points on no edge (WFLW's pupils) join the eye they lie in."""


def training_shapes(data: Path) -> dict[int, np.ndarray]:
    """(F, N, 2) training shapes per point count (68, 98), held-out photos excluded."""
    w300 = [f.landmarks for f in read_300w(data / "300w", "train", skip_missing=True)
            if not is_w300_validation_image(f.image)]
    wflw_root = data / "wflw"
    wflw = read_wflw_list(wflw_root / WFLW_TRAIN_LIST, 98, "train") \
        + read_wflw_subsets(wflw_root / "WFLW_annotations" / "list_98pt_test")
    s98 = np.array([f.landmarks for f in wflw if not is_wflw_validation_image(f.image)], np.float64)
    return {68: np.concatenate([np.array(w300, np.float64), WFLW_98.reduce_to_68(s98)]), 98: s98}


def _similarity_to(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` (N, 2) mapped onto ``dst`` by the least-squares similarity."""
    s, d = src - src.mean(0), dst - dst.mean(0)
    n = float((s ** 2).sum())
    a = float((s * d).sum()) / n
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / n
    return s @ np.array([[a, -b], [b, a]]).T + dst.mean(0)


def normalise(mean: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """Centred, outer eye corners level, landmark box sqrt(w h) = 1."""
    m = mean - mean.mean(0)
    i, j = scheme.outer_eye_corners
    v = m[j] - m[i]
    c, s = v / np.linalg.norm(v)
    m = m @ np.array([[c, s], [-s, c]]).T
    w, h = np.ptp(m, axis=0)
    return m / np.sqrt(w * h)


def procrustes(shapes: np.ndarray, scheme: LandmarkScheme, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Generalized Procrustes: (aligned (F, N, 2), mean (N, 2) in face-size units)."""
    mean = normalise(shapes[0], scheme)
    for _ in range(iterations):
        aligned = np.stack([_similarity_to(x, mean) for x in shapes])
        mean = normalise(aligned.mean(0), scheme)
    return aligned, mean


def region_of_points(scheme: LandmarkScheme) -> np.ndarray:
    """(N,) region index (into :data:`REGIONS`) of every point."""
    edges = {e.name: e.points for e in scheme.edges}
    region = np.full(scheme.num_points, -1)
    for r, names in enumerate(REGIONS.values()):
        for name in names:
            region[list(edges[name])] = r
    if scheme.pupils is not None:
        for p, eye in zip(scheme.pupils, ("eye_a", "eye_b")):
            region[p] = list(REGIONS).index(eye)
    if (region < 0).any():
        raise ValueError(f"{scheme.name}: points on no region: {np.flatnonzero(region < 0).tolist()}")
    return region


def region_modes(aligned: np.ndarray, mean: np.ndarray, region: np.ndarray, keep: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modes (K, N, 2) (unit norm, zero outside their region), their variances (K,) and region ids (K,)."""
    modes, var, rid = [], [], []
    dev = aligned - mean
    for r in range(int(region.max()) + 1):
        idx = np.flatnonzero(region == r)
        d = dev[:, idx].reshape(len(dev), -1)
        _, s, vt = np.linalg.svd(d - d.mean(0), full_matrices=False)
        ev = s ** 2 / len(d)
        k = int(np.searchsorted(np.cumsum(ev) / ev.sum(), keep) + 1)
        for j in range(k):
            m = np.zeros_like(mean)
            m[idx] = vt[j].reshape(-1, 2)
            modes.append(m)
            var.append(ev[j])
            rid.append(r)
    return np.stack(modes), np.array(var), np.array(rid)


def build(data: Path, keep: float) -> dict[str, np.ndarray]:
    """The arrays of ``shape_basis.npz``: ``mean_<N>``, ``modes_<N>``, ``var_<N>``, ``region_<N>``, ``faces_<N>``."""
    out: dict[str, np.ndarray] = {"regions": np.array(list(REGIONS))}
    for n, shapes in training_shapes(data).items():
        scheme = W300_68 if n == 68 else WFLW_98
        aligned, mean = procrustes(shapes, scheme)
        modes, var, rid = region_modes(aligned, mean, region_of_points(scheme), keep)
        out |= {f"mean_{n}": mean.astype(np.float32), f"modes_{n}": modes.astype(np.float16),
                f"var_{n}": var.astype(np.float32), f"region_{n}": rid.astype(np.int8),
                f"faces_{n}": np.array(len(shapes))}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--keep", type=float, default=0.97, help="variance share each region's modes keep")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    arrays = build(a.data, a.keep)
    np.savez_compressed(a.out, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly
    for n in (68, 98):
        per = np.bincount(arrays[f"region_{n}"], minlength=len(REGIONS))
        print(f"{n} points: {int(arrays[f'faces_{n}'])} training faces, {len(per.nonzero()[0])} regions, "
              f"{int(per.sum())} modes ({', '.join(f'{r} {k}' for r, k in zip(REGIONS, per))})")
    print(f"{a.out}: {a.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
