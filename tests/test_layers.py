"""The import graph of manager/ and glob/ follows the layers written once in docs/architecture.md.

The block fenced as ```layers in that file is the only statement of the rules; this test reads it,
parses every module with ``ast`` and checks three things:

- every module of manager/ and glob/ sits in exactly one layer (so a new module gets placed);
- every runtime import goes to the importer's own layer or a lower one, and no ``forbid`` line
  is broken (``allow`` lines are the written exceptions);
- no cycle runs through a package (a sub-folder of manager/, or glob/).

An import inside a function counts (a lazy import is still a dependency); an import under
``if TYPE_CHECKING:`` does not (it never runs). ``import glob`` with no dot is the standard
library's glob, never our folder.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
SCANNED = ("manager", "glob")
CORE = "manager"

TOP, LAZY, TYPING = "top", "lazy", "typing"


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    path: str
    line: int
    kind: str  # TOP (runs at import), LAZY (inside a function), TYPING (never runs)

    def where(self) -> str:
        return f"{self.path}:{self.line}" + (" (in a function)" if self.kind == LAZY else "")


@dataclass(frozen=True)
class Rules:
    layers: tuple[tuple[str, tuple[str, ...]], ...]  # bottom first
    forbid: tuple[tuple[str, str], ...]
    allow: tuple[tuple[str, str], ...]

    def rank(self, name: str) -> int:
        return [n for n, _ in self.layers].index(name)


# -- the rules -------------------------------------------------------------------------------------
def parse_rules(text: str) -> Rules:
    blocks = re.findall(r"^```layers[ \t]*\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 1, f"expected exactly one ```layers block in docs/architecture.md, found {len(blocks)}"
    layers: list[tuple[str, tuple[str, ...]]] = []
    forbid: list[tuple[str, str]] = []
    allow: list[tuple[str, str]] = []
    for raw in blocks[0].splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if raw[:1].isspace() and layers:  # an indented line continues the layer above it
            name, patterns = layers[-1]
            layers[-1] = (name, patterns + tuple(line.split()))
            continue
        key, sep, rest = line.partition(":")
        assert sep and rest.strip(), f"unreadable line in the layers block: {raw!r}"
        key = key.strip()
        if key in ("forbid", "allow"):
            src, arrow, dst = rest.partition("->")
            assert arrow and src.strip() and dst.strip(), f"expected 'A -> B' in: {raw!r}"
            (forbid if key == "forbid" else allow).append((src.strip(), dst.strip()))
        else:
            assert key not in {n for n, _ in layers}, f"layer {key!r} is written twice"
            layers.append((key, tuple(rest.split())))
    assert layers, "the layers block names no layer"
    layers.reverse()  # written top first, like the picture
    return Rules(tuple(layers), tuple(forbid), tuple(allow))


def matches(module: str, pattern: str) -> bool:
    """``pkg.*`` covers the package and everything under it; any other pattern is an fnmatch."""
    if pattern.endswith(".*"):
        base = pattern[:-2]
        return module == base or module.startswith(base + ".")
    return fnmatch.fnmatchcase(module, pattern)


def layers_of(module: str, rules: Rules) -> list[str]:
    return [name for name, patterns in rules.layers if any(matches(module, p) for p in patterns)]


# -- the graph -------------------------------------------------------------------------------------
def discover(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the scanned folders."""
    found: dict[str, Path] = {}
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, modules: dict[str, Path], root: Path) -> list[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    rel = str(path.relative_to(root))
    edges: list[Edge] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names if a.name.split(".")[0] == CORE]
        if node.level == 0:
            base = node.module or ""
            if base.split(".")[0] != CORE:  # a bare "glob" is the standard library's
                return []
        else:
            parts = package.split(".") if package else []
            parts = parts[: max(len(parts) - (node.level - 1), 0)]  # past the top: the repository's package
            base = ".".join(parts + ([node.module] if node.module else []))
        return [f"{base}.{a.name}" if base else a.name for a in node.names]

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_one(stmt, TYPING)
                for stmt in child.orelse:
                    visit_one(stmt, kind)
                continue
            inner = (
                LAZY if kind == TOP and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else kind
            )
            visit_one(child, inner)

    def visit_one(node: ast.AST, kind: str) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in targets(node):
                dst = _known(name, modules)
                if dst is not None and dst != module:
                    edges.append(Edge(module, dst, rel, node.lineno, kind))
            return
        visit(node, kind)

    visit(tree, TOP)
    return edges


def import_graph(root: Path) -> tuple[dict[str, Path], list[Edge]]:
    modules = discover(root)
    edges = [e for m, p in modules.items() for e in imports_of(m, p, modules, root)]
    return modules, edges


# -- the checks ------------------------------------------------------------------------------------
def unplaced(modules: dict[str, Path], rules: Rules) -> list[str]:
    out = []
    for m, path in sorted(modules.items()):
        found = layers_of(m, rules)
        if len(found) != 1:
            what = "is in no layer" if not found else f"is in {len(found)} layers ({', '.join(found)})"
            out.append(f"{m} ({path.name}) {what}")
    return out


def layer_violations(edges: list[Edge], rules: Rules) -> list[str]:
    out = []
    for e in edges:
        if e.kind == TYPING:
            continue
        if any(matches(e.src, a) and matches(e.dst, b) for a, b in rules.allow):
            continue
        src_layers, dst_layers = layers_of(e.src, rules), layers_of(e.dst, rules)
        if len(src_layers) != 1 or len(dst_layers) != 1:
            continue  # reported by the placement check
        la, lb = src_layers[0], dst_layers[0]
        broken = [f"{a} -> {b}" for a, b in rules.forbid if matches(e.src, a) and matches(e.dst, b)]
        if broken:
            out.append(f"{e.src} -> {e.dst} ({e.where()}): forbidden by 'forbid: {broken[0]}'")
        elif rules.rank(lb) > rules.rank(la):
            out.append(f"{e.src} -> {e.dst} ({e.where()}): layer {la!r} may not import layer {lb!r}")
    return out


def unit_of(module: str, modules: dict[str, Path]) -> str:
    """A package (sub-folder of manager/, or glob/) is one unit; a top-level module of manager/ is its own."""
    parts = module.split(".")
    if parts[0] != CORE:
        return parts[0]
    if len(parts) > 1 and any(m.startswith(f"{CORE}.{parts[1]}.") for m in modules):
        return f"{CORE}.{parts[1]}"
    return module


def package_cycles(modules: dict[str, Path], edges: list[Edge]) -> list[str]:
    graph: dict[str, set[str]] = defaultdict(set)
    witness: dict[tuple[str, str], Edge] = {}
    for e in edges:
        if e.kind == TYPING:
            continue
        a, b = unit_of(e.src, modules), unit_of(e.dst, modules)
        if a != b:
            graph[a].add(b)
            witness.setdefault((a, b), e)
    packages = {
        u for u in set(graph) | {v for vs in graph.values() for v in vs} if any(m.startswith(u + ".") for m in modules)
    }

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    out = []
    for comp in components:
        if len(comp) < 2 or not packages.intersection(comp):
            continue
        inside = sorted((a, b) for a in comp for b in graph.get(a, ()) if b in comp)
        steps = "; ".join(
            f"{a} -> {b} ({witness[a, b].src} -> {witness[a, b].dst}, {witness[a, b].where()})" for a, b in inside
        )
        out.append(f"cycle between {', '.join(comp)}: {steps}")
    return out


# -- the tests -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rules() -> Rules:
    return parse_rules(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    return import_graph(REPO)


def test_every_module_sits_in_exactly_one_layer(rules, graph):
    modules, _ = graph
    assert len(modules) > 50
    problems = unplaced(modules, rules)
    assert not problems, "place each module in one layer of docs/architecture.md:\n  " + "\n  ".join(problems)


def test_no_import_runs_against_the_layers(rules, graph):
    _, edges = graph
    problems = layer_violations(edges, rules)
    assert not problems, "imports against the layers of docs/architecture.md:\n  " + "\n  ".join(problems)


def test_no_cycle_between_packages(graph):
    modules, edges = graph
    problems = package_cycles(modules, edges)
    assert not problems, "packages that import each other:\n  " + "\n  ".join(problems)


def test_the_checks_catch_what_they_should(tmp_path):
    """A small tree with one of each fault: the checks name each one, and only those."""
    files = {
        "manager/__init__.py": "",
        "manager/errors.py": "import glob\nimport typing\nif typing.TYPE_CHECKING:\n    from .engine import x\n",
        "manager/stray.py": "",
        "manager/engine/__init__.py": "from ..errors import E\n",
        "manager/engine/verb.py": "def f():\n    from ..plans.restore import r\n",
        "manager/plans/__init__.py": "",
        "manager/plans/restore.py": "from ..engine import verb\nfrom .. import errors\n",
        "manager/api/__init__.py": "",
        "manager/api/standalone.py": "",
        "manager/api/routes.py": "",
        "manager/cli/__init__.py": "",
        "manager/cli/serve.py": "from ..api.standalone import serve\n",
        "manager/cli/ops.py": "from ..api import routes\n",
        "glob/bootstrap.py": "from ..manager.api import routes\n",
    }
    for rel, body in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body, encoding="utf-8")
    rules = parse_rules(
        "```layers\n"
        "glue: glob.*\n"
        "doors: manager.api.* manager.cli.*   # a comment\n"
        "engine: manager.engine.* manager.plans.* manager.err*\n"
        "foundation: manager\n"
        "    manager.errors\n"
        "forbid: manager.cli.* -> manager.api.*\n"
        "allow: manager.cli.serve -> manager.api.standalone\n"
        "```\n"
    )
    modules, edges = import_graph(tmp_path)
    assert "glob.bootstrap" in modules and "manager" in modules
    # the stdlib's glob is not ours; the TYPE_CHECKING import is seen but never checked
    assert [(e.dst, e.kind) for e in edges if e.src == "manager.errors"] == [("manager.engine", TYPING)]
    assert unplaced(modules, rules) == [
        "manager.errors (errors.py) is in 2 layers (foundation, engine)",
        "manager.stray (stray.py) is in no layer",
    ]
    assert layer_violations(edges, rules) == [
        "manager.cli.ops -> manager.api.routes (manager/cli/ops.py:1): "
        "forbidden by 'forbid: manager.cli.* -> manager.api.*'"
    ]
    cycles = package_cycles(modules, edges)
    assert cycles == [
        "cycle between manager.engine, manager.plans: "
        "manager.engine -> manager.plans (manager.engine.verb -> manager.plans.restore, "
        "manager/engine/verb.py:2 (in a function)); "
        "manager.plans -> manager.engine (manager.plans.restore -> manager.engine.verb, "
        "manager/plans/restore.py:1)"
    ]
    # the upward import: the core reaching for the ComfyUI glue
    (tmp_path / "manager/errors.py").write_text("from ..glob import bootstrap\n", encoding="utf-8")
    _, edges = import_graph(tmp_path)
    assert layer_violations(edges, parse_rules("```layers\nglue: glob.*\nbase: manager manager.*\n```\n")) == [
        "manager.errors -> glob.bootstrap (manager/errors.py:1): layer 'base' may not import layer 'glue'"
    ]
