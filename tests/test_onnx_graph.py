"""Tidying exported graphs: each branch holds the weights it reads, nodes carry no stack traces,
and the model computes what it computed before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, checker, helper, numpy_helper, save

from sdc.inference.onnx_graph import all_graphs, localize_initializers, strip_node_metadata

ort = pytest.importorskip("onnxruntime")


def branching_model() -> helper.ModelProto:
    """y = x * w where x > 0, else x + w; `w` and an unused `spare` live in the main graph."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])

    def branch(op: str, name: str) -> helper.GraphProto:
        out = helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [2])
        return helper.make_graph([helper.make_node(op, ["x", "w"], [f"{name}_y"])], name, [], [out])

    nodes = [
        helper.make_node("ReduceMin", ["x"], ["low"], keepdims=0),
        helper.make_node("Greater", ["low", "zero"], ["positive"]),
        helper.make_node(
            "If",
            ["positive"],
            ["y"],
            then_branch=branch("Mul", "then"),
            else_branch=branch("Add", "other"),
        ),
    ]
    nodes[0].metadata_props.add(key="pkg.torch.onnx.stack_trace", value="File ... line 1")
    nodes[0].doc_string = "a trace"
    initializers = [
        numpy_helper.from_array(np.array([2.0, 3.0], dtype=np.float32), "w"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.ones(4, dtype=np.float32), "spare"),
    ]
    graph = helper.make_graph(nodes, "main", [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model: helper.ModelProto, path: Path, x: np.ndarray) -> np.ndarray:
    save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_each_branch_holds_the_initializers_it_reads_and_computes_the_same(
    tmp_path: Path,
) -> None:
    before = branching_model()
    after = branching_model()
    localize_initializers(after.graph)
    checker.check_model(after, full_check=True)
    names = {g.name: sorted(i.name for i in g.initializer) for g in all_graphs(after.graph)}
    assert names == {"main": ["zero"], "then": ["w"], "other": ["w"]}, "spare and w leave main"
    for x in (np.array([1.0, 2.0], np.float32), np.array([-1.0, 2.0], np.float32)):
        expected = run(before, tmp_path / "before.onnx", x)
        assert np.array_equal(run(after, tmp_path / "after.onnx", x), expected)
    localize_initializers(after.graph)  # a second pass changes nothing
    assert {g.name: sorted(i.name for i in g.initializer) for g in all_graphs(after.graph)} == names


def test_node_metadata_is_stripped_in_every_graph() -> None:
    model = branching_model()
    then = model.graph.node[2].attribute[0].g
    then.node[0].metadata_props.add(key="namespace", value="inside a branch")
    strip_node_metadata(model.graph)
    nodes = [node for g in all_graphs(model.graph) for node in g.node]
    assert len(nodes) == 5
    assert not any(node.metadata_props or node.doc_string for node in nodes)
