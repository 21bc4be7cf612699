"""The documentation contract: every public name of larq_bnext documents its arguments.

"Public" means: each module of the package whose name has no leading underscore, and in each,
the names of its ``__all__`` (or, without one, the functions and classes it defines whose names
have no leading underscore), plus the public methods those classes define themselves. Keras
hooks are exempt (``build``/``call``/``get_config``/..., and any method that implements a
Keras base-class method with the same arguments, such as ``train_step`` or ``on_epoch_end``):
Keras documents them.

A public function, class or method needs a docstring; if it takes arguments, the docstring has a
Google-style ``Args:`` section naming each of them (``*args``/``**kwargs`` included), and names
no argument the signature lacks. The API page (docs/api.md, rendered by mkdocstrings) must
include every public module.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import larq_bnext

ROOT = Path(__file__).resolve().parents[1]
KERAS_HOOKS = {
    "build",
    "call",
    "get_config",
    "from_config",
    "compute_output_shape",
    "compute_output_signature",
    "compute_mask",
    "get_prunable_weights",
}
ARG_HEADERS = ("Args:", "Arguments:", "Parameters:")
# Sections of a Google-style docstring that end an Args section.
SECTION = re.compile(
    r"^(Returns|Yields|Raises|Examples?|Notes?|Attributes|Warnings?|See Also):\s*$"
)


@functools.cache
def public_modules() -> tuple[str, ...]:
    names = ["larq_bnext"]
    for info in pkgutil.walk_packages(larq_bnext.__path__, prefix="larq_bnext."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return tuple(sorted(names))


def public_objects(module):
    """(qualified name, object) for each public function and class of ``module``."""
    if hasattr(module, "__all__"):
        names = list(module.__all__)
    else:
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue  # documented where it lives
        home = getattr(obj, "__module__", module.__name__)
        if home != module.__name__ and home in public_modules():
            continue  # a re-export, checked in its home module
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj


def overrides_foreign_hook(cls, name: str, func) -> bool:
    """Whether ``func`` implements, with the same arguments, a method of a non-larq_bnext base
    (``tf.keras.Model.train_step``, ``Callback.on_epoch_end``, ...): Keras documents those."""
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("larq_bnext") or name not in vars(base):
            continue
        try:
            base_args = set(inspect.signature(getattr(base, name)).parameters)
        except (TypeError, ValueError):
            return True
        return set(inspect.signature(func).parameters) <= base_args
    return False


def public_methods(cls):
    for name, member in vars(cls).items():
        if name.startswith("_") or name in KERAS_HOOKS:
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) and not overrides_foreign_hook(cls, name, member):
            yield f"{cls.__module__}.{cls.__qualname__}.{name}", member


def documented_args(doc: str, headers_allowed=ARG_HEADERS) -> set[str] | None:
    """The argument names of the docstring's ``Args:`` section, or None if it has none."""
    lines = inspect.cleandoc(doc).splitlines()
    headers = [i for i, line in enumerate(lines) if line.strip() in headers_allowed]
    if not headers:
        return None
    start = headers[0]
    header_indent = len(lines[start]) - len(lines[start].lstrip())
    names: set[str] = set()
    entry_indent = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= header_indent or SECTION.match(line.strip()):
            break
        if entry_indent is None:
            entry_indent = indent
        if indent == entry_indent:
            match = re.match(r"\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:", line)
            if match:
                names.add(match.group(1))
    return names


def signature_args(func, *, drop_first: bool) -> list[str]:
    params = list(inspect.signature(func).parameters.values())
    if drop_first and params:
        params = params[1:]
    out = []
    for p in params:
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        out.append(prefix + p.name)
    return out


def init_of(cls):
    """The first ``__init__`` in the MRO, with whether ``cls`` must document its arguments:
    the package's own constructor, defined by ``cls`` itself or by a private base (a public
    base of the package documents the arguments it defines, and is checked there)."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            own = klass.__module__.startswith("larq_bnext") and (
                klass is cls or klass.__name__.startswith("_")
            )
            return vars(klass)["__init__"], own
    return object.__init__, False


def check(qualname: str, doc: str | None, args: list[str], problems: list[str], fields=False):
    """Append to ``problems`` what ``doc`` lacks; ``fields``: a dataclass, whose constructor
    arguments may be documented as ``Attributes:``."""
    if not doc or not doc.strip():
        problems.append(f"{qualname}: no docstring")
        return
    if not args:
        return
    headers = ARG_HEADERS + ("Attributes:",) if fields else ARG_HEADERS
    names = documented_args(doc, headers)
    if names is None:
        problems.append(f"{qualname}: no 'Args:' section for {args}")
        return
    plain = {n.lstrip("*") for n in names}
    missing = [a for a in args if a.lstrip("*") not in plain]
    if missing:
        problems.append(f"{qualname}: arguments not documented: {missing}")
    unknown = sorted(plain - {a.lstrip("*") for a in args})
    if unknown and not any(a.startswith("**") for a in args):
        problems.append(f"{qualname}: documents arguments it does not take: {unknown}")


def test_public_module_list_is_what_the_package_ships():
    modules = public_modules()
    # The modules the package was written with: the walk must find them (a walk that finds
    # nothing would make every other test here pass vacuously).
    assert {"larq_bnext.registry", "larq_bnext.models.layers", "larq_bnext.models.blocks"} <= set(
        modules
    )


def assert_documented(module_name: str) -> None:
    """Import ``module_name`` and fail with every documentation gap of its public API."""
    module = importlib.import_module(module_name)
    problems: list[str] = []
    if not (module.__doc__ or "").strip():
        problems.append(f"{module_name}: no module docstring")
    for name in getattr(module, "__all__", []):
        if not hasattr(module, name):
            problems.append(f"{module_name}.__all__ names {name!r}, which the module lacks")
    for qualname, obj in public_objects(module):
        if inspect.isclass(obj):
            init, own = init_of(obj)
            # A class documents its constructor's arguments; one inheriting a foreign
            # constructor (a Keras layer without __init__), or that of a public class of the
            # package (which documents them), needs only its docstring.
            args = signature_args(init, drop_first=True) if own else []
            check(qualname, obj.__doc__, args, problems, fields=dataclasses.is_dataclass(obj))
            for method_name, method in public_methods(obj):
                is_static = isinstance(vars(obj)[method_name.rsplit(".", 1)[1]], staticmethod)
                check(
                    method_name,
                    method.__doc__,
                    signature_args(method, drop_first=not is_static),
                    problems,
                )
        else:
            check(qualname, obj.__doc__, signature_args(obj, drop_first=False), problems)
    assert not problems, "Undocumented public API:\n  " + "\n  ".join(problems)


def _clashes_with_loaded_module(error: Exception) -> bool:
    # absl refuses a second definition of a flag name; command-line modules that define the
    # same flag cannot be imported into one process (test_public_modules_import_together).
    return type(error).__name__ == "DuplicateFlagError"


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_name_documents_its_arguments(module_name):
    try:
        importlib.import_module(module_name)
    except Exception as error:
        if not _clashes_with_loaded_module(error):
            raise
        # Check this module's documentation in a fresh interpreter instead.
        code = f"from tests.test_docs import assert_documented; assert_documented({module_name!r})"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return
    assert_documented(module_name)


def test_public_modules_import_together():
    # The API page documents every module as importable; a user combining two of them (say
    # larq_bnext.train's builders and larq_bnext.evaluate) must be able to import both.
    failures = {}
    for module_name in public_modules():
        try:
            importlib.import_module(module_name)
        except Exception as error:  # any import failure is the finding
            failures[module_name] = f"{type(error).__name__}: {error}"
    assert not failures, "Modules that cannot be imported alongside the others:\n" + "\n".join(
        f"  {name}: {message}" for name, message in failures.items()
    )


def test_api_page_lists_every_public_module():
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^:::\s*([\w.]+)", page, flags=re.M))
    submodules = [m for m in public_modules() if m != "larq_bnext"]
    missing = [m for m in submodules if m not in listed]
    assert not missing, f"docs/api.md has no '::: <module>' entry for {missing}"
    stale = sorted(m for m in listed if m not in public_modules())
    assert not stale, f"docs/api.md documents modules that do not exist: {stale}"


def test_docstring_args_parser_on_known_docstrings():
    # The parser the checks rely on, on hand-written docstrings.
    doc = """Summary.

    Args:
        x: first.
        y (int): second,
            on two lines.
        **kwargs: the rest.

    Returns:
        Something.
    """
    assert documented_args(doc) == {"x", "y", "**kwargs"}
    assert documented_args("Only a summary.") is None
    problems: list[str] = []
    check("f", doc, ["x", "z"], problems)
    assert problems == [
        "f: arguments not documented: ['z']",
        "f: documents arguments it does not take: ['kwargs', 'y']",
    ]


def test_every_command_line_module_has_a_flags_table():
    # docs/cli_flags_hook.py fills each marker from the code at build time; this checks that
    # no command is missing from the page, and that no marker names a module without flags.
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    marked = set(re.findall(r"<!--\s*cli-flags:\s*([\w.]+)\s*-->", page))
    with_flags = set()
    for name in public_modules():
        if name == "larq_bnext":
            continue
        path = ROOT / name.replace(".", "/")
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        source = path.read_text(encoding="utf-8")
        if re.search(r"^def define_flags\(", source, re.MULTILINE):
            with_flags.add(name)
        # Every program defines its flags in define_flags(), none at import.
        top_level = [line for line in source.splitlines() if line.startswith("flags.DEFINE_")]
        assert not top_level, f"{name} defines flags at import: {top_level[:2]}"
    assert with_flags, "expected at least larq_bnext.train to define flags"
    assert not with_flags - marked, f"docs/cli.md has no flags table for {with_flags - marked}"
    assert not marked - with_flags, (
        f"docs/cli.md has tables for modules without flags: {marked - with_flags}"
    )
