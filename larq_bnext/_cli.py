"""What the command-line programs share: one vocabulary of flags, argument checks, errors.

Each program defines its flags in a ``define_flags(flag_values)`` function that runs only when
the module runs as a program, so that importing one (for its ``run`` function, or beside
another program that also has ``--model``) claims no names in absl's global registry.

The flags that name the same thing in several programs are spelled and explained once, here
(:data:`VOCABULARY`: ``--model``, ``--weights``, ``--image_size``, ``--output_dir``, ...);
``--output`` names a file a program writes, ``--output_dir`` a folder. The flags of settings
of a :class:`~larq_bnext.training.RunConfig` are generated from its fields
(:func:`define_config_flags`): name, type, default, choices and the help of the field's entry in
its docstring. Spellings that changed stay accepted, with a warning (:func:`deprecated_alias`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import types
import typing
import warnings

from absl import app, flags

__all__ = [
    "USER_ERRORS",
    "VOCABULARY",
    "define",
    "define_config_flags",
    "deprecated_alias",
    "field_help",
    "no_arguments",
    "removed_flag",
    "run_then_exit",
    "user_errors_exit",
]

# Errors that name the problem and its fix: printed as one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, ImportError)

#: The flags several programs share: name -> (absl kind, help). A program passes its default
#: (and, where its use differs, a help of its own) to :func:`define`.
VOCABULARY = {
    "model": ("string", "Model: a registry name (tiny/T, small, middle, large, bnext18, ...)."),
    "models": ("list", "Models: a comma list of registry names."),
    "weights": (
        "string",
        "'imagenet' (the official checkpoint, downloaded once), the path of an official "
        "PyTorch checkpoint or of Keras weights, or 'none' for random weights.",
    ),
    "image_size": ("integer", "Side of the square input images; default the model's."),
    "stage_channels": ("list", "Stage channels of --model=custom (the stem's, then each block's)."),
    "dataset": ("string", "digits (embedded), folder (--data_dir tree) or a TFDS name."),
    "data_dir": ("string", "Image-folder root or TFDS data_dir."),
    "batch_size": ("integer", "Images per batch."),
    "output_dir": ("string", "The folder the program writes into."),
    "output": ("string", "The file the program writes."),
    "seed": ("integer", "Random seed."),
}

_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj|exc):`~?([^`]+)`")


def define(flag_values: flags.FlagValues, name: str, default, help: str | None = None, **kw):
    """Define the shared flag ``name`` of :data:`VOCABULARY` with a program's default.

    Args:
        flag_values: the registry to define it on.
        name: a key of :data:`VOCABULARY`.
        default: the program's default.
        help: the program's help; ``None``: the vocabulary's.
        **kw: passed to absl (``lower_bound``, ...).
    """
    kind, text = VOCABULARY[name]
    definer = getattr(flags, f"DEFINE_{kind}")
    return definer(name, default, help or text, flag_values=flag_values, **kw)


def field_help(config_class) -> dict[str, str]:
    """The entries of the ``Args:`` section of ``config_class``'s docstring, as one-line text
    (a ``None`` default reads "unset", as on the command line).

    Args:
        config_class: a dataclass documented in the Google style.
    """
    text = (config_class.__doc__ or "").split("Args:", 1)[-1].split("\n\n")[0]
    helps, name = {}, None
    for line in text.splitlines():
        match = re.match(r"^ {8}(\w+): (.*)$", line)
        if match:
            name, rest = match.groups()
            helps[name] = rest
        elif name and line.strip():
            helps[name] += " " + line.strip()
    helps = {
        k: _ROLE.sub(r"\1", v).replace("``None``", "unset").replace("``", "")
        for k, v in helps.items()
    }
    return {k: v[:1].upper() + v[1:] for k, v in helps.items()}


def _kind(hint) -> str:
    """The absl kind of a field's type: bool, integer, float, string or list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0] if len(args) == 1 else str  # str | int: a string flag
    if typing.get_origin(hint) in (tuple, list):
        return "list"
    return {bool: "bool", int: "integer", float: "float"}.get(hint, "string")


def define_config_flags(
    config_class,
    flag_values: flags.FlagValues,
    names=None,
    defaults: dict | None = None,
    helps: dict | None = None,
) -> list[str]:
    """Define one flag per field of the dataclass ``config_class`` (or of ``names``).

    The flag has the field's name, a kind from its type (``bool``, ``int``, ``float``, ``str``:
    an enum where the field's metadata has ``choices``; a tuple: a comma list; numbers take the
    metadata's ``lower_bound``), its default and the help of its entry in the class docstring.

    Args:
        config_class: a dataclass such as :class:`~larq_bnext.training.RunConfig`.
        flag_values: the registry to define them on.
        names: the fields to define; ``None``: all.
        defaults: defaults that differ from the fields' (another program's use).
        helps: helps that differ from the docstring's.

    Returns:
        The names of the flags defined.
    """
    hints = typing.get_type_hints(config_class)
    docs = field_help(config_class)
    defined = []
    for field in dataclasses.fields(config_class):
        if names is not None and field.name not in names:
            continue
        default = (defaults or {}).get(field.name, field.default)
        text = (helps or {}).get(field.name) or docs.get(field.name, "")
        kind = _kind(hints[field.name])
        choices = field.metadata.get("choices")
        bounds = {
            k: field.metadata[k] for k in ("lower_bound", "upper_bound") if k in field.metadata
        }
        if kind == "list" and default is not None:
            default = [str(v) for v in default]
        elif kind == "string" and default is not None:
            default = str(default)
        if choices:
            flags.DEFINE_enum(field.name, default, list(choices), text, flag_values=flag_values)
        else:
            definer = getattr(flags, f"DEFINE_{kind}")
            definer(field.name, default, text, flag_values=flag_values, **bounds)
        defined.append(field.name)
    return defined


def deprecated_alias(old: str, new: str, flag_values: flags.FlagValues) -> None:
    """Accept ``--old`` as ``--new`` with a warning that names the new spelling.

    Args:
        old: the former spelling.
        new: the flag it now is (defined already on ``flag_values``).
        flag_values: the registry.
    """
    target = flag_values[new]

    class _Deprecated(flags.Flag):
        def parse(self, argument):
            warnings.warn(
                f"--{old} is deprecated: use --{new} (same meaning).", FutureWarning, stacklevel=2
            )
            target.parse(argument)
            self.present += 1

        def _parse_from_default(self, value):
            return value

        @property
        def value(self):
            return target.value

        @value.setter
        def value(self, value):
            target.value = value

    flags.DEFINE_flag(
        _Deprecated(
            target.parser,
            target.serializer,
            old,
            target.default,
            f"Deprecated spelling of --{new}.",
            boolean=target.boolean,
        ),
        flag_values,
    )


def removed_flag(name: str, reason: str, flag_values: flags.FlagValues) -> None:
    """Accept ``--name`` (any value) from old flag files, warn that it has no effect, ignore it.

    Args:
        name: the removed flag.
        reason: why it has no effect, ending with what to do instead.
        flag_values: the registry.
    """

    class _Removed(flags.ArgumentParser):
        def parse(self, argument):
            warnings.warn(f"--{name} has no effect: {reason}", FutureWarning, stacklevel=2)
            return None

    flags.DEFINE(_Removed(), name, None, f"Removed: {reason}", flag_values)


def run_then_exit(main) -> None:
    """``absl.app.run(main)``, then end the process without the interpreter's teardown.

    Destroying TensorFlow's objects when Python exits takes most of a second (0.85 s after
    ``import tensorflow`` alone on a 2-core machine, more with a model in memory), after the
    program has written everything. This flushes stdout, stderr and logging, then ends the
    process with ``main``'s exit status (``os._exit``). An exception that is not
    ``SystemExit`` propagates as usual.

    Args:
        main: the program's absl ``main(argv)``.
    """
    try:
        app.run(main)
        code = 0
    except SystemExit as done:
        code = done.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): Python prints it, status 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def no_arguments(argv) -> None:
    """Refuse positional arguments left after absl parsed the flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")


@contextlib.contextmanager
def user_errors_exit():
    """Print a user error as ``error: ...`` on stderr and exit with status 2."""
    try:
        yield
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
