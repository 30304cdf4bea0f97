"""Writing the book's chapter notebooks: the three cells every chapter starts with, no outputs, the
table of contents.

For chapter authors, the tests and ``tools/`` (chapters themselves call :mod:`etecrm_lib.book`).
Every chapter notebook opens with the same three cells (see :func:`standard_cells`):

1. a title with an "Open in Colab" badge (:func:`colab_url`),
2. one set-up cell that does something only on Google Colab: it installs this library, pinned to
   the book's version (:func:`pip_requirement`), and warns when no GPU runtime is selected
   (``book.check_runtime``),
3. a parameters cell (tagged ``parameters``): ``DATASET``, ``PROFILE`` (``book.default_profile``)
   and ``SEED``.

Chapter authors start a notebook with these cells and write it without outputs::

    import nbformat.v4 as nbf
    from etecrm_lib.notebooks import standard_cells, write_notebook

    cells = standard_cells("03_gabor.ipynb", "3. The Gabor model") + [nbf.new_code_cell("...")]
    write_notebook("book/03_gabor.ipynb", cells)

(or copy the first three cells of ``book/01_data.ipynb``); ``tests/test_book.py`` checks them.
"""

from __future__ import annotations

from pathlib import Path

from . import __version__
from .book import BOOK_FOLDER, BRANCH, COLAB_BADGE, COLAB_URL, REPOSITORY_URL
from .storage import atomic_write


# --------------------------------------------------------------------------- links and pins
def pip_requirement(version: str = __version__) -> str:
    """The pip requirement that installs this library at the book's version (a git tag
    ``v<version>``)."""
    return f"etecrm_lib @ git+{REPOSITORY_URL}@v{version}"


def colab_url(notebook: str, folder: str = BOOK_FOLDER) -> str:
    """The Colab link that opens ``notebook`` (a file name, e.g. "01_data.ipynb") in ``folder`` from
    GitHub.

    ``folder`` is "book" (the chapters) or "students" (the student edition of the exercises).
    """
    name = Path(notebook).name
    if not name.endswith(".ipynb"):
        raise ValueError(f"expected a notebook file name ending in .ipynb, got {notebook!r}")
    owner_repo = REPOSITORY_URL.removeprefix("https://github.com/")
    return f"{COLAB_URL}/github/{owner_repo}/blob/{BRANCH}/{folder}/{name}"


# --------------------------------------------------------------------------- the first three cells
SETUP_CELL = """\
# Set-up on Google Colab only (elsewhere this cell does nothing): install the book's library,
# pinned to the book's version, and check that a GPU runtime is selected.
import sys

if "google.colab" in sys.modules:
    import subprocess

    # No upgrade: Colab's own torch, torchvision and ipywidgets satisfy the library's lower bounds.
    requirement = "{requirement}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement], check=True)
    from etecrm_lib.book import check_runtime

    check_runtime()
"""

PARAMETERS_CELL = """\
import etecrm_lib.book

DATASET = "sim"  # simulated cortex; real data: "kay", "vim1", "miyawaki"
PROFILE = etecrm_lib.book.default_profile()  # "quick" (CPU) or "full" (GPU)
SEED = 0
"""


def setup_cell_source() -> str:
    """The source of the Colab set-up cell every chapter carries (second cell)."""
    return SETUP_CELL.format(requirement=pip_requirement())


def title_cell_source(notebook: str, title: str) -> str:
    """The first cell: the chapter title and its Open-in-Colab badge."""
    return f"# {title}\n\n[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook)})\n"


def standard_cells(notebook: str, title: str) -> list:
    """The three cells every chapter starts with (nbformat cells): title + badge, set-up,
    parameters."""
    import nbformat.v4 as nbf

    return [
        nbf.new_markdown_cell(title_cell_source(notebook, title)),
        nbf.new_code_cell(
            setup_cell_source(), metadata={"tags": ["hide-input"]}
        ),  # folded on the web page
        nbf.new_code_cell(PARAMETERS_CELL, metadata={"tags": ["parameters"]}),
    ]


def write_notebook(path, cells: list) -> Path:
    """Write ``cells`` as a notebook without outputs or execution counts (atomically). Returns the
    path.

    Cell ids are derived from the cell position, so rewriting an unchanged chapter gives the same
    file.
    """
    import nbformat
    import nbformat.v4 as nbf

    nb = nbf.new_notebook(cells=[_strip(cell, i) for i, cell in enumerate(cells)])
    nb.metadata.update(
        {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }
    )
    nbformat.validate(nb)
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path


def _strip(cell, index: int):
    cell = cell.copy()
    cell["id"] = f"cell-{index:03d}"
    if cell["cell_type"] == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    for key in ("execution", "collapsed", "scrolled"):
        cell["metadata"].pop(key, None)
    return cell


def toc_chapters(root) -> list:
    """The chapter files (paths relative to the repository root) that ``_toc.yml`` lists, in
    order."""
    import yaml  # comes with jupyter-book

    entries = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    entries.append(str(node[key]))
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(Path(root, "_toc.yml").read_text(encoding="utf-8")))
    out = []
    for entry in entries:
        candidates = (
            [entry] if entry.endswith((".ipynb", ".md")) else [entry + ".ipynb", entry + ".md"]
        )
        found = [c for c in candidates if Path(root, c).is_file()]
        if not found:
            raise FileNotFoundError(f"_toc.yml lists '{entry}' but none of {candidates} exists")
        out.append(found[0])
    return out
