"""A second tail for attributes on the room network's shared first blocks.

Fine-tuning the whole network with the attributes (train --attribute) makes it see fireplaces and
balconies, but costs the room types (benchmarks/results/multitask.md); a logistic head on the room
network's own embedding sees them poorly. Both networks of the default recipe train only their last
blocks on the same frozen ImageNet blocks, so one graph can hold both: the room network whole, and
beside it the multi-task network's trainable blocks, fed by the room network's output of the last
frozen block. Its pooled output, `attribute_embedding`, is what attribute heads of such a bundle
read (attributes.py); the room-type outputs are the room network's, unchanged. The price is the
tail's share of the multiply-adds (about a third for EfficientNet-Lite1 from block 15), paid only
by those who choose such a bundle.

    combine(room_onnx, donor_onnx, cut, out_onnx)

`cut` names the float tensor where the tail starts (the last frozen block's output); it must exist
in both graphs and be all the donor's tail needs besides its own weights.

    average_room_outputs(combined_onnx, donor_onnx, out_onnx, weight)

then lets the tail answer the room type too: the graph's room-type probabilities become the
average of both tails'.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from .attributes import ATTRIBUTE_EMBEDDING_OUTPUT, EMBEDDING_OUTPUT

TAIL_PREFIX = "attribute_tail/"
ROOM_PREFIX = "attribute_tail_room/"  # average_room_outputs: the donor's room-type head and the average
ROOM_OUTPUT = "output"  # the room-type probabilities, as bundle.export_onnx names them
BLOCK_KINDS = ("_blocks", "features")  # how EfficientNet-Lite and RoomNet name their blocks
_PASS_THROUGH = ("QuantizeLinear", "DequantizeLinear")


def default_cut(graph, first_block: int) -> str:
    """The float tensor that block `first_block` (the first trainable one) reads: its first node's
    input, followed back through any QuantizeLinear / DequantizeLinear pair."""
    producer = {o: n for n in graph.node for o in n.output}
    markers = [f"{kind}.{first_block}/" for kind in BLOCK_KINDS]
    first = next((n for n in graph.node if any(m in n.name for m in markers) and n.op_type not in _PASS_THROUGH), None)
    if first is None:
        raise ValueError(f"no node of block {first_block} (a name containing {' or '.join(markers)}) in the graph")
    name = first.input[0]
    while name in producer and producer[name].op_type in _PASS_THROUGH:
        name = producer[name].input[0]
    return name


def tail_nodes(donor, cut: str, output: str = EMBEDDING_OUTPUT) -> list:
    """The donor's nodes that `output` needs, going back as far as `cut` (their own weights, and
    the nodes that dequantise them, included), checked to need nothing else of the donor's first
    blocks."""
    g = donor.graph
    if output not in [o.name for o in g.output]:
        raise ValueError(f"the donor graph has no output {output!r}")
    producer = {o: i for i, n in enumerate(g.node) for o in n.output}
    weights = {t.name for t in g.initializer}
    inputs = {i.name for i in g.input} - weights
    need: set[int] = set()
    stack, reached_cut, stray = [output], False, set()
    while stack:
        x = stack.pop()
        if x == cut:
            reached_cut = True
            continue
        if x in inputs:
            stray.add(x)
            continue
        i = producer.get(x)
        if i is None or i in need:
            continue
        need.add(i)
        stack.extend(y for y in g.node[i].input if y)
    if not reached_cut:
        raise ValueError(f"the donor's {output!r} does not depend on {cut!r}")
    if stray:
        raise ValueError(f"the donor's {output!r} reads the graph input {', '.join(sorted(stray))} other than "
                         f"through {cut!r}: the tail must start where the shared blocks end")
    return [g.node[i] for i in sorted(need)]


def combine(room_onnx: str | os.PathLike, donor_onnx: str | os.PathLike, cut: str,
            out_onnx: str | os.PathLike, output_name: str = ATTRIBUTE_EMBEDDING_OUTPUT) -> list[str]:
    """Write the room graph plus the donor's tail from `cut` as output `output_name`; returns the
    combined graph's outputs."""
    import onnx
    from onnx import helper

    room, donor = onnx.load(str(room_onnx)), onnx.load(str(donor_onnx))
    if cut not in {o for n in room.graph.node for o in n.output}:
        raise ValueError(f"{room_onnx}: has no tensor {cut!r} to attach the tail to")
    if output_name in [o.name for o in room.graph.output]:
        raise ValueError(f"{room_onnx}: already has an output {output_name!r}")
    g = room.graph
    _graft(g, donor, tail_nodes(donor, cut), TAIL_PREFIX, output_name)
    width = _output_width(donor, EMBEDDING_OUTPUT)
    g.output.append(helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, ["batch", width]))
    onnx.checker.check_model(room)
    onnx.save(room, str(out_onnx))
    return [o.name for o in g.output]


def average_room_outputs(combined_onnx: str | os.PathLike, donor_onnx: str | os.PathLike,
                         out_onnx: str | os.PathLike, weight: float = 0.5) -> None:
    """Make the combined graph's room-type probabilities (ROOM_OUTPUT) the average of its two
    tails': (1 - weight) x the room network's own, plus weight x the donor's room-type head (its
    classifier, temperature and softmax, copied from the donor graph) on the attribute tail's
    embedding, at the cost of one small matrix product. Measured for rooms-attributes and not
    shipped there: better away from the training sources, worse on rooms-web/test
    (benchmarks/results/perception-room-average.md, docs/attributes.md)."""
    import onnx
    from onnx import helper, numpy_helper

    if not 0 < weight <= 1:
        raise ValueError(f"weight {weight}: give a number in (0, 1]")
    combined, donor = onnx.load(str(combined_onnx)), onnx.load(str(donor_onnx))
    g = combined.graph
    if ATTRIBUTE_EMBEDDING_OUTPUT not in [o.name for o in g.output]:
        raise ValueError(f"{combined_onnx}: no {ATTRIBUTE_EMBEDDING_OUTPUT!r} output (combine() makes one)")
    if any(n.name.startswith(ROOM_PREFIX) for n in g.node):
        raise ValueError(f"{combined_onnx}: its room-type outputs are already averaged")
    rename = _graft(g, donor, tail_nodes(donor, EMBEDDING_OUTPUT, output=ROOM_OUTPUT), ROOM_PREFIX,
                    ATTRIBUTE_EMBEDDING_OUTPUT)
    own = ROOM_PREFIX + "room_network_" + ROOM_OUTPUT
    for n in g.node:  # the room network's softmax now feeds the average
        n.output[:] = [own if o == ROOM_OUTPUT else o for o in n.output]
    g.initializer.extend([numpy_helper.from_array(np.array([1 - weight], np.float32), ROOM_PREFIX + "own_weight"),
                          numpy_helper.from_array(np.array([weight], np.float32), ROOM_PREFIX + "tail_weight")])
    g.node.extend([
        helper.make_node("Mul", [own, ROOM_PREFIX + "own_weight"], [ROOM_PREFIX + "own_part"], name=ROOM_PREFIX + "own_part"),
        helper.make_node("Mul", [rename(ROOM_OUTPUT), ROOM_PREFIX + "tail_weight"], [ROOM_PREFIX + "tail_part"],
                         name=ROOM_PREFIX + "tail_part"),
        helper.make_node("Add", [ROOM_PREFIX + "own_part", ROOM_PREFIX + "tail_part"], [ROOM_OUTPUT], name=ROOM_PREFIX + "average"),
    ])
    onnx.checker.check_model(combined)
    onnx.save(combined, str(out_onnx))


def _graft(graph, donor, nodes: list, prefix: str, embedding_as: str):
    """Copy the donor graph's `nodes`, and the donor weights they read, into `graph`: their
    tensors and weights renamed with `prefix`, the donor's embedding named `embedding_as`. Returns
    the renaming, for the caller to find the copies' outputs."""
    import onnx

    made = {o for n in nodes for o in n.output}
    donor_weights = {t.name: t for t in donor.graph.initializer}

    def rename(x: str) -> str:
        if x == EMBEDDING_OUTPUT:
            return embedding_as
        return prefix + x if x in made or x in donor_weights else x

    for n in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.name = prefix + n.name
        copy.input[:] = [rename(x) if x else x for x in n.input]
        copy.output[:] = [rename(x) for x in n.output]
        graph.node.append(copy)
    for name in sorted({x for n in nodes for x in n.input} & set(donor_weights)):
        t = onnx.TensorProto()
        t.CopyFrom(donor_weights[name])
        t.name = prefix + name
        graph.initializer.append(t)
    return rename


def _output_width(model, name: str):
    out = next(o for o in model.graph.output if o.name == name)
    dims = out.type.tensor_type.shape.dim
    return dims[1].dim_value if len(dims) > 1 and dims[1].dim_value else None


def agreement(combined_onnx: str | os.PathLike, donor_onnx: str | os.PathLike, batches: Iterable) -> float:
    """Smallest cosine similarity, over the photos of `batches`, between the combined graph's
    attribute embedding and the donor network's own embedding: near 1 when the room network's first
    blocks compute what the donor's did (the same frozen weights, quantised on different photos)."""

    from .bundle import onnx_session

    a, b = onnx_session(combined_onnx), onnx_session(donor_onnx)
    worst = 1.0
    for x in batches:
        x = np.ascontiguousarray(x, dtype=np.float32)
        u = a.run([ATTRIBUTE_EMBEDDING_OUTPUT], {a.get_inputs()[0].name: x})[0]
        v = b.run([EMBEDDING_OUTPUT], {b.get_inputs()[0].name: x})[0]
        cos = (u * v).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-12)
        worst = min(worst, float(cos.min()))
    return worst
