"""MkDocs hook: fill ``<!-- cli-flags: larq_bnext.<module> -->`` with that command's flags.

The table is generated at build time from the absl flags the module defines (name, default,
help), so the documented flags cannot drift from the code. Each module is loaded in its own
interpreter: command-line modules define absl flags on import, and two of them may define the
same flag name. A module with a ``define_flags(flag_values)`` function (flags defined only when
it runs as a program) is asked to define them on a fresh registry.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

_MARKER = re.compile(r"<!--\s*cli-flags:\s*([\w.]+)\s*-->")
_LISTER = """
import json, sys, importlib
from absl import flags
name = sys.argv[1]
module = importlib.import_module(name)
if hasattr(module, "define_flags"):
    registry = flags.FlagValues()
    module.define_flags(registry)
    defined = [registry[key] for key in registry]
else:
    defined = flags.FLAGS.flags_by_module_dict().get(name, [])
rows = []
for flag in defined:
    default = flag.default
    if isinstance(default, (list, tuple)):
        default = ",".join(map(str, default))
    rows.append([flag.name, None if default is None else str(default), flag.help or "",
                 flag.flag_type()])
print(json.dumps(rows))
"""
_cache: dict[str, list] = {}


def flags_of(module: str) -> list:
    """``[name, default, help, type]`` for each flag of ``module`` (cached per build).

    Args:
        module: a module of larq_bnext that defines absl flags.
    """
    if module not in _cache:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(
            [sys.executable, "-c", _LISTER, module],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"Could not list the flags of {module}:\n{result.stderr[-2000:]}")
        _cache[module] = json.loads(result.stdout.strip().splitlines()[-1])
    return _cache[module]


def flags_table(module: str) -> str:
    """The markdown table of ``module``'s flags.

    Args:
        module: a module of larq_bnext that defines absl flags.
    """
    rows = flags_of(module)
    if not rows:
        raise RuntimeError(f"{module} defines no absl flags; remove its cli-flags marker.")
    lines = ["| flag | default | what it does |", "|---|---|---|"]
    for name, default, help_text, _ in sorted(rows):
        shown = "(none)" if default is None else f"`{default}`"
        help_text = html.escape(help_text).replace("|", "&#124;").replace("\n", " ")
        lines.append(f"| `--{name}` | {shown} | {help_text} |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    """Replace every cli-flags marker of a page with its table.

    Args:
        markdown: the page's markdown.
        page: the page (unused).
        config: the site configuration (unused).
        files: the site's files (unused).
        **kwargs: other event arguments (unused).
    """
    return _MARKER.sub(lambda match: flags_table(match.group(1)), markdown)
