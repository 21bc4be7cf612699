"""The package's layout: no import cycle between modules or subpackages, and the weights
package builds no models (data flows size -> registry -> model -> weights)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "larq_bnext"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every larq_bnext module a module imports, at any depth of its code."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycle(graph):
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_module_import_cycle():
    graph = _imports()
    # A package's __init__ re-exports its modules; the edge back to it is not a dependency.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_subpackage_cycle_and_weights_builds_no_models():
    def top(name):
        parts = name.split(".")
        return ".".join(parts[:2])

    packages = {}
    for name, deps in _imports().items():
        for dep in deps:
            if top(dep) != top(name) and top(dep) != "larq_bnext" and top(name) != "larq_bnext":
                packages.setdefault(top(name), set()).add(top(dep))
    assert _cycle(packages) is None, f"subpackage cycle: {_cycle(packages)}"
    assert "larq_bnext.models" not in packages.get("larq_bnext.weights", set())
    assert "larq_bnext.registry" in packages.get("larq_bnext.weights", set())
