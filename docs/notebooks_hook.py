"""MkDocs hook: the tutorials of ``notebooks/`` become pages ``notebooks/<name>/``.

mkdocs-jupyter renders them with the outputs committed in them (it does not execute them:
notebooks 02 and 05 train models, too slow for a docs build); ``tests/test_notebooks.py``
checks that the committed outputs come from the notebooks' current code.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns notebooks into pages
def on_files(files, config):
    # Source directory: the repository (mkdocs-jupyter finds a notebook by its src_dir and
    # path; a File.generated one has no src_dir).
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                path.relative_to(ROOT).as_posix(),
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
