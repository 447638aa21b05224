"""Constant and shape folding (onnxfast/optimizer/folding.py), each pass on its own and through a
session; the optimized model written back to ONNX (ir.to_proto, optimized_model_filepath, the
`onnxfast optimize` command) and loaded again."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_helpers import F, make_model, vi

import onnxfast
from onnxfast import ir
from onnxfast.optimizer.folding import fold_constants, fold_shapes

I64 = TensorProto.INT64


def _ir(model):
    return ir.build_model(model, None, release=False)


def _session(model, level=99, path=""):
    o = onnxfast.SessionOptions()
    o.graph_optimization_level = level
    o.optimized_model_filepath = path
    return onnxfast.InferenceSession(model.SerializeToString(), o)


def test_constant_subgraph_folds_to_one_initializer():
    # y = x + (c * 2 + 1): the constant arithmetic folds; the Add of the input stays
    nodes = [helper.make_node("Constant", [], ["two"], value=helper.make_tensor("t", F, [], [2.0]), name="k2"),
             helper.make_node("Mul", ["c", "two"], ["c2"], name="mul"),
             helper.make_node("Add", ["c2", "one"], ["c3"], name="add1"),
             helper.make_node("Add", ["x", "c3"], ["y"], name="add2")]
    model = make_model(nodes, [vi("x", F, [3])], [vi("y", F, [3])],
                       initializers=[("c", np.array([1, 2, 3], np.float32)), ("one", np.array(1, np.float32))])
    m = _ir(model)
    assert fold_constants(m.graph, m)
    assert [n.name for n in m.graph.nodes] == ["add2"]
    np.testing.assert_array_equal(m.graph.initializers["c3"], [3, 5, 7])
    assert set(m.graph.initializers) == {"c3"}  # the inputs of folded nodes are dropped
    assert [f[0] for f in m.graph.folded] == ["k2", "mul", "add1"]
    assert not fold_constants(m.graph, m)  # a fixed point
    s = _session(model)
    np.testing.assert_array_equal(s.run(None, {"x": np.ones(3, np.float32)})[0], [4, 6, 8])
    kinds = {r["node"]: r["kernel"] for r in s.kernel_listing()}
    assert kinds["mul"] == kinds["add1"] == kinds["k2"] == "constant" and kinds["add2"].startswith("native")


def test_initializer_that_is_an_input_never_folds():
    """An initializer listed as a graph input is a default the caller may override."""
    nodes = [helper.make_node("Mul", ["w", "w"], ["w2"], name="sq"), helper.make_node("Add", ["x", "w2"], ["y"])]
    model = make_model(nodes, [vi("x", F, [2]), vi("w", F, [2])], [vi("y", F, [2])],
                       initializers=[("w", np.array([1, 2], np.float32))])
    m = _ir(model)
    assert not fold_constants(m.graph, m)
    for level in (0, 1, 99):
        s = _session(model, level)
        x = np.zeros(2, np.float32)
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], [1, 4])
        np.testing.assert_array_equal(s.run(None, {"x": x, "w": np.array([3, -5], np.float32)})[0], [9, 25])


def test_add_initializer_replaces_the_value_before_folding():
    nodes = [helper.make_node("Mul", ["c", "c"], ["c2"], name="sq"), helper.make_node("Add", ["x", "c2"], ["y"])]
    model = make_model(nodes, [vi("x", F, [2])], [vi("y", F, [2])], initializers=[("c", np.array([1, 2], np.float32))])
    o = onnxfast.SessionOptions()
    o.add_initializer("c", np.array([3, 4], np.float32))
    s = onnxfast.InferenceSession(model.SerializeToString(), o)
    np.testing.assert_array_equal(s.run(None, {"x": np.zeros(2, np.float32)})[0], [9, 16])


def test_scalar_constants_keep_rank_zero():
    """A folded 0-d value stays 0-d (Gather of a scalar index, then Unsqueeze, then Concat)."""
    nodes = [helper.make_node("Gather", ["shp", "i"], ["d"], name="g"),
             helper.make_node("Unsqueeze", ["d", "ax"], ["d1"], name="u"),
             helper.make_node("Concat", ["d1", "minus1"], ["newshape"], axis=0, name="cat"),
             helper.make_node("Reshape", ["x", "newshape"], ["y"], name="r")]
    model = make_model(nodes, [vi("x", F, [2, 3])], [vi("y", F, None)],
                       initializers=[("shp", np.array([2, 3], np.int64)), ("i", np.array(0, np.int64)),
                                     ("ax", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64))])
    m = _ir(model)
    assert fold_constants(m.graph, m)
    assert m.graph.initializers["newshape"].tolist() == [2, -1]
    assert _session(model).run(None, {"x": np.zeros((2, 3), np.float32)})[0].shape == (2, 3)


def test_shape_of_a_static_value_folds_and_its_arithmetic_follows():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape", start=1),
             helper.make_node("ReduceProd", ["s"], ["p"], keepdims=1, name="prod"),
             helper.make_node("Concat", ["minus1", "p"], ["newshape"], axis=0, name="cat"),
             helper.make_node("Reshape", ["x", "newshape"], ["y"], name="r"),
             helper.make_node("Shape", ["z"], ["zs"], name="dynamic_shape")]
    model = make_model(nodes, [vi("x", F, [2, 3, 4]), vi("z", F, ["n", 2])], [vi("y", F, None), vi("zs", I64, [2])],
                       initializers=[("minus1", np.array([-1], np.int64))])
    m = _ir(model)
    assert fold_shapes(m.graph, m)
    assert m.graph.initializers["s"].tolist() == [3, 4]
    assert fold_constants(m.graph, m)
    assert [n.name for n in m.graph.nodes] == ["r", "dynamic_shape"]  # a symbolic dim does not fold
    s = _session(model)
    y, zs = s.run(None, {"x": np.zeros((2, 3, 4), np.float32), "z": np.zeros((5, 2), np.float32)})
    assert y.shape == (2, 12) and zs.tolist() == [5, 2]


def test_random_and_growing_nodes_do_not_fold():
    nodes = [helper.make_node("RandomUniformLike", ["c"], ["r"], name="rand"),
             helper.make_node("Expand", ["c", "big"], ["e"], name="expand"),
             helper.make_node("ReduceSum", ["e"], ["s"], keepdims=0, name="sum"),
             helper.make_node("Add", ["r", "x"], ["y0"], name="a"),
             helper.make_node("Add", ["s", "x"], ["y1"], name="b")]
    model = make_model(nodes, [vi("x", F, [])], [vi("y0", F, None), vi("y1", F, None)],
                       initializers=[("c", np.ones(1, np.float32)), ("big", np.array([64, 1 << 20], np.int64))])
    m = _ir(model)
    fold_constants(m.graph, m)
    assert {n.name for n in m.graph.nodes} >= {"rand", "expand"}


def test_level_zero_folds_nothing_but_constant_nodes():
    nodes = [helper.make_node("Mul", ["c", "c"], ["c2"], name="sq"), helper.make_node("Add", ["x", "c2"], ["y"], name="add")]
    model = make_model(nodes, [vi("x", F, [2])], [vi("y", F, [2])], initializers=[("c", np.array([1, 2], np.float32))])
    s = _session(model, level=0)
    assert {r["node"]: r["kernel"] for r in s.kernel_listing()}["sq"] != "constant"
    np.testing.assert_array_equal(s.run(None, {"x": np.zeros(2, np.float32)})[0], [1, 4])


def _conv_relu_model(rng):
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Shape", ["r"], ["shp"], name="shape"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "wm"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "bm"], ["y"], name="bias")]
    return make_model(nodes, [vi("x", F, [2, 3, 8, 8])], [vi("y", F, [2, 5]), vi("shp", I64, [4])],
                      initializers=[("w", w), ("b", rng.standard_normal(4).astype(np.float32)),
                                    ("wm", rng.standard_normal((256, 5)).astype(np.float32)),
                                    ("bm", rng.standard_normal(5).astype(np.float32))])


@pytest.mark.parametrize("level", [1, 2, 99])
def test_optimized_model_file_reloads_with_the_same_outputs(tmp_path, rng, level):
    model = _conv_relu_model(rng)
    path = str(tmp_path / "opt.onnx")
    s = _session(model, level, path)
    saved = onnx.load(path)
    onnx.checker.check_model(saved, full_check=True)  # the onnxfast domain's schemas are registered
    ops = {(n.domain, n.op_type) for n in saved.graph.node}
    if level >= 2:
        assert ("onnxfast", "FusedConv") in ops and ("onnxfast", "FusedMatMul") in ops
        assert any(o.domain == "onnxfast" for o in saved.opset_import)
    else:
        assert not any(d == "onnxfast" for d, _ in ops)
    assert ("", "Shape") not in ops  # folded: the shape of r is static
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = s.run(None, {"x": x})
    got = onnxfast.InferenceSession(path).run(None, {"x": x})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_allclose(want[0], _session(model, 0).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_to_proto_keeps_attributes_subgraphs_and_metadata(rng):
    then = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [], [vi("t", F, [2])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [vi("e", F, [2])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
             helper.make_node("Greater", ["s", "zero"], ["cond"], name="gt"),
             helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="if"),
             helper.make_node("LeakyRelu", ["y"], ["z"], alpha=0.25, name="lr")]
    model = make_model(nodes, [vi("x", F, [2])], [vi("z", F, [2])], initializers=[("zero", np.array(0, np.float32))])
    model.doc_string = "a doc"
    model.metadata_props.add(key="k", value="v")
    proto = ir.to_proto(_ir(model))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.doc_string == "a doc" and {p.key: p.value for p in proto.metadata_props} == {"k": "v"}
    lr = next(n for n in proto.graph.node if n.op_type == "LeakyRelu")
    assert helper.get_attribute_value(lr.attribute[0]) == pytest.approx(0.25)
    s = onnxfast.InferenceSession(proto.SerializeToString())
    for x in (np.array([1, 2], np.float32), np.array([-1, -2], np.float32)):
        np.testing.assert_array_equal(s.run(None, {"x": x})[0],
                                      onnxfast.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0])


def test_cli_optimize(tmp_path, rng, capsys):
    from onnxfast.cli import main

    src, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(_conv_relu_model(rng), str(src))
    assert main(["optimize", str(src), str(out), "--level", "basic"]) == 0
    assert "6 -> 5 nodes" in capsys.readouterr().out  # Shape folded; no fusion at basic
    assert main(["optimize", str(src), str(out)]) == 0
    text = capsys.readouterr().out
    assert "-> 3 nodes" in text and "ConvActivationFusion" in text  # FusedConv, Flatten, FusedMatMul
    row = next(line.split() for line in text.splitlines() if line.startswith("ConvActivationFusion"))
    assert row[1:] == ["1", "5", "4", "1"]  # applied once, 5 -> 4 nodes, 1 removed
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(onnxfast.InferenceSession(str(out)).run(["y"], {"x": x})[0],
                               onnxfast.InferenceSession(str(src)).run(["y"], {"x": x})[0], rtol=1e-6)
    assert main(["optimize", str(src), str(src)]) == 2
