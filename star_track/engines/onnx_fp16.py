"""FP32 ONNX -> mixed-precision ONNX for strongly typed TensorRT builds (TensorRT 11 has no FP16 flag).

The network body (every node the last stack's heatmap tensor depends on) becomes FP16; the in-graph decoding
after it, InstanceNormalization (a variance over 64x64 pixels) and the graph inputs/outputs stay FP32, with
Cast nodes at the borders. A strongly typed TensorRT network then runs exactly these precisions.
Needs the ``onnx`` package (imported lazily).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.meta import HEATMAP_TENSOR
from ..errors import ModelError

if TYPE_CHECKING:
    import onnx

CONVERTER_VERSION = 1
"""Bump when the conversion's output changes: it is part of the TensorRT engine cache key."""
BOUNDARY_TENSOR = HEATMAP_TENSOR
"""Tensor where FP16 ends: the fused heatmaps, named so by :func:`star_track.nn.onnx_export.export_onnx`."""
KEEP_FP32_OPS = frozenset({"InstanceNormalization"})
# Inputs that ONNX requires to be float32 whatever the data type (Resize roi/scales).
_FLOAT32_INPUTS = {"Resize": {1, 2}}
# Ops that accept any element type on these inputs: no Cast needed in front of them.
_ANY_TYPE_INPUTS = {"Shape": {0}, "Size": {0}}
_ATTRIBUTE_TYPED = {"Constant": "value", "ConstantOfShape": "value"}


def convert_onnx_fp16(model: "onnx.ModelProto", boundary: str = BOUNDARY_TENSOR,
                      keep_fp32_ops: frozenset[str] = KEEP_FP32_OPS) -> "onnx.ModelProto":
    """Return a copy of ``model`` whose nodes upstream of ``boundary`` compute in FP16 (IO stays FP32)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)  # element types of all intermediate tensors
    g = model.graph
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    elem.update({t.name: t.data_type for t in g.initializer})
    producer = {out: node for node in g.node for out in node.output}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in g.node:
        for i, name in enumerate(node.input):
            consumers[name].append((node, i))
    if boundary not in producer:
        raise ModelError(f"ONNX graph has no tensor {boundary!r}: re-export it with this version of star-track")

    region = _fp16_region(producer, boundary, keep_fp32_ops)
    half = _half_tensors(g, elem, consumers, region)
    _split_initializers(g, consumers, region)
    new_nodes = _border_casts(g, elem, half, region)
    _cast_outputs_back(g, half, producer, consumers, new_nodes)

    nodes = list(g.node)
    for cast, before in new_nodes:
        pos = len(nodes) if before is None else next(k for k, n in enumerate(nodes) if n is before)
        nodes.insert(pos, cast)
    del g.node[:]
    g.node.extend(_toposort(nodes))
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def _fp16_region(producer: dict[str, "onnx.NodeProto"], boundary: str, keep_fp32_ops: frozenset[str]) -> set[int]:
    """id() of the nodes that compute in FP16: every node ``boundary`` depends on, except ``keep_fp32_ops``."""
    region: set[int] = set()
    stack = [boundary]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in region:
            continue
        if node.op_type not in keep_fp32_ops:
            region.add(id(node))
        stack.extend(node.input)
    return region


def _wants_fp16(region: set[int], node: "onnx.NodeProto", index: int) -> bool:
    """Whether ``node`` takes its input ``index`` in FP16."""
    return id(node) in region and index not in _FLOAT32_INPUTS.get(node.op_type, ())


def _half_tensors(g: "onnx.GraphProto", elem: dict[str, int], consumers: dict[str, list[tuple["onnx.NodeProto", int]]],
                  region: set[int]) -> set[str]:
    """The float tensors that become FP16 (FP16 nodes' outputs); constants and Casts in the region are retyped."""
    from onnx import TensorProto, numpy_helper

    half: set[str] = set()
    for node in g.node:
        if id(node) not in region:
            continue
        if node.op_type in _ATTRIBUTE_TYPED:
            # Convert a constant only if every consumer wants FP16 (Resize scales must stay float32).
            out = node.output[0]
            if elem.get(out) == TensorProto.FLOAT and all(_wants_fp16(region, n, i) for n, i in consumers[out]):
                for attr in node.attribute:
                    if attr.name == _ATTRIBUTE_TYPED[node.op_type]:
                        attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype("float16"),
                                                                attr.t.name))
                half.add(out)
            continue
        if node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == TensorProto.FLOAT:
                to.i = TensorProto.FLOAT16
                half.add(node.output[0])
            continue
        half.update(o for o in node.output if elem.get(o) == TensorProto.FLOAT)
    return half


def _split_initializers(g: "onnx.GraphProto", consumers: dict[str, list[tuple["onnx.NodeProto", int]]],
                        region: set[int]) -> None:
    """An FP16 copy of each float initializer for its FP16 consumers (the FP32 original stays if anything else
    uses it)."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in g.initializer}
    for name, tensor in list(inits.items()):
        if tensor.data_type != TensorProto.FLOAT:
            continue
        users = consumers.get(name, [])
        fp16_users = [(n, i) for n, i in users if _wants_fp16(region, n, i)]
        if not fp16_users:
            continue
        copy = numpy_helper.from_array(numpy_helper.to_array(tensor).astype("float16"), f"{name}__fp16")
        g.initializer.append(copy)
        for n, i in fp16_users:
            n.input[i] = copy.name
        if len(fp16_users) == len(users):
            g.initializer.remove(tensor)


_Insertions = list[tuple["onnx.NodeProto", "onnx.NodeProto | None"]]
"""(Cast node, the node to insert it before; None: at the end)."""


def _border_casts(g: "onnx.GraphProto", elem: dict[str, int], half: set[str], region: set[int]) -> _Insertions:
    """Casts wherever a consumer wants another precision than the producer gives (inputs rewired to them)."""
    from onnx import TensorProto, helper

    casts: dict[tuple[str, int], str] = {}
    new_nodes: _Insertions = []
    for node in list(g.node):
        for i, name in enumerate(node.input):
            if not name or elem.get(name) != TensorProto.FLOAT or name.endswith("__fp16"):
                continue
            if i in _ANY_TYPE_INPUTS.get(node.op_type, ()):
                continue
            have = TensorProto.FLOAT16 if name in half else TensorProto.FLOAT
            want = TensorProto.FLOAT16 if _wants_fp16(region, node, i) else TensorProto.FLOAT
            if have == want:
                continue
            key = (name, want)
            if key not in casts:
                casts[key] = f"{name}__to_{'fp16' if want == TensorProto.FLOAT16 else 'fp32'}"
                new_nodes.append((helper.make_node("Cast", [name], [casts[key]], to=want,
                                                   name=f"cast_{casts[key]}"), node))
            node.input[i] = casts[key]
    return new_nodes


def _cast_outputs_back(g: "onnx.GraphProto", half: set[str], producer: dict[str, "onnx.NodeProto"],
                       consumers: dict[str, list[tuple["onnx.NodeProto", int]]], new_nodes: _Insertions) -> None:
    """Graph outputs keep FP32: rename an FP16 producer's output and cast back under the public name."""
    from onnx import TensorProto, helper

    for out in g.output:
        if out.name in half:
            inner = f"{out.name}__fp16_out"
            node = producer[out.name]
            node.output[list(node.output).index(out.name)] = inner
            for n in [*(n for n, _ in consumers[out.name]), *(c for c, _ in new_nodes)]:
                for i, name in enumerate(n.input):
                    if name == out.name:
                        n.input[i] = inner
            new_nodes.append((helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT,
                                               name=f"cast_{out.name}_fp32"), None))


def _toposort(nodes: list) -> list:
    """Order nodes so that every input is produced before use (inserted Casts may precede their source)."""
    produced_by = {out: k for k, n in enumerate(nodes) for out in n.output}
    order, state = [], [0] * len(nodes)  # 0 new, 1 visiting, 2 done

    def visit(k: int) -> None:
        stack = [(k, iter(nodes[k].input))]
        state[k] = 1
        while stack:
            cur, inputs = stack[-1]
            for name in inputs:
                dep = produced_by.get(name)
                if dep is not None and state[dep] == 0:
                    state[dep] = 1
                    stack.append((dep, iter(nodes[dep].input)))
                    break
            else:
                stack.pop()
                state[cur] = 2
                order.append(nodes[cur])

    for k in range(len(nodes)):
        if state[k] == 0:
            visit(k)
    return order


def write_fp16_onnx(src: str | Path, dst: str | Path) -> Path:
    """Convert the FP32 ONNX file ``src`` with :func:`convert_onnx_fp16` and write it (metadata kept)."""
    try:
        import onnx
    except ImportError as exc:
        from ..errors import MissingDependency

        raise MissingDependency('FP16 conversion needs the onnx package: pip install "star-track[gpu]"') from exc
    converted = convert_onnx_fp16(onnx.load(str(src)))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(dst))
    return dst
