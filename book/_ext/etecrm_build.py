"""The book build's own Sphinx extension (named in ``_config.yml``: ``local_extensions``), not part
of the library.

It makes the build render plotly figures into the pages and keeps the pages free of CDN downloads
(the vendored MathJax and Colab badge are used instead), loads plotly.js once for the whole site
(``_static/plotly.min.js``, copied from the installed plotly package, instead of 4.8 MB inlined in
every page), and it tells the notebook kernels that they run inside the book build
(``ETECRM_BOOK_BUILD=1``, read by ``etecrm_lib.book.in_book_build``).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from pathlib import Path

from docutils import nodes

from etecrm_lib import __version__
from etecrm_lib.book import BUILD_ENV, COLAB_BADGE, LOCAL_COLAB_BADGE

# plotly's HTML renderers add MathJax from a CDN to every figure; the book page loads its own
# (vendored) MathJax, so the CDN tag is dropped from the rendered outputs.
PLOTLY_MATHJAX_CDN = re.compile(
    r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>'
)


# plotly's notebook renderer writes the whole plotly.js bundle (about 4.8 MB) into the first figure
# output of every notebook: "<script>/**\n* plotly.js v4.1.1 ... </script>". The pages load the one
# site-wide copy instead (PLOTLY_STATIC, copied into _static by copy_plotly_js).
PLOTLY_INLINE = re.compile(r"<script[^>]*>\s*/\*\*?\s*\*\s*plotly\.js v[\s\S]*?</script>")
PLOTLY_STATIC = "_static/plotly.min.js"


def plotly_js_source() -> Path:
    """The plotly.js bundle of the installed plotly package (the one its Python side writes for)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def relative_to_page(target: str, docname: str) -> str:
    """``target`` (relative to the site root) as a link from the page ``docname`` (book/02_x)."""
    return posixpath.relpath(target, posixpath.dirname(docname) or ".")


def drop_cdn_scripts(app, doctree, docname) -> None:
    """Offline, light pages: drop plotly's CDN MathJax tag; link the site's one plotly.js instead of
    the copy inlined in the page; show the vendored copy of the Colab badge image."""
    plotly_tag = (
        f'<script charset="utf-8" src="{relative_to_page(PLOTLY_STATIC, docname)}"></script>'
    )
    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "html" not in node.get("format", ""):
            continue
        new = PLOTLY_INLINE.sub(lambda _: plotly_tag, PLOTLY_MATHJAX_CDN.sub("", text))
        if new != text:
            node.replace(node.children[0], nodes.Text(new))
    if app is not None and app.builder.format != "html":
        return
    badge = relative_to_page(LOCAL_COLAB_BADGE, docname)
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


def copy_plotly_js(app, exception) -> None:
    """After an HTML build: the site's one copy of plotly.js, from the installed plotly package."""
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / PLOTLY_STATIC
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_js_source(), target)


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
    app.connect("build-finished", copy_plotly_js)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
