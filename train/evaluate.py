"""Evaluate a checkpoint on an annotation file: NME / FR / AUC overall and per subset, beside the paper."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from star_track.nn.network import StarNet
from star_track.model.schemes import get_scheme

from .annotations import read_annotations
from .dataset import FaceCropDataset
from .metrics import plot_ced, summarize
from .trainer import evaluate_model

# STAR_SPEC section 6 (NME in %, FR@10 in %, AUC@10).
PAPER = {
    "wflw98": {"fullset": (4.02, 2.32, 0.605)},
    "300w68": {"full": (2.87, None, None), "common": (2.52, None, None), "challenge": (4.32, None, None)},
    "cofw29": {"fullset": (4.62, None, None)},
}


def load_network(path: str | Path, use_ema: bool = True, device: str = "cpu") -> StarNet:
    """A StarNet from one of our training checkpoints (``last.pt`` / ``best.pt``), EMA weights by default."""
    from star_track.nn.checkpoint import load_checkpoint

    net, _ = load_checkpoint(path, prefer_ema=use_ema)
    return net.to(device)


def per_face_nme(net: StarNet, faces: list, image_root: str | Path, norm: str = "inter_ocular",
                 device: str = "cpu") -> np.ndarray:
    """Per-face NME of ``net`` on ``faces``: crops framed from their labels, no augmentation, errors in original
    image pixels."""
    dataset = FaceCropDataset(faces, image_root, get_scheme(net.config.scheme), net.config.input_size, None,
                              with_targets=False)
    return evaluate_model(net, dataset, torch.device(device), norm)


def evaluate(checkpoint: str | Path, annotations: str | Path, image_root: str | Path, norm: str = "inter_ocular",
             threshold: float = 0.1, ced_path: str | Path | None = None) -> dict[str, dict]:
    """Metrics per subset (``fullset`` plus each attribute present). NME is in original image pixels."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = load_network(checkpoint, device=device)
    faces = read_annotations(annotations)
    nme = per_face_nme(net, faces, image_root, norm, device)
    results = {"fullset": summarize(nme, threshold)}
    for attr in sorted({a for f in faces for a in f.attributes}):
        mask = np.array([attr in f.attributes for f in faces])
        results[attr] = summarize(nme[mask], threshold)
    if ced_path:
        plot_ced({Path(checkpoint).stem: nme}, ced_path, threshold)
    return results


def print_results(results: dict[str, dict], scheme: str, threshold: float) -> None:
    from rich.console import Console
    from rich.table import Table

    paper = PAPER.get(scheme, {})
    t = Table(title=f"{scheme}: ours vs paper (NME %, FR@{threshold:g} %, AUC@{threshold:g})")
    for col in ("subset", "faces", "NME", "FR", "AUC", "paper NME", "paper FR", "paper AUC"):
        t.add_column(col, justify="right")
    for name, r in results.items():
        p = paper.get(name, (None, None, None))
        t.add_row(name, str(r["count"]), f"{100 * r['nme']:.2f}", f"{100 * r[f'fr@{threshold:g}']:.2f}",
                  f"{r[f'auc@{threshold:g}']:.3f}", *("-" if v is None else str(v) for v in p))
    Console().print(t)
