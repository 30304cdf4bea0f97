"""The book build's own Sphinx extension (named in ``_config.yml``: ``local_extensions``), not part
of the library.

It makes the build render plotly figures into the pages and keeps the pages free of CDN downloads
(the vendored MathJax and Colab badge are used instead), and it tells the notebook kernels that they
run inside the book build (``ETECRM_BOOK_BUILD=1``, read by ``etecrm_lib.book.in_book_build``).
"""

from __future__ import annotations

import os
import posixpath
import re

from docutils import nodes

from etecrm_lib import __version__
from etecrm_lib.book import BUILD_ENV, COLAB_BADGE, LOCAL_COLAB_BADGE

# plotly's HTML renderers add MathJax from a CDN to every figure; the book page loads its own
# (vendored) MathJax, so the CDN tag is dropped from the rendered outputs.
PLOTLY_MATHJAX_CDN = re.compile(
    r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>'
)


def drop_cdn_scripts(app, doctree, docname) -> None:
    """Offline pages: drop plotly's CDN MathJax tag; show the vendored copy of the Colab badge
    image."""
    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "html" in node.get("format", "") and PLOTLY_MATHJAX_CDN.search(text):
            node.replace(node.children[0], nodes.Text(PLOTLY_MATHJAX_CDN.sub("", text)))
    if app is not None and app.builder.format != "html":
        return
    badge = posixpath.relpath(LOCAL_COLAB_BADGE, posixpath.dirname(docname) or ".")
    for node in list(doctree.findall(nodes.image)):
        if node.get("uri") == COLAB_BADGE:
            alt = node.get("alt", "Open In Colab").replace('"', "&quot;")
            node.replace_self(nodes.raw("", f'<img alt="{alt}" src="{badge}"/>', format="html"))


def drop_duplicate_assets(app, pagename, templatename, context, doctree) -> None:
    # jupyter-book 1.0.4 registers the inline configuration scripts of sphinx-thebe and
    # sphinx-togglebutton twice; the second `const THEBE_JS_URL` is a JavaScript error on every
    # page.
    for key in ("script_files", "css_files"):
        if key in context:
            unique = {}
            for asset in context[key]:
                attributes = getattr(asset, "attributes", {})
                identity = (
                    getattr(asset, "filename", asset) or "",
                    tuple(sorted(attributes.items())),
                )
                unique.setdefault(identity, asset)
            context[key] = list(unique.values())


def setup(app):
    """Sphinx entry point (``sphinx: local_extensions: {etecrm_build: book/_ext}`` in
    ``_config.yml``)."""
    # Notebook kernels started by the build inherit this: plotly then writes figures as HTML with
    # plotly.js embedded once per page (no CDN). Chapters never choose a renderer themselves.
    os.environ.setdefault("PLOTLY_RENDERER", "notebook")
    os.environ[BUILD_ENV] = (
        "1"  # the kernels know they run for the static pages (see notebook_defaults)
    )
    app.connect("doctree-resolved", drop_cdn_scripts)
    app.connect("html-page-context", drop_duplicate_assets)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
