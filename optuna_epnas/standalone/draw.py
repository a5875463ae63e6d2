"""Architecture drawings: a macro network or a micro cell as a Graphviz graph, wired as ``optuna_epnas.nn`` wires it.

``arch_graph`` builds the graph (pure Python, no binary); ``draw_arch`` writes it to a file, rendering
.svg/.png/.pdf with Graphviz's ``dot`` or writing the DOT source for .gv/.dot. Layout is left to ``dot``.
Each space's drawing is registered beside it (``register_space(cls, drawing=...)``); this module
registers the macro and micro ones.

Node names are stable so that tests and tools can read the source: macro ``input``, ``stem``, ``L<l>``
(layer l's op), ``M<l>`` (its skip merge), ``R<l>`` (the reduction after layer l), ``pool``, ``linear``;
micro ``in0``/``in1`` (prev/prev2), ``op<b>_<k>`` (branch k of block b), ``B<b>`` (block b's sum),
``concat``, ``project``, ``output``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import graphviz

from optuna_epnas.standalone.export import ModelSpec, default_space
from optuna_epnas.spaces import MacroArch, MacroSpace, MicroArch, MicroSpace, SearchSpace, register_space
from optuna_epnas.spaces.micro import input_name
from optuna_epnas.spaces.registry import arch_types, drawing_of

__all__ = ["arch_graph", "draw_arch"]

#: Fill colour per op kind, so an op reads the same in every drawing.
KIND_COLORS: dict[str, str] = {
    "conv": "#9ecae1",  # blue
    "sep": "#a1d99b",  # green
    "pool": "#fdd0a2",  # orange
    "identity": "#e0e0e0",  # grey
}
_PLAIN = "#ffffff"
_STRUCTURE = "#f2f2f2"  # stem, reductions, head: not searched
_REDUCE = "#dadaeb"  # lilac: stands out from the op kinds
# Skip edges are coloured by their source so a reader can follow one source's skips down the chain.
_SKIP_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                "#ff7f0e", "#393b79", "#637939", "#843c39", "#7b4173")
_FONT = "Helvetica"

RENDERED_SUFFIXES = (".svg", ".png", ".pdf")
SOURCE_SUFFIXES = (".gv", ".dot")


def op_kind(op: str) -> str:
    """``conv``, ``sep``, ``pool`` or ``identity``: what an op's colour says."""
    if op.startswith("sep"):
        return "sep"
    if op.startswith(("max", "avg")):
        return "pool"
    if op == "identity":
        return "identity"
    return "conv"


def _op_attrs(op: str) -> dict[str, str]:
    return {"fillcolor": KIND_COLORS[op_kind(op)]}


def _new_graph(name: str, caption: str) -> graphviz.Digraph:
    g = graphviz.Digraph(name)
    g.attr(rankdir="TB", fontname=_FONT, fontsize="12", label=caption, labelloc="b",
           nodesep="0.3", ranksep="0.3")
    g.attr("node", fontname=_FONT, fontsize="13", shape="box", style="rounded,filled", fillcolor=_PLAIN,
           height="0.35", margin="0.12,0.04")
    g.attr("edge", fontname=_FONT, fontsize="10", arrowsize="0.7")
    return g


def _legend(g: graphviz.Digraph, ops: set[str]) -> None:
    """One swatch per op kind present, in a row, so colours need no guessing."""
    kinds = [k for k in KIND_COLORS if any(op_kind(o) == k for o in ops)]
    cells = "".join(f'<TD BGCOLOR="{KIND_COLORS[k]}">{k}</TD>' for k in kinds)
    g.node("legend", f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="4" CELLPADDING="4"><TR>{cells}</TR></TABLE>>',
           shape="plaintext", style="", fontsize="11")


# -- macro ---------------------------------------------------------------------------------------
def _macro_graph(space: MacroSpace, arch: MacroArch) -> graphviz.Digraph:
    depth = arch.level
    # Drawn before the layer they feed, so one after the last layer (MacroNet has none there) never shows.
    reductions = space.reduction_layers()
    where = (f"The space reduces after layer{'s' * (len(reductions) > 1)} {' and '.join(map(str, reductions))}."
             if reductions else "The space has no reductions.")
    caption = (f"\nmacro network, {depth} of {space.num_layers} layers. Dashed: skip inputs, summed into the layer's\n"
               "output, then BN; skips from before a reduction are average-pooled to the current resolution\n"
               "(no weights). " + where)
    g = _new_graph("macro", caption)
    g.node("input", "input image", fillcolor=_PLAIN)
    g.node("stem", "stem: conv3x3 + BN", fillcolor=_STRUCTURE)
    g.edge("input", "stem", weight="10")
    _legend(g, set(arch.ops))
    g.edge("legend", "input", style="invis")

    out = ["stem"]  # out[s]: node holding source s, the output of layer s (stem for s = 0)
    for layer, (op, sources) in enumerate(zip(arch.ops, arch.skips), start=1):
        feed = out[-1]
        if layer - 1 in reductions:  # the reduction after layer p feeds layer p + 1
            g.node(f"R{layer - 1}", "reduce: ReLU-conv3x3/2-BN", fillcolor=_REDUCE, fontsize="11")
            g.edge(feed, f"R{layer - 1}", weight="10")
            feed = f"R{layer - 1}"
        g.node(f"L{layer}", f"{layer}: {op}", **_op_attrs(op))
        g.edge(feed, f"L{layer}", weight="10")
        if not sources:
            out.append(f"L{layer}")
            continue
        merge = f"M{layer}"
        # The label names the sources too: arrowheads of several skips can land on one spot.
        names = ", ".join("stem" if s == 0 else str(s) for s in sources)
        g.node(merge, f"+ [{names}] \u2192 BN", shape="ellipse", style="filled", fillcolor=_PLAIN, fontsize="11",
               height="0.25", margin="0.02,0.01")
        g.edge(f"L{layer}", merge, weight="10")
        for s in sources:
            # constraint=false: skips must not pull the chain apart; the chain alone sets the ranks.
            color = _SKIP_COLORS[s % len(_SKIP_COLORS)]
            g.edge(out[s], merge, style="dashed", color=color, constraint="false", penwidth="1.3",
                   tailport="e")
        out.append(merge)

    g.node("pool", "ReLU, global avg pool", fillcolor=_STRUCTURE)
    g.node("linear", "linear classifier", fillcolor=_STRUCTURE)
    g.edge(out[-1], "pool", weight="10")
    g.edge("pool", "linear", weight="10")
    return g


# -- micro ---------------------------------------------------------------------------------------
def _micro_graph(space: MicroSpace, arch: MicroArch, cells: int | None = None) -> graphviz.Digraph:
    cells = space.cells if cells is None else cells
    read = {i for in1, _, in2, _ in arch.blocks for i in (in1, in2)}
    stack = " \u2192 ".join([f"{cells} \u00d7 normal", "reduction"] * 2 + [f"{cells} \u00d7 normal"])
    caption = (f"\nmicro cell, {arch.level} of {space.num_blocks} blocks, used at every position of the network:\n"
               f"stem \u2192 {stack} \u2192 ReLU, global avg pool \u2192 linear.\n"
               "In a reduction cell the bold-bordered ops (reading prev/prev2) use stride 2 (identity becomes\n"
               "a strided 1x1 conv) and the channels double; after one, prev2 is read through a strided 1x1 conv.")
    g = _new_graph("micro", caption)
    _legend(g, {op for _, op1, _, op2 in arch.blocks for op in (op1, op2)})

    with g.subgraph() as inputs:
        inputs.attr(rank="same")
        for i, name, sub in ((1, "prev2", "k-2"), (0, "prev", "k-1")):
            # The network builds an input's 1x1 preprocessing only when some block reads it.
            used = i in read
            note = "ReLU-conv1x1-BN" if used else "not read"
            # A table row per line: with <BR/> the subscript runs into the second line.
            label = (f'<<TABLE BORDER="0" CELLPADDING="0" CELLSPACING="1"><TR><TD>{name} (c<SUB>{sub}</SUB>)</TD></TR>'
                     f'<TR><TD><FONT POINT-SIZE="10">{note}</FONT></TD></TR></TABLE>>')
            inputs.node(f"in{i}", label, fillcolor="#fff7bc" if used else _PLAIN,
                        **({} if used else {"style": "rounded,dashed", "fontcolor": "#808080", "color": "#808080"}))
    g.edge("legend", "in1", style="invis")

    def source(i: int) -> str:
        return f"in{i}" if i < 2 else f"B{i - 1}"

    for b, (in1, op1, in2, op2) in enumerate(arch.blocks, start=1):
        with g.subgraph() as ops:  # a block's two branches side by side
            ops.attr(rank="same")
            for k, (i, op) in enumerate(((in1, op1), (in2, op2)), start=1):
                ops.node(f"op{b}_{k}", op, tooltip=f"block {b}, branch {k}: {op}({input_name(i)})",
                         penwidth="2.2" if i < 2 else "1", **_op_attrs(op))
        for k, i in enumerate((in1, in2), start=1):
            g.edge(source(i), f"op{b}_{k}")
            g.edge(f"op{b}_{k}", f"B{b}")
        g.node(f"B{b}", f"b{b}: +", shape="ellipse", style="filled", fillcolor=_PLAIN, fontsize="12",
               height="0.3", margin="0.03,0.01")

    g.node("concat", "concat", fillcolor=_STRUCTURE)
    for b in arch.outputs():
        g.edge(f"B{b}", "concat")
    g.node("project", "ReLU-1x1 conv-BN", fillcolor=_STRUCTURE)
    g.node("output", "<cell output (c<SUB>k</SUB>)>", fillcolor="#fff7bc")
    g.edge("concat", "project")
    g.edge("project", "output")
    return g


register_space(MacroSpace, drawing=_macro_graph)
register_space(MicroSpace, drawing=_micro_graph)


# -- API -----------------------------------------------------------------------------------------
def arch_graph(arch: Any, space: SearchSpace | None = None) -> graphviz.Digraph:
    """The drawing of ``arch`` as a :class:`graphviz.Digraph` (built without the Graphviz binary).

    Args:
        arch: a macro architecture (the whole network), a micro cell, or a :class:`ModelSpec` (its
            space, architecture and, for a micro network, its normal cells per stage).
        space: the architecture's search space (default: :func:`optuna_epnas.standalone.export.default_space`).
            Partial architectures (fewer units than the space) are drawn as the network built for them.
    """
    options: dict[str, Any] = {}
    if isinstance(arch, ModelSpec):
        if space is not None:
            raise ValueError("a ModelSpec carries its own search space; leave space out")
        options = arch.options
        space, arch = arch.resolve()
    if space is None:
        if not isinstance(arch, arch_types()):
            names = ", ".join(t.__name__ for t in arch_types())
            raise TypeError(f"expected an architecture ({names}) or a ModelSpec, got {type(arch).__name__}")
        space = default_space(arch)
    space.validate(arch)  # TypeError: not of the space's kind
    if space.level(arch) == 0:
        raise ValueError("the empty architecture has nothing to draw")
    return drawing_of(space)(space, arch, **options)


def draw_arch(arch: Any, path: str | os.PathLike, space: SearchSpace | None = None,
              **graph_attrs: Any) -> Path:
    """Write the drawing of ``arch`` to ``path``; the suffix picks the format.

    .svg, .png and .pdf are rendered with Graphviz's ``dot``; .gv and .dot get the DOT source only
    (no binary needed). ``graph_attrs`` are extra Graphviz graph attributes (e.g. ``dpi="150"``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in RENDERED_SUFFIXES + SOURCE_SUFFIXES:
        raise ValueError(f"cannot tell the format of {str(path)!r}; use one of "
                         f"{', '.join(RENDERED_SUFFIXES + SOURCE_SUFFIXES)}")
    graph = arch_graph(arch, space)
    graph.attr(**graph_attrs)
    if suffix in SOURCE_SUFFIXES:
        path.write_text(graph.source, encoding="utf-8")
        return path
    try:
        data = graph.pipe(format=suffix[1:])  # through a pipe: no intermediate source file on disk
    except graphviz.ExecutableNotFound:
        raise RuntimeError(
            f"rendering {suffix} needs Graphviz's 'dot' program, which is not on PATH: install it "
            "(e.g. `apt-get install graphviz`) or write the DOT source with a .gv path") from None
    path.write_bytes(data)
    return path
