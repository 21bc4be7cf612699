"""The package's layout: no import cycle between modules or subpackages, and the weights
package builds no models (data flows size -> registry -> model -> weights); the notebooks are
well-formed for their format version."""

import ast
import re
import subprocess
import sys
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


#: A smell detector, not a target: a module this long almost surely does more than one job.
#: Modules are split by concern (one job each), never trimmed to stay under a count; the
#: largest today are about 450 lines, so only a module that doubles trips it.
SMELL_MODULE_LINES = 1000


def test_no_module_is_long_enough_to_smell():
    long = {
        str(path.relative_to(PACKAGE.parent)): count
        for path in sorted(PACKAGE.rglob("*.py"))
        if (count := len(path.read_text().splitlines())) > SMELL_MODULE_LINES
    }
    assert not long, f"modules over {SMELL_MODULE_LINES} lines (split them by concern): {long}"


def _private_uses(source: str, own: str, modules: set[str]) -> list[str]:
    """Private names (``_x``) that module ``own`` takes from another larq_bnext module:
    imported by name, or read as an attribute of an imported module."""
    tree = ast.parse(source)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if target in modules:
                    aliases[alias.asname or alias.name] = target
                elif alias.name.startswith("_") and node.module != own:
                    found.append(f"{own}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{own}: {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_private_name_is_used_across_modules():
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    found = [
        use
        for path in sorted(PACKAGE.rglob("*.py"))
        for use in _private_uses(path.read_text(), _module_name(path), modules)
    ]
    assert not found, "private names used outside their module (make them public):\n  " + (
        "\n  ".join(found)
    )


def test_the_private_name_check_finds_both_kinds():
    modules = {
        "larq_bnext.weights.mapping",
        "larq_bnext.training",
        "larq_bnext.training.runtime",
        "larq_bnext.training.runtime.checkpoints",
    }
    source = (
        "from larq_bnext.weights.mapping import _Target, keras_weight_map\n"
        "from larq_bnext.training.runtime import checkpoints\n"
        "checkpoints._write_manifest('x')\n"
    )
    assert _private_uses(source, "larq_bnext.training.example", modules) == [
        "larq_bnext.training.example: from larq_bnext.weights.mapping import _Target",
        "larq_bnext.training.example: larq_bnext.training.runtime.checkpoints._write_manifest",
    ]


def test_python_requires_is_the_lowest_python_the_code_runs_on():
    setup_py = (PACKAGE.parent / "setup.py").read_text()
    lowest = tuple(int(v) for v in re.search(r'python_requires=">=(\d+)\.(\d+)', setup_py).groups())
    sources = {path: path.read_text() for path in PACKAGE.rglob("*.py")}
    # zip(..., strict=True) came with Python 3.10: the code needs it, so 3.9 cannot be allowed.
    strict_zip = [
        path
        for path, source in sources.items()
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "zip"
        and any(k.arg == "strict" for k in node.keywords)
    ]
    assert lowest == (3, 10) and strict_zip
    for path, source in sources.items():
        ast.parse(source, filename=str(path), feature_version=lowest)  # no newer syntax


def test_the_version_is_written_once():
    import larq_bnext

    setup_py = (PACKAGE.parent / "setup.py").read_text()
    assert larq_bnext.__version__ not in setup_py  # setup.py reads it from the package
    result = subprocess.run(
        [sys.executable, "setup.py", "--version"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip().splitlines()[-1] == larq_bnext.__version__


def test_every_notebook_cell_has_the_id_its_format_requires():
    # nbformat 4.5 requires a unique id per cell (1-64 of [a-zA-Z0-9-_]); nbmake only warns
    # about a missing one today ("will become a hard error"), so check the files themselves.
    import json

    notebooks = sorted((PACKAGE.parent / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        notebook = json.loads(path.read_text())
        assert (notebook["nbformat"], notebook["nbformat_minor"]) >= (4, 5), path.name
        ids = [cell.get("id") for cell in notebook["cells"]]
        assert all(isinstance(i, str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in ids), (
            path.name,
            ids,
        )
        assert len(set(ids)) == len(ids), path.name


def test_every_package_docstring_names_every_module_of_training():
    """Each package of larq_bnext.training has a docstring that is its map: it names each of
    its modules and sub-packages."""
    import importlib

    missing = []
    for init in sorted((PACKAGE / "training").rglob("__init__.py")):
        folder = init.parent
        package = ".".join(folder.relative_to(PACKAGE.parent).parts)
        doc = importlib.import_module(package).__doc__ or ""
        children = [p.stem for p in folder.glob("*.py") if p.stem != "__init__"]
        children += [p.parent.name for p in folder.glob("*/__init__.py")]
        missing += [f"{package}.{c}" for c in children if f"{package}.{c}`" not in doc]
    assert not missing, f"package docstrings do not name: {missing}"
