"""Writing the book's chapter notebooks: the three cells every chapter starts with, no outputs, the
table of contents.

For chapter authors, the tests and ``tools/`` (chapters themselves call :mod:`etecrm_lib.book`).
Every chapter notebook opens with the same three cells (see :func:`standard_cells`):

1. a title with an "Open in Colab" badge (:func:`colab_url`),
2. a set-up cell. On Google Colab only: a shallow clone of the book's
   repository at the branch the book is built from (``_config.yml``'s ``repository.url`` and
   ``repository.branch``, :func:`book_repository`), the library installed from that clone (which
   then also finds the committed results in it, ``book.results_folder``); on failure one sentence
   says what to do. Then, everywhere, ``book.check_runtime(chapter)``: device, precision, profile
   and, on a GPU, the chapter's time measured there,
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

from .book import BOOK_FOLDER, COLAB_BADGE, COLAB_URL
from .storage import atomic_write

CONFIG = Path(__file__).resolve().parents[1] / "_config.yml"  # the book's configuration (checkout)


# --------------------------------------------------------------------------- links and pins
def book_repository(config=CONFIG) -> tuple:
    """``(url, ref)`` of the book's repository: ``repository.url`` and ``repository.branch`` of the
    book's ``_config.yml``, the one place they are written (e.g. the GitHub URL and "main")."""
    import yaml  # comes with jupyter-book

    repository = yaml.safe_load(Path(config).read_text(encoding="utf-8"))["repository"]
    return repository["url"], repository["branch"]


def pip_requirement() -> str:
    """The pip requirement that installs this library from the book's repository and ref."""
    url, ref = book_repository()
    return f"etecrm_lib @ git+{url}@{ref}"


def colab_url(notebook: str, folder: str = BOOK_FOLDER) -> str:
    """The Colab link that opens ``notebook`` (a file name, e.g. "01_data.ipynb") in ``folder`` from
    GitHub.

    ``folder`` is "book" (the chapters) or "students" (the student edition of the exercises).
    """
    name = Path(notebook).name
    if not name.endswith(".ipynb"):
        raise ValueError(f"expected a notebook file name ending in .ipynb, got {notebook!r}")
    url, ref = book_repository()
    owner_repo = url.removeprefix("https://github.com/")
    return f"{COLAB_URL}/github/{owner_repo}/blob/{ref}/{folder}/{name}"


# --------------------------------------------------------------------------- the first three cells
SETUP_CELL = """\
# On Google Colab only: fetch the book's repository (its library and committed results) and install
# the library from it. Everywhere: say which device, precision and profile run here (on a GPU, with
# an estimate of this chapter's time measured on it).
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    REPOSITORY, REF = "{url}", "{ref}"
    CLONE = os.path.abspath("etecrm")
    if not os.path.isdir(CLONE):  # a shallow clone: the library and data/results
        clone = ["git", "clone", "-q", "--depth", "1", "--branch", REF, REPOSITORY, CLONE]
        if subprocess.run(clone).returncode != 0:
            raise SystemExit(f"Could not fetch {{REPOSITORY}} ({{REF}}): go online, then rerun.")
    # Colab's own torch, torchvision and ipywidgets satisfy the library's lower bounds: no upgrade.
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q", CLONE]).returncode != 0:
        raise SystemExit(f"Installing the library from {{CLONE}} failed (pip says why above).")
from etecrm_lib.book import check_runtime

check_runtime("{chapter}")
"""

PARAMETERS_CELL = """\
import etecrm_lib.book

etecrm_lib.book.notebook_defaults()  # plain numbers; in the book build, finished bars only
DATASET = "sim"  # simulated cortex; real data: "kay", "vim1", "miyawaki"
PROFILE = etecrm_lib.book.default_profile()  # "quick" (CPU) or "full" (GPU)
SEED = 0
"""


def setup_cell_source(notebook: str) -> str:
    """The source of the set-up cell (second cell) of chapter ``notebook`` (e.g. "04_x.ipynb")."""
    url, ref = book_repository()
    source = SETUP_CELL.format(url=url, ref=ref, chapter=Path(notebook).stem)
    return source.rstrip("\n")  # as `ruff format` leaves a cell


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
            setup_cell_source(notebook), metadata={"tags": ["hide-input"]}
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


def refresh_setup_cells(root) -> list:
    """Rewrite the set-up cell (the second cell, or the third after a course guide) of every chapter
    ``_toc.yml`` lists under ``root`` to :func:`setup_cell_source`, leaving every other cell as it
    is. Returns the paths changed."""
    import nbformat

    changed = []
    for chapter in toc_chapters(root):
        path = Path(root, chapter)
        if path.suffix != ".ipynb":
            continue
        nb = nbformat.read(path, as_version=4)
        setup = 2 if nb.cells[1].get("id") == "course-guide" else 1  # after a course guide
        if nb.cells[setup].source != setup_cell_source(path.name):
            nb.cells[setup].source = setup_cell_source(path.name)
            with atomic_write(path) as tmp:
                tmp.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
            changed.append(path)
    return changed


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
