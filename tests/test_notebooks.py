"""The tutorials are committed with their outputs, and the outputs are current.

The docs site renders the notebooks with the outputs committed in them (mkdocs-jupyter,
``execute: false``: notebooks 02 and 05 train models, too slow for a docs build), and
``make test`` executes them again under nbmake without writing the outputs back. Each notebook
carries, in its metadata, the SHA-256 of its code cells' source and the package version it was
executed with; these tests fail when a code cell changed after the outputs were made.

After changing a notebook, execute it and stamp it again:

    jupyter nbconvert --to notebook --execute --inplace notebooks/01_meet_bnext.ipynb
    python tests/test_notebooks.py notebooks/01_meet_bnext.ipynb
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest

import larq_bnext

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
STAMP = "larq_bnext"


def code_sha256(notebook: dict) -> str:
    """SHA-256 of the code cells' source, in order."""
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def _code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_come_from_the_current_code(path):
    notebook = json.loads(path.read_text())
    stamp = notebook["metadata"].get(STAMP, {})
    assert stamp.get("code_sha256") == code_sha256(notebook), (
        f"{path.name}: a code cell changed after its outputs were made; execute it and stamp "
        "it again (see this module's docstring)."
    )
    assert stamp.get("version") == larq_bnext.__version__


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_ran_once_top_to_bottom_without_error(path):
    cells = _code_cells(path)
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1))
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_a_cell_draws_is_in_its_outputs(path):
    for cell in _code_cells(path):
        if "plt.show()" in "".join(cell["source"]):
            kinds = {k for o in cell["outputs"] for k in o.get("data", {})}
            assert "image/png" in kinds, "".join(cell["source"])[:200]


def stamp(path: Path) -> None:
    """Write the stamp of ``path``'s current code cells and the package version into it."""
    import nbformat

    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    notebook.metadata[STAMP] = {
        "code_sha256": code_sha256(notebook),
        "version": larq_bnext.__version__,
    }
    nbformat.write(notebook, path)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        stamp(Path(name))
