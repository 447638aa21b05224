"""The IR (onnxfast/ir.py): the use/def index, the patch API (Graph.replace: placement, constants,
type re-inference, the checks that catch a bad patch), constants told apart from overridable
initializers and graph inputs, and the IR's independence from the kernels."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx_helpers import make_model, vi

from onnxfast import ir
from onnxfast.errors import InvalidModel

ROOT = Path(__file__).resolve().parent.parent


def _graph():
    # x -> MatMul(w) -> h -> Relu -> r -> Add(b) -> y ; r also a graph output; 'd' an overridable default
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "b"], ["y"], name="add"),
             helper.make_node("Mul", ["y", "d"], ["z"], name="mul")]
    m = make_model(nodes, [vi("x", T.FLOAT, ["n", 4]), vi("d", T.FLOAT, [])],
                   [vi("z", T.FLOAT, None), vi("r", T.FLOAT, None)],
                   initializers=[("w", np.ones((4, 3), np.float32)), ("b", np.zeros(3, np.float32)),
                                 ("d", np.array(2, np.float32))])
    model = ir.build_model(m, None, release=False)
    return model, model.graph


def test_use_def_index():
    model, g = _graph()
    names = {n.name: n for n in g.nodes}
    assert g.producer("h") is names["mm"] and g.producer("x") is None and g.producer("w") is None
    assert g.consumers("h") == [names["relu"]] and g.consumers("z") == []
    assert g.use_count("r") == 2  # Add reads it, and it is a graph output
    assert g.only_consumer("h") is names["relu"] and g.only_consumer("r") is None
    assert g.constant("w") is not None and g.constant("d") is None  # an initializer that is an input
    assert set(g.constants()) == {"w", "b"}
    assert g.is_input("d") and g.is_output("r") and not g.is_output("h")


def test_replace_places_indexes_and_reinfers():
    model, g = _graph()
    names = {n.name: n for n in g.nodes}
    # MatMul + Relu stay; Add + Mul become one Sub of a new value (types inferred again)
    new = ir.Node("Sub", "", "sub", ["h", "b"], ["z"], {})
    g.replace([names["add"], names["mul"]], [new], opsets=model.opsets)
    assert [n.name for n in g.nodes] == ["mm", "relu", "sub"]
    assert g.producer("z") is new and g.producer("y") is None and "y" not in g.value_info
    assert g.consumers("b") == [new] and g.consumers("h") == [names["relu"], new]
    assert g.type_of("z").elem_type == T.FLOAT and g.type_of("z").shape == ["n", 3]
    g.check()


def test_replace_by_constants():
    model, g = _graph()
    names = {n.name: n for n in g.nodes}
    g.replace([names["mm"]], [], constants={"h": np.zeros((2, 3), np.float32)}, opsets=model.opsets)
    assert g.constant("h").shape == (2, 3) and g.type_of("h").shape == [2, 3]
    assert g.producer("h") is None and g.consumers("h") == [names["relu"]]
    g.check()


def test_bad_patches_are_refused():
    model, g = _graph()
    names = {n.name: n for n in g.nodes}
    with pytest.raises(InvalidModel, match="'h' is still read but no longer defined"):
        g.replace([names["mm"]], [], opsets=model.opsets)
    model, g = _graph()
    names = {n.name: n for n in g.nodes}
    with pytest.raises(InvalidModel, match="'r' would be defined twice"):
        g.replace([names["add"]], [ir.Node("Relu", "", "again", ["y0"], ["r"], {})])
    model, g = _graph()
    names = {n.name: n for n in g.nodes}
    # the new node reads a value defined only after its place
    with pytest.raises(InvalidModel, match="reads 'z' before it is defined"):
        g.replace([names["relu"]], [ir.Node("Add", "", "early", ["h", "z"], ["r"], {})])
    model, g = _graph()
    with pytest.raises(InvalidModel, match="not in the graph"):
        g.replace([ir.Node("Relu", "", "stranger", ["x"], ["q"], {})], [])


def test_refused_patch_leaves_the_graph_as_it_was():
    model, g = _graph()
    names = {n.name: n for n in g.nodes}
    before = [n.name for n in g.nodes]
    with pytest.raises(InvalidModel, match="with repeats"):
        g.replace([names["add"]], [ir.Node("Relu", "", "p", ["r"], ["y"], {}), ir.Node("Neg", "", "q", ["r"], ["y"], {})])
    with pytest.raises(InvalidModel, match="reads 'h' before the new nodes define it"):
        # the MatMul's output redefined by a node standing after its reader 'relu'
        g.replace([names["mm"], names["add"]], [ir.Node("Add", "", "late", ["r", "b"], ["y"], {}),
                                                ir.Node("MatMul", "", "mm2", ["x", "w"], ["h"], {})])
    assert [n.name for n in g.nodes] == before and g.producer("h") is names["mm"]
    g.check()


def test_check_notices_edits_behind_the_index():
    model, g = _graph()
    g.producer("h")  # index built
    g.nodes.pop()  # edited directly
    with pytest.raises(InvalidModel, match="stale"):
        g.check()
    g.invalidate()
    with pytest.raises(InvalidModel, match="output 'z' is not defined"):
        g.check()


def test_ir_does_not_import_the_kernels():
    """The IR reads ONNX schemas (onnxfast/schemas.py) and the loader, never the kernel registry,
    the numpy kernels or _core: ops without a kernel are expanded through the has_kernel argument."""
    for module in ("ir.py", "schemas.py", "loader.py", "dtypes.py"):
        tree = ast.parse((ROOT / "onnxfast" / module).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported.add((node.module or "") + ":" + ",".join(a.name for a in node.names))
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        bad = [i for i in imported if any(k in i for k in ("registry", "_core", "ops", "planner", "REGISTRY"))]
        assert not bad, (module, bad)


def test_functions_expand_only_for_ops_without_a_kernel():
    """has_kernel decides: an op the runtime computes stays one node, another is replaced by the
    function body its schema defines."""
    node = helper.make_node("Softsign", ["x"], ["y"], name="s")  # a function op in the ONNX schemas
    m = make_model([node], [vi("x", T.FLOAT, [2])], [vi("y", T.FLOAT, [2])])
    kept = ir.build_model(m, None, release=False)
    assert [n.op_type for n in kept.graph.nodes] == ["Softsign"]
    expanded = ir.build_model(m, None, release=False, has_kernel=lambda d, op: op != "Softsign")
    assert "Softsign" not in [n.op_type for n in expanded.graph.nodes] and len(expanded.graph.nodes) > 1
