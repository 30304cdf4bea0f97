"""Helpers the book's chapters share: where the book lives, which profile to run, Colab set-up.

Every chapter notebook opens with the same three cells (see :func:`standard_cells`):

1. a title with an "Open in Colab" badge (:func:`colab_url`),
2. one set-up cell that does something only on Google Colab: it installs this library, pinned to
   the book's version (:func:`pip_requirement`), and warns when no GPU runtime is selected,
3. a parameters cell (tagged ``parameters``): ``DATASET``, ``PROFILE`` (:func:`default_profile`)
   and ``SEED``.

Chapter authors start a notebook with these cells and write it without outputs::

    import nbformat.v4 as nbf
    from etecrm_lib.book import standard_cells, write_notebook

    cells = standard_cells("03_gabor.ipynb", "3. The Gabor model") + [nbf.new_code_cell("...")]
    write_notebook("book/03_gabor.ipynb", cells)

(or copy the first three cells of ``book/01_data.ipynb``); ``tests/test_book.py`` checks them.

This module is also a small Sphinx extension (``setup``), listed in the book's ``_config.yml``:
it makes the book build render plotly figures into the pages and keeps the pages free of CDN
downloads.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

from . import __version__

REPOSITORY_URL = "https://github.com/etecrm-book/etecrm"
BRANCH = "main"
COLAB_URL = "https://colab.research.google.com"
BOOK_FOLDER = "book"  # chapters live in book/ under the repository root
PROFILES = ("quick", "full")
PROFILE_ENV = "ETECRM_PROFILE"
DATASETS = ("sim", "kay", "vim1", "miyawaki")
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_COLAB_BADGE = "_static/colab-badge.svg"  # book/vendor/colab-badge.svg, shown in the built pages


# --------------------------------------------------------------------------- profile and runtime
def default_profile() -> str:
    """The profile a chapter runs by default: ``$ETECRM_PROFILE`` if set, else "full" on a GPU, "quick" on CPU.

    "quick" is small (64x64 images, a few hundred training images) and runs in a minute or two on
    a laptop CPU; "full" is the vim-1-sized experiment and wants a GPU.
    """
    chosen = os.environ.get(PROFILE_ENV, "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"{PROFILE_ENV}={chosen!r} is not a profile; use one of {PROFILES} (or unset it)")
        return chosen
    import torch

    return "full" if torch.cuda.is_available() else "quick"


def on_colab() -> bool:
    """True inside a Google Colab notebook."""
    return "google.colab" in sys.modules


def check_runtime() -> str:
    """Say which device the chapter will use; warn (with how to fix it) when there is no GPU.

    Returns the device description, e.g. 'NVIDIA T4' or 'cpu (2 threads)'.
    """
    import torch

    from .device import describe_device

    if not torch.cuda.is_available():
        where = ("in Colab choose Runtime > Change runtime type > T4 GPU, then run the notebook again"
                 if on_colab() else "the chapter still runs, on the small 'quick' profile")
        warnings.warn(f"No GPU found: {where}.", stacklevel=2)
    device = describe_device()
    print(f"etecrm_lib {__version__}, device: {device}, profile: {default_profile()}")
    return device


# --------------------------------------------------------------------------- links and pins
def pip_requirement(version: str = __version__) -> str:
    """The pip requirement that installs this library at the book's version (a git tag ``v<version>``)."""
    return f"etecrm_lib @ git+{REPOSITORY_URL}@v{version}"


def colab_url(notebook: str) -> str:
    """The Colab link that opens ``notebook`` (a file name in book/, e.g. "01_data.ipynb") from GitHub."""
    name = Path(notebook).name
    if not name.endswith(".ipynb"):
        raise ValueError(f"expected a notebook file name ending in .ipynb, got {notebook!r}")
    owner_repo = REPOSITORY_URL.removeprefix("https://github.com/")
    return f"{COLAB_URL}/github/{owner_repo}/blob/{BRANCH}/{BOOK_FOLDER}/{name}"


# --------------------------------------------------------------------------- the first three cells
SETUP_CELL = '''\
# Set-up on Google Colab only (elsewhere this cell does nothing): install the book's library,
# pinned to the book's version, and check that a GPU runtime is selected.
import sys

if "google.colab" in sys.modules:
    import subprocess
    # No upgrade: Colab's own torch, torchvision and ipywidgets satisfy the library's lower bounds.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{requirement}"], check=True)
    from etecrm_lib.book import check_runtime
    check_runtime()
'''

PARAMETERS_CELL = '''\
import etecrm_lib.book

DATASET = "sim"  # simulated cortex; real data: "kay", "vim1", "miyawaki"
PROFILE = etecrm_lib.book.default_profile()  # "quick" (CPU) or "full" (GPU)
SEED = 0
'''


def setup_cell_source() -> str:
    """The source of the Colab set-up cell every chapter carries (second cell)."""
    return SETUP_CELL.format(requirement=pip_requirement())


def title_cell_source(notebook: str, title: str) -> str:
    """The first cell: the chapter title and its Open-in-Colab badge."""
    return f"# {title}\n\n[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook)})\n"


def standard_cells(notebook: str, title: str) -> list:
    """The three cells every chapter starts with (nbformat cells): title + badge, set-up, parameters."""
    import nbformat.v4 as nbf

    return [
        nbf.new_markdown_cell(title_cell_source(notebook, title)),
        nbf.new_code_cell(setup_cell_source(), metadata={"tags": ["hide-input"]}),  # folded on the web page
        nbf.new_code_cell(PARAMETERS_CELL, metadata={"tags": ["parameters"]}),
    ]


def write_notebook(path, cells: list) -> Path:
    """Write ``cells`` as a notebook without outputs or execution counts (atomically). Returns the path.

    Cell ids are derived from the cell position, so rewriting an unchanged chapter gives the same file.
    """
    import nbformat
    import nbformat.v4 as nbf

    from .storage import atomic_write

    nb = nbf.new_notebook(cells=[_strip(cell, i) for i, cell in enumerate(cells)])
    nb.metadata.update({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
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


# --------------------------------------------------------------------------- Sphinx extension
# plotly's HTML renderers add MathJax from a CDN to every figure; the book page loads its own
# (vendored) MathJax, so the CDN tag is dropped from the rendered outputs.
_PLOTLY_MATHJAX_CDN = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>')


def _drop_cdn_scripts(app, doctree, docname) -> None:
    """Offline pages: drop plotly's CDN MathJax tag; show the vendored copy of the Colab badge image."""
    import posixpath

    from docutils import nodes

    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "html" in node.get("format", "") and _PLOTLY_MATHJAX_CDN.search(text):
            node.replace(node.children[0], nodes.Text(_PLOTLY_MATHJAX_CDN.sub("", text)))
    if app is not None and app.builder.format != "html":
        return
    badge = posixpath.relpath(LOCAL_COLAB_BADGE, posixpath.dirname(docname) or ".")
    for node in list(doctree.findall(nodes.image)):
        if node.get("uri") == COLAB_BADGE:
            alt = node.get("alt", "Open In Colab").replace('"', "&quot;")
            node.replace_self(nodes.raw("", f'<img alt="{alt}" src="{badge}"/>', format="html"))


def _drop_duplicate_assets(app, pagename, templatename, context, doctree) -> None:
    # jupyter-book 1.0.4 registers the inline configuration scripts of sphinx-thebe and
    # sphinx-togglebutton twice; the second `const THEBE_JS_URL` is a JavaScript error on every page.
    for key in ("script_files", "css_files"):
        if key in context:
            unique = {}
            for asset in context[key]:
                attributes = getattr(asset, "attributes", {})
                identity = (getattr(asset, "filename", asset) or "", tuple(sorted(attributes.items())))
                unique.setdefault(identity, asset)
            context[key] = list(unique.values())


def setup(app):
    """Sphinx entry point (``sphinx: extra_extensions: [etecrm_lib.book]`` in ``_config.yml``)."""
    # Notebook kernels started by the build inherit this: plotly then writes figures as HTML with
    # plotly.js embedded once per page (no CDN). Chapters never choose a renderer themselves.
    os.environ.setdefault("PLOTLY_RENDERER", "notebook")
    app.connect("doctree-resolved", _drop_cdn_scripts)
    app.connect("html-page-context", _drop_duplicate_assets)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}


def toc_chapters(root) -> list:
    """The chapter files (paths relative to the repository root) that ``_toc.yml`` lists, in order."""
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
        candidates = [entry] if entry.endswith((".ipynb", ".md")) else [entry + ".ipynb", entry + ".md"]
        found = [c for c in candidates if Path(root, c).is_file()]
        if not found:
            raise FileNotFoundError(f"_toc.yml lists '{entry}' but none of {candidates} exists")
        out.append(found[0])
    return out


__all__ = [
    "REPOSITORY_URL", "BRANCH", "COLAB_URL", "PROFILES", "PROFILE_ENV", "DATASETS",
    "default_profile", "on_colab", "check_runtime", "pip_requirement", "colab_url",
    "setup_cell_source", "title_cell_source", "standard_cells", "write_notebook", "toc_chapters",
]
