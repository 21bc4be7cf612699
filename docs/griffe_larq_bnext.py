"""A griffe extension that lets the API reference read larq_bnext as its authors wrote it.

The package is analysed statically (its source, not an import), which keeps the real
``__all__`` filtering and source order. Three things static analysis cannot see are added here:

* module-level callables made by a factory (``BNextT = _sized("tiny")``) are documented as
  functions, with the signature and docstring they have at run time;
* ``#:`` comments above a module constant become its docstring;
* Sphinx roles (``:func:`BNext```, ``:class:`...```) in docstrings are shown as code.

It also warns, which fails ``mkdocs build --strict``, when a public name (a module's
``__all__``, the public methods of its public classes) has no docstring, or takes arguments
that its docstring's ``Args:`` section does not name. Keras hooks (``build``, ``call``,
``train_step``, ``Callback.on_*``, ...) and keras-cv's augmentation hooks (``augment_images``,
...) are exempt, as on the API page.
"""

from __future__ import annotations

import importlib
import inspect
import re

import griffe

logger = griffe.get_logger("larq_bnext.docs")
_KERAS_HOOK = re.compile(
    r"^(build|call|get_config|from_config|compute_output_shape|train_step|test_step"
    r"|predict_step|update_step|update_state|result|reset_state|on_[a-z_]+"
    # keras-cv's augmentation-layer hooks, which keras-cv documents.
    r"|augment_[a-z_]+|compute_ragged_image_signature|get_random_transformation(_batch)?)$"
)
_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj|exc|const):`~?([^`]+)`")
_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _annotation(value):
    if value is inspect.Parameter.empty or value is inspect.Signature.empty:
        return None
    return value if isinstance(value, str) else getattr(value, "__name__", repr(value))


def _function_from_runtime(attr: griffe.Attribute, func, loader) -> griffe.Function:
    signature = inspect.signature(func)
    parameters = griffe.Parameters(
        *(
            griffe.Parameter(
                p.name,
                annotation=_annotation(p.annotation),
                kind=_KINDS[p.kind],
                default=None if p.default is inspect.Parameter.empty else repr(p.default),
            )
            for p in signature.parameters.values()
        )
    )
    docstring = None
    if func.__doc__:
        docstring = griffe.Docstring(
            func.__doc__,
            lineno=attr.lineno,
            endlineno=attr.endlineno,
            parser=loader.docstring_parser,
            parser_options=loader.docstring_options,
        )
    return griffe.Function(
        attr.name,
        lineno=attr.lineno,
        endlineno=attr.endlineno,
        parameters=parameters,
        returns=_annotation(signature.return_annotation),
        docstring=docstring,
    )


def _comment_docstring(attr: griffe.Attribute, module: griffe.Module, loader):
    lines = module.lines
    if not lines or not attr.lineno:
        return None
    comment = []
    index = attr.lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        comment.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    if not comment:
        return None
    return griffe.Docstring(
        "\n".join(comment),
        lineno=index + 2,
        endlineno=attr.lineno - 1,
        parser=loader.docstring_parser,
        parser_options=loader.docstring_options,
    )


class LarqBNextDocs(griffe.Extension):
    """Complete the statically analysed larq_bnext package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader, **kwargs) -> None:
        """Rewrite the loaded package in place.

        Args:
            pkg: the package griffe loaded.
            loader: the loader, for the docstring parser and its options.
            **kwargs: other hook arguments (unused).
        """
        self._visit_module(pkg, loader)
        self._check_documented(pkg)

    def _visit_module(self, module: griffe.Module, loader) -> None:
        if module.docstring is not None:
            module.docstring.value = _ROLE.sub(r"`\1`", module.docstring.value)
        runtime = None
        for name, member in list(module.members.items()):
            if member.is_alias:
                continue
            if member.is_module:
                self._visit_module(member, loader)
                continue
            if member.is_attribute:
                value = None
                if member.is_public and isinstance(member.value, griffe.ExprCall):
                    # Possibly a factory-made function: import the module to see it. (Only
                    # then: the CLI modules define absl flags on import.)
                    if runtime is None:
                        runtime = importlib.import_module(module.path)
                    value = getattr(runtime, name, None)
                if inspect.isfunction(value):
                    member = _function_from_runtime(member, value, loader)
                    module.set_member(name, member)
                elif member.docstring is None:
                    member.docstring = _comment_docstring(member, module, loader)
                    if member.docstring is not None:
                        member.docstring.parent = member
            self._clean_roles(member)

    def _clean_roles(self, obj) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
        for child in obj.members.values():
            if not child.is_alias and not child.is_module:
                self._clean_roles(child)

    def _check_documented(self, module: griffe.Module) -> None:
        for member in module.members.values():
            if member.is_alias:
                continue
            if member.is_module:
                if not member.name.startswith("_"):
                    self._check_documented(member)
                continue
            if not member.is_public or not (member.is_function or member.is_class):
                continue
            self._check_one(member)
            if member.is_class:
                for method in member.members.values():
                    if (
                        not method.is_alias
                        and method.is_function
                        and not method.name.startswith("_")
                        and not _KERAS_HOOK.match(method.name)
                    ):
                        self._check_one(method)

    def _check_one(self, obj) -> None:
        where = f"{obj.relative_filepath}:{obj.lineno}"
        if obj.docstring is None or not obj.docstring.value.strip():
            logger.warning(f"{where}: {obj.path} has no docstring")
            return
        if obj.is_class:
            init = obj.members.get("__init__")
            if init is None or init.is_alias:
                return  # inherits a foreign constructor (a Keras layer without __init__)
            parameters = init.parameters
        else:
            parameters = obj.parameters
        names = [p.name for p in parameters if p.name not in ("self", "cls")]
        if not names:
            return
        kinds = {griffe.DocstringSectionKind.parameters}
        if obj.is_class and "dataclass" in obj.labels:
            kinds.add(griffe.DocstringSectionKind.attributes)  # fields are the arguments
        documented = set()
        for section in obj.docstring.parsed:
            if section.kind in kinds:
                documented |= {p.name.lstrip("*") for p in section.value}
        missing = [n for n in names if n not in documented]
        if missing:
            logger.warning(f"{where}: {obj.path} does not document its arguments {missing}")
