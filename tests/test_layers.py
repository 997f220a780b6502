"""The map stays true: every import in negscale/ goes down the layers of docs/design.md.

The test reads the layer table from the document itself (so the two cannot
drift apart), walks every ``import`` in the package (function-level ones too:
a lazy import still couples the modules), and fails on

* a module the table does not place in a layer,
* an import that runs up a layer, or
* a cycle between modules,

unless it is one of the KNOWN ones below (none are left: the parts import
their sections and specs from the torch-free config layer beneath them). A
KNOWN entry that no longer occurs fails too, so the lists only shrink.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "negscale"

KNOWN_UP: set[tuple[str, str]] = set()  # none left; keep it empty
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left; keep it empty


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def _targets(node: ast.AST, me: str, package: str) -> Iterator[str]:
    """The negscale modules one import statement loads (a name that is a submodule
    counts as that submodule, not as its package)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.startswith("negscale"))
        return
    if not isinstance(node, ast.ImportFrom):
        return
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    if not mod.startswith("negscale"):
        return
    whole = False
    for alias in node.names:
        if _is_module(f"{mod}.{alias.name}"):
            yield f"{mod}.{alias.name}"
        else:
            whole = True
    if whole and not me.startswith(mod + "."):  # a package's own modules run it anyway
        yield mod


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = {t for node in ast.walk(tree) for t in _targets(node, me, package)}
        graph[me] = found - {me, "negscale"}
    return graph


def layers() -> list[list[str]]:
    """The module prefixes of each row of design.md's layer table, top layer first."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    out = []
    for row in rows:
        cell = row.split("|")[2]
        paths = re.findall(r"`(negscale/[^`]*)`", cell)
        out.append([p.rstrip("/").removesuffix(".py").replace("/", ".") for p in paths])
    return out


def layer_of(module: str, table: list[list[str]]) -> int | None:
    for i, prefixes in enumerate(table):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer_in_the_design_document():
    table = layers()
    assert len(table) >= 6
    unplaced = [m for m in import_graph() if m != "negscale" and layer_of(m, table) is None]
    assert not unplaced, f"docs/design.md's layer table does not place: {unplaced}"


def test_imports_only_go_down_the_layers():
    table = layers()
    up = {
        (a, b)
        for a, targets in import_graph().items()
        for b in targets
        if (la := layer_of(a, table)) is not None
        and (lb := layer_of(b, table)) is not None
        and lb < la
    }
    assert not up - KNOWN_UP, f"imports that run up a layer: {sorted(up - KNOWN_UP)}"
    assert not KNOWN_UP - up, f"gone: drop from KNOWN_UP {sorted(KNOWN_UP - up)}"


def test_no_import_cycles():
    found = set(cycles(import_graph()))
    assert not found - KNOWN_CYCLES, f"import cycles: {[sorted(c) for c in found - KNOWN_CYCLES]}"
    assert not KNOWN_CYCLES - found, "gone: drop it from KNOWN_CYCLES"


def test_the_walker_sees_lazy_up_imports_and_cycles(tmp_path):
    """The checks themselves, on a graph with a known answer."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"b"}, "d": set()}
    assert cycles(graph) == [frozenset({"b", "c"})]
    tree = ast.parse("def f():\n    from negscale import config\n    from . import step\n")
    got = {t for node in ast.walk(tree) for t in _targets(node, "negscale.negatives.base",
                                                           "negscale.negatives")}  # fmt: skip
    assert got == {"negscale.config", "negscale.negatives.step"}


def test_only_the_build_functions_meet_a_recipe() -> None:
    """The parts take plain values or their own section: of the parts' modules, only
    ``negscale.negatives`` (its ``build``, which makes a source's ``SourceParams``)
    imports ``Recipe``; datasets and towers are built from their sections."""
    parts = ("negscale.data", "negscale.encoders", "negscale.negatives", "negscale.losses",
             "negscale.tiled_lse", "negscale.metrics")  # fmt: skip
    readers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_name(path)
        if not any(me == p or me.startswith(p + ".") for p in parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(a.name == "Recipe" for a in node.names):
                readers.add(me)
    assert readers == {"negscale.negatives"}
