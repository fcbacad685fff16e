"""Replace the in-graph decoding of an exported model with today's :func:`~star_track.nn.network.decode_heatmaps_torch`.

Models exported before the decoding was written as moments carry some twenty elementwise operations over the
full heatmaps after the network; the current decoding needs three. Re-exporting would need the checkpoint and
would redo the shape correction and the quantization; this swaps only the decoding: the nodes between the last
stack's heatmaps and ``covariance`` / the landmarks (``landmarks_raw`` when a shape correction follows) are
removed, the decoding exported alone from the torch function (names prefixed ``decoding/``) takes their place,
and the heatmap tensor is named :data:`~star_track.model.meta.HEATMAP_TENSOR` (the FP16 conversion splits there).
Network weights, shape correction, metadata and outputs stay; :func:`~export.graph_edit.verify_rewrite` checks the outputs.
"""
from __future__ import annotations

from pathlib import Path

from star_track.model.meta import HEATMAP_TENSOR

from .graph_edit import module_graph, prefix_names, save_checked

PREFIX = "decoding/"
NET_PREFIX = "/net/"
"""Node-name prefix of the network (``StarInference.net``) in every exported graph."""


def has_moment_decoding(model) -> bool:
    """Whether an ONNX model (``onnx.ModelProto``) already decodes with the moments graph of this module."""
    return any(n.name.startswith(PREFIX) for n in model.graph.node)


def _decoding_graph(points_name: str, shape: tuple[int, int, int], opset: int):
    """The decoding alone as an ONNX model: ``heatmaps`` (B, N, H, W) -> ``points_name``, ``covariance``."""
    import torch

    from star_track.nn.network import decode_heatmaps_torch

    class Decoding(torch.nn.Module):
        def forward(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return decode_heatmaps_torch(heatmaps)

    return module_graph(Decoding(), torch.rand(1, *shape), HEATMAP_TENSOR, [points_name, "covariance"], opset)


def _ancestors(nodes, producer: dict[str, int], names: list[str]) -> set[int]:
    """Indices of the nodes the tensors ``names`` depend on (``producer``: tensor -> node index)."""
    seen: set[int] = set()
    todo = [producer[t] for t in names if t in producer]
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo.extend(producer[t] for t in nodes[i].input if t in producer)
    return seen


def _heatmap_tensor(nodes, decode_part: set[int]) -> str:
    """The last stack's fused heatmaps: the output of the last network node the outputs depend on."""
    net = [i for i in decode_part if nodes[i].name.startswith(NET_PREFIX)]
    if not net:
        raise ValueError(f"no network nodes ({NET_PREFIX}...) before the outputs: not an exported STAR model")
    return nodes[max(net)].output[0]  # ONNX files list nodes in topological order


def _topological(nodes: list, available: set[str]) -> list:
    """``nodes`` ordered so that each comes after the producers of its inputs."""
    done, pending = [], list(nodes)
    while pending:
        ready = [n for n in pending if all(t in available or t == "" for t in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a missing input at {pending[0].name}")
        for n in ready:
            available.update(n.output)
        done += ready
        pending = [n for n in pending if all(n is not r for r in ready)]
    return done


def swap_decoding(src: str | Path, out: str | Path) -> Path:
    """Write ``src`` with its decoding replaced (see the module docs) to ``out`` (may equal ``src``; written
    through a temporary file). Raises ``ValueError`` for a graph without the network's heatmaps or one that
    already has this decoding."""
    import onnx

    model = onnx.load(str(src))
    if has_moment_decoding(model):
        raise ValueError(f"{src} already has the moments decoding")
    g = model.graph
    producer = {t: i for i, n in enumerate(g.node) for t in n.output}
    points = "landmarks_raw" if "landmarks_raw" in producer else "landmarks"
    decode_part = _ancestors(g.node, producer, [points, "covariance"])
    heat = _heatmap_tensor(g.node, decode_part)
    network = _ancestors(g.node, producer, [heat])
    inferred = onnx.shape_inference.infer_shapes(model).graph
    dims = next((vi.type.tensor_type.shape.dim for vi in inferred.value_info if vi.name == heat), None)
    shape = tuple(d.dim_value for d in dims[1:]) if dims is not None else ()
    if len(shape) != 3 or not all(shape):
        raise ValueError(f"{src}: the heatmap tensor {heat!r} has no known (N, H, W) shape")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    dec = _decoding_graph(points, shape, opset)
    kept = [n for i, n in enumerate(g.node) if i in network or i not in decode_part]
    for node in kept:  # the heatmaps get their standard name
        node.input[:] = [HEATMAP_TENSOR if t == heat else t for t in node.input]
        node.output[:] = [HEATMAP_TENSOR if t == heat else t for t in node.output]
    prefix_names(dec.graph, PREFIX, {HEATMAP_TENSOR, points, "covariance"})
    used = {t for n in [*kept, *dec.graph.node] for t in n.input}
    inits = [t for t in g.initializer if t.name in used] + list(dec.graph.initializer)
    nodes = _topological([*kept, *dec.graph.node], {i.name for i in g.input} | {t.name for t in inits})
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    stale = {vi.name for vi in g.value_info} - {t for n in nodes for t in n.output}
    keep_info = [vi for vi in g.value_info if vi.name not in stale and vi.name != heat]
    del g.value_info[:]
    g.value_info.extend(keep_info)
    return save_checked(model, out)
