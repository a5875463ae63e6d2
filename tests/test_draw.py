"""Architecture drawings: the graph is wired as the networks are, files are written as asked."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import pytest

from optuna_epnas.standalone.draw import arch_graph, draw_arch
from optuna_epnas.standalone.export import ModelSpec
from optuna_epnas.nn import MacroNet, MicroNet
from optuna_epnas.spaces import MacroArch, MacroSpace, MicroArch, MicroSpace

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")

MACRO_SPACE = MacroSpace(7)
# skips of every reach, from the stem, from merged and unmerged layers, across both reductions (after 2 and 5)
MACRO = MACRO_SPACE.parse("conv3x3 | sep5x5 | max3x3[0] | sep3x3[1] | conv5x5[0,2,3] | avg3x3 | sep3x3[4,5]")
MICRO_SPACE = MicroSpace(5)
# block 4 has two equal branches; blocks 1, 2 and 4 are read by later blocks, so only 3 and 5 are outputs
MICRO = MICRO_SPACE.parse("sep3x3(prev) + identity(prev2) | max3x3(prev) + sep5x5(b1) | conv3x3(prev2) + avg3x3(b2)"
                          " | sep3x3(prev) + sep3x3(prev) | identity(b1) + sep5x5(b4)")

_EDGE = re.compile(r"^\s*(\w+)\s*->\s*(\w+)(?:\s*\[(.*)\])?\s*$")


def edges(g: graphviz.Digraph) -> list[tuple[str, str, str]]:
    """(tail, head, attributes) of every edge in the DOT source."""
    return [m.groups("") for line in g.body if (m := _EDGE.match(line))]


def macro_out(arch: MacroArch, source: int) -> str:
    """The node that holds skip source ``source``: the stem, a layer's op, or its merge if it has skips."""
    if source == 0:
        return "stem"
    return f"M{source}" if arch.skips[source - 1] else f"L{source}"


# -- macro ---------------------------------------------------------------------------------------
def test_macro_labels_every_layer_with_its_number_and_op():
    source = arch_graph(MACRO, MACRO_SPACE).source
    for layer, op in enumerate(MACRO.ops, start=1):
        assert f"{layer}: {op}" in source
    for node in ("input image", "stem", "global avg pool", "linear classifier"):
        assert node in source


def test_macro_skip_edges_are_exactly_the_skips():
    skips = [(t, h) for t, h, attrs in edges(arch_graph(MACRO, MACRO_SPACE)) if "dashed" in attrs]
    expected = [(macro_out(MACRO, s), f"M{layer}") for layer, srcs in enumerate(MACRO.skips, 1) for s in srcs]
    assert len(skips) == sum(map(len, MACRO.skips)) == 7
    assert sorted(skips) == sorted(expected)


def test_macro_chain_runs_through_merges_and_reductions():
    solid = {(t, h) for t, h, attrs in edges(arch_graph(MACRO, MACRO_SPACE)) if "dashed" not in attrs}
    assert MACRO_SPACE.reduction_layers() == (2, 5)
    assert {("L2", "R2"), ("R2", "L3"), ("M5", "R5"), ("R5", "L6")} <= solid
    assert {("L3", "M3"), ("M3", "L4"), ("L6", "L7"), ("L7", "M7"), ("M7", "pool"), ("pool", "linear")} <= solid
    assert not any(h == "L3" and t != "R2" for t, h in solid)  # layer 3 reads only the reduced layer 2


def test_partial_macro_draws_only_the_reductions_its_network_has():
    space = MacroSpace(12)  # reductions after layers 4 and 8
    arch = space.parse("conv3x3 | sep5x5 | max3x3[0] | sep3x3[1] | conv5x5[0,2]")
    g = arch_graph(arch, space)
    nodes = {n for t, h, _ in edges(g) for n in (t, h)}
    assert "R4" in nodes and "R8" not in nodes and "L6" not in nodes
    assert "5 of 12 layers" in g.source
    edge_set = {(t, h) for t, h, _ in edges(g)}
    assert ("M5", "pool") in edge_set
    # a reduction after the last drawn layer is not built by MacroNet, so it is not drawn either
    assert "R4" not in {n for t, h, _ in edges(arch_graph(space.parse("conv3x3 | sep5x5 | max3x3 | avg3x3"), space))
                        for n in (t, h)}


# -- micro ---------------------------------------------------------------------------------------
def test_micro_concat_reads_exactly_the_output_blocks():
    g = arch_graph(MICRO, MICRO_SPACE)
    assert MICRO.outputs() == (3, 5)
    assert sorted(t for t, h, _ in edges(g) if h == "concat") == ["B3", "B5"]
    assert {("concat", "project"), ("project", "output")} <= {(t, h) for t, h, _ in edges(g)}


def test_micro_every_block_has_both_branches_wired_from_their_inputs():
    g = arch_graph(MICRO, MICRO_SPACE)
    edge_list = [(t, h) for t, h, _ in edges(g)]
    for b, (in1, op1, in2, op2) in enumerate(MICRO.blocks, start=1):
        for k, (i, op) in enumerate(((in1, op1), (in2, op2)), start=1):
            node = f"op{b}_{k}"
            assert re.search(rf"^\s*{node} \[label={op}\b", g.source, re.M), (node, op)
            assert (f"in{i}" if i < 2 else f"B{i - 1}", node) in edge_list
            assert (node, f"B{b}") in edge_list
        assert sum(h == f"B{b}" for _, h in edge_list) == 2
    # block 4 reads sep3x3(prev) twice: two branch nodes, two edges out of prev into them
    assert MICRO.blocks[3] == (0, "sep3x3", 0, "sep3x3")
    assert {("in0", "op4_1"), ("in0", "op4_2")} <= set(edge_list)


def test_micro_marks_an_unread_input_and_partial_cells_draw():
    space = MicroSpace(5, cells=3)
    arch = space.parse("sep3x3(prev) + sep3x3(prev) | identity(b1) + max3x3(prev)")
    g = arch_graph(arch, space)
    assert "2 of 5 blocks" in g.source and "3 \u00d7 normal" in g.source
    assert [(t, h) for t, h, _ in edges(g) if "in1" in (t, h)] == [("legend", "in1")]  # only the layout edge
    assert re.search(r"^\s*in1 \[.*not read.*dashed", g.source, re.M)
    assert [t for t, h, _ in edges(g) if h == "concat"] == ["B2"]


def test_drawing_matches_the_modules_the_networks_build():
    deep = MacroSpace(12)  # reduces after layer 4, which the 4-layer arch below ends with
    for space, arch in ((MACRO_SPACE, MACRO), (deep, deep.parse("conv3x3 | sep5x5 | max3x3[0] | avg3x3"))):
        nodes = {n for t, h, _ in edges(arch_graph(arch, space)) for n in (t, h)}
        net = MacroNet(space, 10, channels=4, arch=arch)
        assert {n for n in nodes if n[0] == "R"} == {f"R{p}" for p in net.reductions}
        assert {n for n in nodes if n[0] == "M"} == {f"M{l}" for l, layer in enumerate(net.layers, 1) if layer.merge_bn}
    space = MicroSpace(5)
    for arch in (MICRO, space.parse("sep3x3(prev) + sep3x3(prev) | identity(b1) + max3x3(prev)")):
        g = arch_graph(arch, space)
        cell = MicroNet(space, 10, channels=4, arch=arch).cells["0"]
        assert {t for t, h, _ in edges(g) if h == "concat"} == {name.upper() for name in cell.project}
        read = {t for t, h, _ in edges(g) if t in ("in0", "in1") and h != "legend"}
        assert read == {n for n, m in (("in0", cell.pre_prev), ("in1", cell.pre_prev2)) if m is not None}


# -- inputs --------------------------------------------------------------------------------------
def test_model_spec_input_uses_its_space_and_cells():
    micro = ModelSpec.from_arch(MICRO, MicroSpace(5, cells=2), num_classes=10, cells=4)
    assert arch_graph(micro).source == arch_graph(MICRO, MicroSpace(5, cells=4)).source
    macro = ModelSpec.from_arch(MACRO, MACRO_SPACE, num_classes=10)
    assert arch_graph(macro).source == arch_graph(MACRO, MACRO_SPACE).source
    with pytest.raises(ValueError, match="own search space"):
        arch_graph(macro, MACRO_SPACE)


def test_default_space_and_bad_inputs():
    assert "7 of 7 layers" in arch_graph(MACRO).source  # default_space: the arch's own depth
    with pytest.raises(TypeError):
        arch_graph(MACRO, MICRO_SPACE)
    with pytest.raises(TypeError):
        arch_graph("conv3x3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        arch_graph(MacroArch((), ()))
    with pytest.raises(ValueError, match="not in this space"):
        arch_graph(MicroArch(((0, "identity", 1, "sep3x3"),)), MicroSpace(5, ops=("sep3x3",)))


# -- files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".gv", ".dot"])
def test_source_suffixes_write_the_dot_source_only(tmp_path: Path, suffix: str):
    path = draw_arch(MICRO, tmp_path / f"cell{suffix}", MICRO_SPACE)
    assert path == tmp_path / f"cell{suffix}"
    assert path.read_text(encoding="utf-8") == arch_graph(MICRO, MICRO_SPACE).source
    assert list(tmp_path.iterdir()) == [path]


def test_unknown_suffix_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match=r"\.svg.*\.gv"):
        draw_arch(MACRO, tmp_path / "net.jpg")
    assert not any(tmp_path.iterdir())


def test_missing_dot_gives_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match=r"apt-get install graphviz.*\.gv"):
        draw_arch(MACRO, tmp_path / "net.svg")
    assert not any(tmp_path.iterdir())
    assert draw_arch(MACRO, tmp_path / "net.gv").is_file()  # the source needs no binary


@needs_dot
def test_svg_renders_and_names_every_op(tmp_path: Path):
    for arch, space, labels in ((MACRO, MACRO_SPACE, [f"{l}: {op}" for l, op in enumerate(MACRO.ops, 1)]),
                                (MICRO, MICRO_SPACE, [op for b in MICRO.blocks for op in b[1::2]])):
        path = draw_arch(arch, tmp_path / "arch.svg", space)
        texts = [t for el in ET.parse(path).getroot().iter() if el.tag.endswith("text") for t in [el.text] if t]
        for label in labels:
            assert label in texts
        assert list(tmp_path.iterdir()) == [path]  # no intermediate source file left beside it


@needs_dot
def test_png_renders(tmp_path: Path):
    path = draw_arch(MICRO, tmp_path / "cell.PNG", MICRO_SPACE, dpi="60")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [path]
