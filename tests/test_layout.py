"""The package's shape (issue 27): a folder per pipeline stage, few top-level modules, no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna_epnas

ROOT = Path(optuna_epnas.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports, at module level or inside functions; imports under ``if
    TYPE_CHECKING:`` (type hints only) are left out."""
    tree = ast.parse(path.read_text())
    hints = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
             for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("optuna_epnas"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("optuna_epnas")}
    return {m for m in found if m in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = [stack.pop()]
            while group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_through_others():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []
    graph["optuna_epnas.costs.cost"].add("optuna_epnas.search")  # the check itself: a circle is found
    assert any({"optuna_epnas.costs.cost", "optuna_epnas.search"} <= set(c) for c in _cycles(graph))


def test_the_top_level_is_a_few_modules_and_a_folder_per_stage():
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top
    assert {"supernet", "storage", "costs", "standalone", "data", "sampler", "spaces", "nn"} <= {
        p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
