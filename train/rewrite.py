"""``python -m train redecode`` and ``python -m train streamline``: rewrite an exported model in place (today's
decoding, :mod:`export.decoding`; the exact clean-ups of :mod:`export.streamline`), checked against the file it
replaces, and scale its card's CPU latency by the two graphs' times in one interleaved run."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

LATENCY = re.compile(r"^(\| CPU latency \| )([\d.]+)( ms per face.*?)( \|)$", re.M)
SIZE = re.compile(r"^(\| file \| `[^`]+`, )[\d.]+( MB)", re.M)


def redecode(model: Path) -> dict:
    """Swap ``model``'s decoding for the moments one (see :func:`rewrite_in_place`)."""
    from export.decoding import swap_decoding

    return rewrite_in_place(model, swap_decoding, "with the decoding as moments (`python -m train redecode`")


def streamline(model: Path) -> dict:
    """Streamline ``model``'s graph (see :func:`rewrite_in_place`)."""
    from export import streamline as edits

    return rewrite_in_place(model, edits.streamline, "streamlined (`python -m train streamline`")


def rewrite_in_place(model: Path, edit: Callable[[Path, Path], object], label: str) -> dict:
    """Rewrite ``model`` with ``edit(src, out)`` in place (the original stays until the new graph reproduces its
    outputs) and update the card beside it (its latency row says what was done: ``label``); returns the check's
    differences and both times."""
    from export import graph_edit
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.engines.timing import synthetic_crops

    from .quantize_card import latency_ratio

    tmp = model.with_name(f"{model.stem}.rewrite.onnx")
    try:
        edit(model, tmp)
        crops = synthetic_crops(OnnxRuntimeEngine(model).meta.input_size, batch=8)
        diffs = graph_edit.verify_rewrite(tmp, model, crops)
        new_ms, old_ms = latency_ratio(tmp, model)
        tmp.replace(model)
    finally:
        tmp.unlink(missing_ok=True)
    card = model.with_suffix(".md")
    if card.is_file():
        update_card(card, new_ms, old_ms, model.stat().st_size, label)
    return {"model": str(model), **diffs, "ms_new": new_ms, "ms_old": old_ms}


def update_card(card: Path, new_ms: float, old_ms: float, size: int, label: str) -> None:
    """Scale the card's CPU latency by ``new_ms / old_ms``, keeping the earlier figure in that row, and give the
    file's new ``size`` (bytes)."""
    text = SIZE.sub(lambda m: f"{m.group(1)}{size / 1e6:.1f}{m.group(2)}", card.read_text())
    found = LATENCY.search(text)
    if found is None:
        card.write_text(text)
        return
    from .machine import cpu_name

    ms = float(found.group(2)) * new_ms / old_ms
    row = (f"{found.group(1)}{ms:.2f} ms per face {label}: {new_ms / old_ms:.2f}x the earlier graph's time in one "
           f"interleaved run on {cpu_name()}, {new_ms:.2f} vs {old_ms:.2f} ms); the earlier graph: "
           f"{found.group(2)}{found.group(3)}{found.group(4)}")
    card.write_text(text[:found.start()] + row + text[found.end():])
