"""Tidying an exported ONNX graph for ONNX Runtime: where its weights live, what it carries.

An export that skips silence runs the speech embedding inside conditional branches (`If`
nodes), whose convolutions read their weights from the enclosing graph. ONNX Runtime reorders a
convolution's weights into its blocked layout (NCHWc, faster on AVX-512) only when they are
initializers of the graph that runs it, so every branch gets its own copy of the initializers it
reads (`localize_initializers`): `best`'s two-view export classified 332 -> 372 clips/s on the
2-core VM. The exporter also records a stack trace and scopes on every node, 15 kB a
convolution inside a branch; `strip_node_metadata` drops them, which the model never reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


def subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graphs held by `graph`'s nodes (an `If`'s branches), one level down."""
    import onnx

    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield attribute.g


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every graph nested in it."""
    yield graph
    for sub in subgraphs(graph):
        yield from all_graphs(sub)


def localize_initializers(graph: onnx.GraphProto) -> None:
    """Give each graph, `graph` and its branches, exactly the initializers its own nodes read.

    A branch gets a copy of each outer initializer it reads (the same name and value, so the
    model computes the same); an initializer no node of a graph reads leaves that graph.
    """
    import onnx

    pool: dict[str, onnx.TensorProto] = {}
    for g in all_graphs(graph):
        for tensor in g.initializer:
            if tensor.name not in pool:
                pool[tensor.name] = onnx.TensorProto()
                pool[tensor.name].CopyFrom(tensor)
    for g in all_graphs(graph):
        read = {name for node in g.node for name in node.input}
        made = {name for node in g.node for name in node.output} | {i.name for i in g.input}
        del g.initializer[:]
        g.initializer.extend(t for name, t in pool.items() if name in read and name not in made)


def strip_node_metadata(graph: onnx.GraphProto) -> None:
    """Drop every node's doc string and metadata (the exporter's stack traces and scopes)."""
    for g in all_graphs(graph):
        for node in g.node:
            node.doc_string = ""
            del node.metadata_props[:]
