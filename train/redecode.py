"""``python -m train redecode``: give an exported model today's decoding (:mod:`export.decoding`), checked against
the file it replaces, and scale its card's CPU latency by the two graphs' times in one interleaved run."""
from __future__ import annotations

import re
from pathlib import Path

LATENCY = re.compile(r"^(\| CPU latency \| )([\d.]+)( ms per face.*?)( \|)$", re.M)
SIZE = re.compile(r"^(\| file \| `[^`]+`, )[\d.]+( MB)", re.M)


def redecode(model: Path) -> dict:
    """Swap ``model``'s decoding in place (the original stays until the new graph reproduces its outputs) and
    update the card beside it; returns the check's differences and both times."""
    from export.decoding import swap_decoding, verify_swap
    from star_track.engines.onnxruntime_engine import OnnxRuntimeEngine
    from star_track.engines.timing import synthetic_crops

    from .quantize_card import latency_ratio

    tmp = model.with_name(f"{model.stem}.redecode.onnx")
    try:
        swap_decoding(model, tmp)
        diffs = verify_swap(tmp, model, synthetic_crops(OnnxRuntimeEngine(model).meta.input_size, batch=8))
        new_ms, old_ms = latency_ratio(tmp, model)
        tmp.replace(model)
    finally:
        tmp.unlink(missing_ok=True)
    card = model.with_suffix(".md")
    if card.is_file():
        update_card(card, new_ms, old_ms, model.stat().st_size)
    return {"model": str(model), **diffs, "ms_new": new_ms, "ms_old": old_ms}


def update_card(card: Path, new_ms: float, old_ms: float, size: int) -> None:
    """Scale the card's CPU latency by ``new_ms / old_ms``, keeping the earlier figure in that row, and give the
    file's new ``size`` (bytes; the moment grid adds 24-55 kB)."""
    text = SIZE.sub(lambda m: f"{m.group(1)}{size / 1e6:.1f}{m.group(2)}", card.read_text())
    found = LATENCY.search(text)
    if found is None:
        return
    from .machine import cpu_name

    ms = float(found.group(2)) * new_ms / old_ms
    row = (f"{found.group(1)}{ms:.2f} ms per face with the decoding as moments (`python -m train redecode`: "
           f"{new_ms / old_ms:.2f}x the earlier graph's time in one interleaved run on {cpu_name()}, {new_ms:.2f} vs "
           f"{old_ms:.2f} ms); the earlier graph: {found.group(2)}{found.group(3)}{found.group(4)}")
    card.write_text(text[:found.start()] + row + text[found.end():])
