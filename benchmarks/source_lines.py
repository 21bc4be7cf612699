"""Source lines per folder, docstrings and code counted apart.

    python benchmarks/source_lines.py [ROOT ...]

A line is a docstring line when it lies inside a module, class or function docstring (read
with :mod:`ast`), a code line when it holds anything else but a comment; blank and
comment-only lines are not counted. Folders are the Python packages below each ROOT
(default ``larq_bnext``), each counted without its sub-folders.
"""

from __future__ import annotations

import ast
import collections
import io
import os
import sys
import tokenize


def count_file(path: str) -> tuple[int, int]:
    """``(code lines, docstring lines)`` of one Python file."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    doc_lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    code_lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            continue
        code_lines.update(range(token.start[0], token.end[0] + 1))
    return len(code_lines - doc_lines), len(doc_lines)


def count_tree(root: str) -> dict[str, tuple[int, int, int]]:
    """``{folder: (files, code lines, docstring lines)}`` below ``root``."""
    totals = collections.defaultdict(lambda: [0, 0, 0])
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in sorted(files):
            if name.endswith(".py"):
                code, doc = count_file(os.path.join(folder, name))
                entry = totals[os.path.relpath(folder, os.path.dirname(root) or ".")]
                entry[0] += 1
                entry[1] += code
                entry[2] += doc
    return {k: tuple(v) for k, v in sorted(totals.items())}


def main(roots: list[str]) -> None:
    print(f"{'folder':40} {'files':>5} {'code':>6} {'docs':>6}")
    for root in roots or ["larq_bnext"]:
        rows = count_tree(root)
        for folder, (files, code, doc) in rows.items():
            print(f"{folder:40} {files:5d} {code:6d} {doc:6d}")
        files, code, doc = (sum(r[i] for r in rows.values()) for i in range(3))
        print(f"{root + ' (all)':40} {files:5d} {code:6d} {doc:6d}")


if __name__ == "__main__":
    main(sys.argv[1:])
