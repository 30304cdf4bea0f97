"""The book: configuration, chapter notebooks, and the built HTML checked in headless Chromium.

The fast tests check the sources (config agrees with ``etecrm_lib.book``, every chapter starts
with the standard three cells and is committed without outputs, the vendored JavaScript is there).
``test_built_book_in_browser`` (marked ``book`` and ``slow``) builds the whole book in the quick
profile into a temporary folder and opens every chapter page in headless Chromium (Debian's
``chromium`` + ``chromium-driver``; ``make browser`` installs them). The browser may reach only
127.0.0.1, so any page that needs a CDN fails the test. Set ``ETECRM_SCREENSHOTS=<folder>`` to keep
a PNG screenshot of each page.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from etecrm_lib import __version__, book

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def read_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def notebook_chapters() -> list:
    return [c for c in book.toc_chapters(ROOT) if c.endswith(".ipynb")]


# --------------------------------------------------------------------------- configuration
def test_config_agrees_with_library_constants():
    config = read_config()
    assert config["repository"]["url"] == book.REPOSITORY_URL
    assert config["repository"]["branch"] == book.BRANCH
    # pages are named book/NN_x relative to the repository root, so the Colab button needs no prefix
    assert config["repository"].get("path_to_book", "") == ""
    assert config["launch_buttons"]["colab_url"] == book.COLAB_URL
    execute = config["execute"]
    assert execute["execute_notebooks"] == "force"
    assert execute["allow_errors"] is False and execute["raise_on_error"] is True
    assert config["only_build_toc_files"] is True
    assert "etecrm_lib.book" in config["sphinx"]["extra_extensions"]


def test_vendored_javascript_is_present_and_configured():
    sphinx_config = read_config()["sphinx"]["config"]
    static = [ROOT / p for p in sphinx_config["html_static_path"]]
    assert static == [ROOT / "book" / "vendor"]
    scripts = list(sphinx_config["nb_ipywidgets_js"]) + [sphinx_config["mathjax_path"]]
    for script in scripts:
        assert not script.startswith(("http:", "https:", "//")), f"{script} would need a CDN"
        path = static[0] / script
        assert path.is_file() and path.stat().st_size > 500, f"vendored file missing: {path}"
    assert "requirejs" in (static[0] / scripts[0]).read_text(encoding="utf-8")
    # the widget manager loads its fonts from its own folder; the extension shows the local Colab badge
    manager = static[0] / Path(scripts[2]).parent
    assert len(list(manager.glob("*.woff2"))) == 3
    assert (static[0] / book.LOCAL_COLAB_BADGE.removeprefix("_static/")).is_file()


def test_toc_lists_existing_chapters_in_book_folder():
    chapters = book.toc_chapters(ROOT)
    assert chapters[0] == "book/intro.md"
    assert "book/01_data.ipynb" in chapters and "book/09_exercises.ipynb" in chapters
    for chapter in chapters:
        assert chapter.startswith("book/") and (ROOT / chapter).is_file()


def test_every_chapter_notebook_is_in_the_toc():
    listed = set(book.toc_chapters(ROOT))
    missing = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "book").glob("*.ipynb")
                     if p.relative_to(ROOT).as_posix() not in listed)
    assert not missing, f"add these chapters to _toc.yml: {missing}"


@pytest.mark.parametrize("chapter", notebook_chapters())
def test_chapter_starts_with_standard_cells_and_has_no_outputs(chapter):
    nb = nbformat.read(ROOT / chapter, as_version=4)
    nbformat.validate(nb)
    title, setup, parameters = nb.cells[:3]
    name = Path(chapter).name
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    assert book.colab_url(name) in title.source
    assert setup.cell_type == "code" and setup.source.strip() == book.setup_cell_source().strip()
    assert f"@v{__version__}" in setup.source
    assert parameters.cell_type == "code" and "parameters" in parameters.metadata.get("tags", [])
    for name_ in ("DATASET", "PROFILE", "SEED"):
        assert re.search(rf"^{name_} = ", parameters.source, flags=re.MULTILINE), f"{chapter}: no {name_} parameter"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{chapter}: commit it without outputs"
    assert "load_dataset(DATASET, subject=1, profile=PROFILE" in "".join(c.source for c in nb.cells)


# --------------------------------------------------------------------------- library helpers
def test_default_profile_follows_environment(monkeypatch):
    import torch

    monkeypatch.delenv(book.PROFILE_ENV, raising=False)
    assert book.default_profile() == ("full" if torch.cuda.is_available() else "quick")
    monkeypatch.setenv(book.PROFILE_ENV, "Full")
    assert book.default_profile() == "full"
    monkeypatch.setenv(book.PROFILE_ENV, "huge")
    with pytest.raises(ValueError, match="ETECRM_PROFILE"):
        book.default_profile()


def test_check_runtime_warns_without_gpu(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(book.PROFILE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", object())  # pretend to be on Colab
    with pytest.warns(UserWarning, match="Runtime > Change runtime type"):
        assert book.check_runtime().startswith("cpu")
    assert "profile: quick" in capsys.readouterr().out
    monkeypatch.delitem(sys.modules, "google.colab")
    with pytest.warns(UserWarning, match="quick"):
        book.check_runtime()


def test_colab_url_and_pip_requirement():
    assert book.colab_url("03_x.ipynb") == (
        "https://colab.research.google.com/github/etecrm-book/etecrm/blob/main/book/03_x.ipynb")
    assert book.colab_url("book/03_x.ipynb") == book.colab_url("03_x.ipynb")
    with pytest.raises(ValueError, match="ipynb"):
        book.colab_url("03_x.md")
    assert book.pip_requirement("1.2.3") == "etecrm_lib @ git+https://github.com/etecrm-book/etecrm@v1.2.3"
    compile(book.setup_cell_source(), "<setup cell>", "exec")  # plain Python, no magics


def test_write_notebook_strips_outputs(tmp_path):
    import nbformat.v4 as nbf

    cell = nbf.new_code_cell("1 + 1", execution_count=3, outputs=[nbf.new_output("execute_result", {"text/plain": "2"})])
    path = book.write_notebook(tmp_path / "x.ipynb", book.standard_cells("x.ipynb", "X") + [cell])
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[3].outputs == [] and nb.cells[3].execution_count is None
    assert [c.id for c in nb.cells] == ["cell-000", "cell-001", "cell-002", "cell-003"]
    first = path.read_bytes()
    book.write_notebook(path, nb.cells)
    assert path.read_bytes() == first  # rewriting an unchanged notebook changes nothing


def test_extension_drops_plotly_cdn_mathjax():
    from docutils import nodes
    from docutils.utils import new_document
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser

    doc = new_document("x", get_default_settings(Parser))
    cdn = '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>'
    doc += nodes.raw("", f"<div>{cdn}<div id='plot'></div></div>", format="html")
    doc += nodes.raw("", cdn, format="latex")
    book._drop_cdn_scripts(None, doc, "x")
    html_node, latex_node = list(doc.findall(nodes.raw))
    assert "cdnjs" not in html_node.astext() and "<div id='plot'></div>" in html_node.astext()
    assert latex_node.astext() == cdn  # only HTML output is touched


def test_extension_setup_prepares_the_build_environment(monkeypatch):
    class App:
        connected = []

        def connect(self, event, handler):
            self.connected.append(event)

    monkeypatch.delenv("PLOTLY_RENDERER", raising=False)
    metadata = book.setup(App())
    assert set(App.connected) == {"doctree-resolved", "html-page-context"}
    assert metadata["version"] == __version__
    # the notebook kernels the build starts inherit this environment: plotly writes HTML figures
    probe = "import plotly.io as pio; print(pio.renderers.default)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.strip() == "notebook", done.stderr


def test_extension_shows_local_colab_badge():
    from docutils import nodes
    from docutils.utils import new_document
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser

    doc = new_document("x", get_default_settings(Parser))
    link = nodes.reference("", "", refuri=book.colab_url("01_data.ipynb"))
    link += nodes.image(uri=book.COLAB_BADGE, alt="Open In Colab")
    doc += nodes.paragraph("", "", link)
    book._drop_cdn_scripts(None, doc, "book/01_data")
    assert not list(doc.findall(nodes.image))
    (raw,) = doc.findall(nodes.raw)
    assert raw.astext() == '<img alt="Open In Colab" src="../_static/colab-badge.svg"/>'
    assert raw.parent is link  # still inside the link to Colab


# --------------------------------------------------------------------------- the built book in a browser
@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on http://127.0.0.1:<free port>/ in a background thread."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def chromium_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--window-size=1400,1000",
                 "--disable-dev-shm-usage",
                 # no internet: every host but 127.0.0.1 fails to resolve, so a CDN dependency shows up as an error
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def build_book(output: Path) -> Path:
    """Build the book (quick profile) into ``output``; returns the HTML folder."""
    env = dict(os.environ, ETECRM_PROFILE="quick", PLOTLY_RENDERER="notebook")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(output)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"book build failed:\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    return output / "_build" / "html"


def check_pages(html_dir: Path, chapters: list, screenshots: Path | None = None) -> dict:
    """Open every chapter page of a built book in Chromium and check it; returns what each page showed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    seen = {}
    driver = chromium_driver()
    try:
        with serve(html_dir) as base:
            for chapter in chapters:
                page = Path(chapter).with_suffix(".html").as_posix()
                driver.get(f"{base}/{page}")
                WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
                assert "404" not in driver.title and driver.find_elements(By.CSS_SELECTOR, "main h1"), f"{page} did not load"
                html = driver.page_source
                is_notebook = chapter.endswith(".ipynb")
                if is_notebook:  # every chapter notebook draws at least one plotly figure
                    WebDriverWait(driver, 60).until(
                        lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot svg.main-svg"),
                        message=f"{page}: no plotly figure was rendered")
                has_widgets = "application/vnd.jupyter.widget-state+json" in html
                if has_widgets:  # embedded widget state must turn into widget DOM nodes
                    WebDriverWait(driver, 60).until(
                        lambda d: d.find_elements(By.CSS_SELECTOR, ".jupyter-widgets, [class*='widget-']"),
                        message=f"{page}: widget state is embedded but no widget was rendered")
                if is_notebook:
                    colab = book.colab_url(Path(chapter).name)
                    links = {a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a[href*='colab.research.google.com']")}
                    assert colab in links, f"{page}: no link to {colab}; Colab links found: {links}"
                    others = {link for link in links if "/github/" in link and link != colab}
                    assert not others, f"{page}: Colab links to another notebook: {others}"
                menus = [f for f in driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
                         if f.find_elements(By.CSS_SELECTOR, ".updatemenu-header")]
                if menus:
                    click_second_menu_item(driver, menus[0], page)
                errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
                assert not errors, f"{page}: JavaScript errors in the browser: {errors}"
                if screenshots is not None:
                    save_screenshots(driver, screenshots, Path(chapter).stem)
                seen[chapter] = {
                    "plotly_figures": len(driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")),
                    "widgets": len(driver.find_elements(By.CSS_SELECTOR, ".jupyter-widgets")),
                }
    finally:
        driver.quit()
    return seen


def click_second_menu_item(driver, figure, page: str) -> None:
    """Open a figure's drop-down menu, pick its second entry, and check the traces it shows (no kernel)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure)
    figure.find_element(By.CSS_SELECTOR, ".updatemenu-header").click()
    items = WebDriverWait(driver, 10).until(lambda d: figure.find_elements(By.CSS_SELECTOR, ".updatemenu-dropdown-button"))
    if len(items) < 2:
        return
    wanted = driver.execute_script("return arguments[0].layout.updatemenus[0].buttons[1].args[0].visible", figure)
    items[1].click()
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return arguments[0].data.map(t => t.visible !== false)", figure) == wanted,
        message=f"{page}: choosing the second menu entry did not show its traces")


def save_screenshots(driver, folder: Path, stem: str) -> None:
    """The top of the page, and each plotly figure and widget area of it, as PNG files."""
    from selenium.webdriver.common.by import By

    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"{stem}.png"))
    elements = (driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
                + driver.find_elements(By.CSS_SELECTOR, ".widget-subarea"))
    for i, element in enumerate(elements):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.screenshot(str(folder / f"{stem}_{i:02d}.png"))


@pytest.mark.book
@pytest.mark.slow
@pytest.mark.timeout(1800)  # the whole quick book: at most 20 minutes on CI's 2 cores
def test_built_book_in_browser(tmp_path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("headless Chromium is needed: run `make browser` (apt-get install chromium chromium-driver)")
    html_dir = build_book(tmp_path / "book")
    chapters = book.toc_chapters(ROOT)
    # the pages link to vendored scripts only: nothing is fetched from a CDN
    for chapter in chapters:
        text = (html_dir / Path(chapter).with_suffix(".html")).read_text(encoding="utf-8")
        external = re.findall(r'<script[^>]+src="(https?://[^"]+)"', text)
        assert not external, f"{chapter}: scripts loaded from the internet: {external}"
    screenshots = os.environ.get("ETECRM_SCREENSHOTS")
    seen = check_pages(html_dir, chapters, Path(screenshots) if screenshots else None)
    assert sum(page["widgets"] for page in seen.values()) >= 1, f"no widget rendered anywhere in the book: {seen}"
    assert sum(page["plotly_figures"] for page in seen.values()) >= len(notebook_chapters())
