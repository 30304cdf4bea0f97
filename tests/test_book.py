"""The book: configuration, chapter notebooks, and the built HTML checked in headless Chromium.

The fast tests check the sources (config agrees with ``etecrm_lib.book``, every chapter starts
with the standard three cells and is committed without outputs, the vendored JavaScript is there).
``test_built_book_in_browser`` (marked ``book`` and ``slow``) builds the whole book in the quick
profile into a temporary folder and opens every chapter page in headless Chromium (Debian's
``chromium`` + ``chromium-driver``; ``make browser`` installs them). The browser may reach only
127.0.0.1, so any page that needs a CDN fails the test. Set ``ETECRM_SCREENSHOTS=<folder>`` to keep
a PNG screenshot of each page.

Every page of the table of contents is also checked as a reader sees it (:func:`page_problems`):
no raw Markdown table text (a table must be a real table), no red (failed) progress bar, no table,
output or code block wider than its box at a 1280-px window (scroll width > client width: clipped
lines), no stderr output (warnings, build paths, download messages), and every plotly figure
carries a profile label (``plots.label_figure``: "profile: quick · device: ... · seeds: ...").
No page of the site may weigh over 1.5 MB (plotly.js is one file in ``_static``).
``test_student_book_has_no_solutions`` builds the student edition (``make students``) and checks
that no line of an instructor solution appears in its HTML.
"""

from __future__ import annotations

import contextlib
import functools
import html as html_lib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest

from etecrm_lib import __version__, book, notebooks, verdicts
from etecrm_lib.results import describe_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(
    0, str(ROOT / "book" / "_ext")
)  # the book build's Sphinx extension, named in _config.yml
import etecrm_build  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WINDOW_WIDTH = 1280  # a laptop screen: no table or code block may be cut off at this width
MAX_PAGE_BYTES = 1_500_000  # plotly.js is loaded once for the site (_static), not inlined per page


def read_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def notebook_chapters() -> list:
    return [c for c in notebooks.toc_chapters(ROOT) if c.endswith(".ipynb")]


# --------------------------------------------------------------------------- configuration
def test_config_agrees_with_library_constants():
    config = read_config()
    assert notebooks.book_repository() == (
        config["repository"]["url"],
        config["repository"]["branch"],
    )
    # pages are named book/NN_x relative to the repository root, so the Colab button needs no prefix
    assert config["repository"].get("path_to_book", "") == ""
    assert config["launch_buttons"]["colab_url"] == book.COLAB_URL
    execute = config["execute"]
    assert execute["execute_notebooks"] == "force"
    assert execute["allow_errors"] is False and execute["raise_on_error"] is True
    assert config["only_build_toc_files"] is True
    # the build's own Sphinx extension lives with the book, not in the library
    assert config["sphinx"]["local_extensions"] == {"etecrm_build": "book/_ext"}
    assert Path(ROOT, "book/_ext/etecrm_build.py").is_file() and not hasattr(book, "setup")


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
    # the widget manager loads its fonts from its own folder; the extension shows the local Colab
    # badge
    manager = static[0] / Path(scripts[2]).parent
    assert len(list(manager.glob("*.woff2"))) == 3
    assert (static[0] / book.LOCAL_COLAB_BADGE.removeprefix("_static/")).is_file()


def test_toc_lists_existing_chapters_in_book_folder():
    chapters = notebooks.toc_chapters(ROOT)
    assert chapters[0] == "book/intro.md"
    assert "book/01_data.ipynb" in chapters and "book/10_exercises.ipynb" in chapters
    for chapter in chapters:
        assert chapter.startswith("book/") and (ROOT / chapter).is_file()


def test_every_chapter_notebook_is_in_the_toc():
    listed = set(notebooks.toc_chapters(ROOT))
    missing = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "book").glob("*.ipynb")
        if p.relative_to(ROOT).as_posix() not in listed
    )
    assert not missing, f"add these chapters to _toc.yml: {missing}"


@pytest.mark.parametrize("chapter", notebook_chapters())
def test_chapter_starts_with_standard_cells_and_has_no_outputs(chapter):
    nb = nbformat.read(ROOT / chapter, as_version=4)
    nbformat.validate(nb)
    # the course guide (etecrm_lib.course, tests/test_course.py) may sit right after the title
    title, setup, parameters = [c for c in nb.cells if c.get("id") != "course-guide"][:3]
    name = Path(chapter).name
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    assert notebooks.colab_url(name) in title.source
    assert (
        setup.cell_type == "code"
        and setup.source.strip() == notebooks.setup_cell_source(name).strip()
    )
    assert parameters.cell_type == "code" and "parameters" in parameters.metadata.get("tags", [])
    assert parameters.source.startswith(notebooks.PARAMETERS_CELL.split("DATASET")[0])
    for name_ in ("DATASET", "PROFILE", "SEED"):
        assert re.search(rf"^{name_} = ", parameters.source, flags=re.MULTILINE), (
            f"{chapter}: no {name_} parameter"
        )
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{chapter}: commit it without outputs"
            )
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
        assert book.check_runtime() is None  # the set-up cell ends with it: no stray value shown
    out = capsys.readouterr().out
    assert "device: cpu" in out and "profile: quick" in out
    monkeypatch.delitem(sys.modules, "google.colab")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning outside Colab (the CPU book build calls it)
        book.check_runtime()
    assert "No GPU: the chapter runs its small 'quick' profile" in capsys.readouterr().out


def test_colab_url_and_pip_requirement():
    assert notebooks.colab_url("03_x.ipynb") == (
        "https://colab.research.google.com/github/etecrm-book/etecrm/blob/main/book/03_x.ipynb"
    )
    assert notebooks.colab_url("book/03_x.ipynb") == notebooks.colab_url("03_x.ipynb")
    with pytest.raises(ValueError, match="ipynb"):
        notebooks.colab_url("03_x.md")
    assert (
        notebooks.pip_requirement() == "etecrm_lib @ git+https://github.com/etecrm-book/etecrm@main"
    )
    compile(
        notebooks.setup_cell_source("03_x.ipynb"), "<setup cell>", "exec"
    )  # plain Python, no magics


def test_write_notebook_strips_outputs(tmp_path):
    import nbformat.v4 as nbf

    cell = nbf.new_code_cell(
        "1 + 1", execution_count=3, outputs=[nbf.new_output("execute_result", {"text/plain": "2"})]
    )
    path = notebooks.write_notebook(
        tmp_path / "x.ipynb", notebooks.standard_cells("x.ipynb", "X") + [cell]
    )
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[3].outputs == [] and nb.cells[3].execution_count is None
    assert [c.id for c in nb.cells] == ["cell-000", "cell-001", "cell-002", "cell-003"]
    first = path.read_bytes()
    notebooks.write_notebook(path, nb.cells)
    assert path.read_bytes() == first  # rewriting an unchanged notebook changes nothing


def test_extension_drops_plotly_cdn_mathjax():
    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    doc = new_document("x", get_default_settings(Parser))
    cdn = (
        '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js">'
        "</script>"
    )
    doc += nodes.raw("", f"<div>{cdn}<div id='plot'></div></div>", format="html")
    doc += nodes.raw("", cdn, format="latex")
    etecrm_build.drop_cdn_scripts(None, doc, "x")
    html_node, latex_node = list(doc.findall(nodes.raw))
    assert "cdnjs" not in html_node.astext() and "<div id='plot'></div>" in html_node.astext()
    assert latex_node.astext() == cdn  # only HTML output is touched


def test_extension_setup_prepares_the_build_environment(monkeypatch):
    class App:
        connected = []

        def connect(self, event, handler):
            self.connected.append(event)

    monkeypatch.delenv("PLOTLY_RENDERER", raising=False)
    metadata = etecrm_build.setup(App())
    assert set(App.connected) == {"doctree-resolved", "html-page-context", "build-finished"}
    assert metadata["version"] == __version__
    # the notebook kernels the build starts inherit this environment: plotly writes HTML figures
    probe = "import plotly.io as pio; print(pio.renderers.default)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.stdout.strip() == "notebook", done.stderr


def test_extension_links_the_sites_one_plotly_js(tmp_path):
    """The 4.8 MB plotly.js bundle inlined by plotly's notebook renderer: one link to _static."""
    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document
    from plotly.offline import get_plotlyjs

    init = f"<script>window.PlotlyConfig = {{}};</script>\n<script>{get_plotlyjs()}</script>"
    doc = new_document("x", get_default_settings(Parser))
    doc += nodes.raw("", init, format="html")
    doc += nodes.raw(
        "", "<div id='plot'><script>Plotly.newPlot('plot', [])</script></div>", format="html"
    )
    etecrm_build.drop_cdn_scripts(None, doc, "book/02_gabor_ridge")
    first, figure = (node.astext() for node in doc.findall(nodes.raw))
    assert first == (
        "<script>window.PlotlyConfig = {};</script>\n"
        '<script charset="utf-8" src="../_static/plotly.min.js"></script>'
    )
    assert figure == "<div id='plot'><script>Plotly.newPlot('plot', [])</script></div>"
    # after the build the site holds the installed plotly's bundle, once
    build = type("Builder", (), {"format": "html"})()
    app = type("App", (), {"builder": build, "outdir": str(tmp_path)})()
    etecrm_build.copy_plotly_js(app, None)
    copied = tmp_path / etecrm_build.PLOTLY_STATIC
    assert copied.read_text(encoding="utf-8") == get_plotlyjs()


def test_extension_shows_local_colab_badge():
    from docutils import nodes
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    doc = new_document("x", get_default_settings(Parser))
    link = nodes.reference("", "", refuri=notebooks.colab_url("01_data.ipynb"))
    link += nodes.image(uri=book.COLAB_BADGE, alt="Open In Colab")
    doc += nodes.paragraph("", "", link)
    etecrm_build.drop_cdn_scripts(None, doc, "book/01_data")
    assert not list(doc.findall(nodes.image))
    (raw,) = doc.findall(nodes.raw)
    assert raw.astext() == '<img alt="Open In Colab" src="../_static/colab-badge.svg"/>'
    assert raw.parent is link  # still inside the link to Colab


# --------------------------------------------------------------------- a page as its readers see it
RAW_MARKDOWN_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\|")  # a separator row "|---|", shown as text

PAGE_PROBLEMS_JS = r"""
const main = document.querySelector('main') || document.body;
// text a reader sees, without code cells and code blocks of the prose (they may show Markdown on
// purpose)
const clone = main.cloneNode(true);
clone.querySelectorAll('.cell_input, .highlight, script, style').forEach(e => e.remove());
const text = clone.innerText;
const boxes = '.cell_output, .cell_output pre, .cell_output table, .cell_input pre, .output, '
  + 'table, pre, .highlight';
const wide = Array.from(main.querySelectorAll(boxes))
  .filter(el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1);
// report the innermost box only (its parents overflow because of it)
const overflowing = wide.filter(el => !wide.some(other => other !== el && el.contains(other)))
  .map(el =>
    `${el.tagName.toLowerCase()}.${String(el.className).split(' ')[0]} ` +
    `(${el.scrollWidth} px of content in a ${el.clientWidth} px box): ` +
    el.innerText.slice(0, 80).replace(/\s+/g, ' '));
const unlabelled = [];
main.querySelectorAll('.js-plotly-plot').forEach(el => {
  const layout = el.layout || {};
  const title = layout.title
    ? String(layout.title.text !== undefined ? layout.title.text : layout.title)
    : '';
  const texts = [title].concat((layout.annotations || []).map(a => String(a.text || '')));
  if (!texts.some(t => t.includes('profile: ')))
    unlabelled.push(title.slice(0, 80) || '(a figure without a title)');
});
const dangerBars = main.querySelectorAll(
  '.progress-bar-danger, .widget-progress .progress-bar-danger').length;
// what a cell wrote to stderr (myst-nb marks it "output stderr"): warnings, build paths, downloads
const stderr = Array.from(main.querySelectorAll('.output.stderr, .stderr'))
  .filter(el => el.innerText.trim())
  .map(el => el.innerText.trim().slice(0, 120).replace(/\s+/g, ' '));
return {text: text, overflowing: overflowing, unlabelled: unlabelled, danger_bars: dangerBars,
        stderr: stderr};
"""


def widget_states(page_html: str) -> list:
    """The embedded ipywidgets model states of a page (dicts), from its widget-state script tags."""
    states = []
    for block in re.findall(
        r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page_html, re.S
    ):
        try:
            states += [
                m.get("state", {})
                for m in json.loads(html_lib.unescape(block)).get("state", {}).values()
            ]
        except json.JSONDecodeError:
            states.append({"_unreadable_widget_state": True})
    return states


def page_problems(driver, page_html: str) -> list:
    """What a reader would find wrong on the page open in ``driver`` (an empty list when it reads
    right)."""
    seen = driver.execute_script(PAGE_PROBLEMS_JS)
    problems = []
    raw = list(RAW_MARKDOWN_TABLE.finditer(seen["text"]))
    if raw:
        context = seen["text"][max(0, raw[0].start() - 60) : raw[0].end() + 20].replace("\n", " ")
        problems.append(
            f"raw Markdown table text, {len(raw)} place(s) (render tables with "
            f"etecrm_lib.book.show_table); first: ...{context}..."
        )
    red = [s for s in widget_states(page_html) if s.get("bar_style") == "danger"]
    if red or seen["danger_bars"]:
        problems.append(
            f"{max(len(red), seen['danger_bars'])} red (failed-looking) progress bar(s): "
            "the book build should print finished bars as text (etecrm_lib.book.notebook_defaults)"
        )
    problems += [f"wider than its box (clipped): {o}" for o in seen["overflowing"]]
    problems += [f"stderr output on the page (a warning or log line): {t}" for t in seen["stderr"]]
    problems += [
        f"figure without a profile label (plots.label_figure): {t!r}" for t in seen["unlabelled"]
    ]
    return problems


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", ""))


def solution_lines(instructor_notebook: Path, student_notebook: Path) -> list:
    """Lines of the instructor's solution cells that the student edition must not contain.

    A line counts if it is at least 8 characters long and the student notebook does not show it
    anyway (function signatures and docstrings stay there on purpose, and a hint may quote a line).
    """
    teacher = nbformat.read(instructor_notebook, as_version=4)
    pupil = nbformat.read(student_notebook, as_version=4)
    shown = _normalise("\n".join(cell.source for cell in pupil.cells))
    lines = []
    for cell in teacher.cells:
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
            lines += [
                line.strip()
                for line in cell.source.splitlines()
                if len(line.strip()) >= 8 and _normalise(line.strip()) not in shown
            ]
    return lines


def leaked_solutions(html_dir: Path, forbidden: list) -> dict:
    """``{page: [solution lines found in its text]}`` over every HTML page under ``html_dir``."""
    leaks = {}
    for page in sorted(html_dir.rglob("*.html")):
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
        text = _normalise(text)
        found = [line for line in forbidden if _normalise(line) in text]
        if found:
            leaks[page.relative_to(html_dir).as_posix()] = found
    return leaks


# ---------------------------------------------------------------------- the built book in a browser
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
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--window-size={WINDOW_WIDTH},1000",
        "--disable-dev-shm-usage",
        # no internet: every host but 127.0.0.1 fails to resolve, so a CDN dependency shows up as an
        # error
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def build_book(output: Path) -> Path:
    """Build the book (quick profile) into ``output``; returns the HTML folder."""
    env = dict(os.environ, ETECRM_PROFILE="quick", PLOTLY_RENDERER="notebook")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book),
        "build",
        str(ROOT),
        "-W",
        "-n",
        "--keep-going",
        "--path-output",
        str(output),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"book build failed:\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    return output / "_build" / "html"


def page_weights(html_dir: Path) -> dict:
    """``{page: bytes}`` of every HTML page of the site heavier than :data:`MAX_PAGE_BYTES`."""
    sizes = {p.relative_to(html_dir).as_posix(): p.stat().st_size for p in html_dir.rglob("*.html")}
    return {page: size for page, size in sizes.items() if size > MAX_PAGE_BYTES}


def check_pages(html_dir: Path, chapters: list, screenshots: Path | None = None) -> dict:
    """Open every chapter page of a built book in Chromium and check it; returns what each page
    showed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    seen = {}
    driver = chromium_driver()
    try:
        with serve(html_dir) as base:
            for chapter in chapters:
                page = Path(chapter).with_suffix(".html").as_posix()
                driver.get(f"{base}/{page}")
                WebDriverWait(driver, 30).until(
                    lambda d: d.execute_script("return document.readyState") == "complete"
                )
                assert "404" not in driver.title and driver.find_elements(
                    By.CSS_SELECTOR, "main h1"
                ), f"{page} did not load"
                html = driver.page_source
                is_notebook = chapter.endswith(".ipynb")
                if is_notebook:  # every chapter notebook draws at least one plotly figure
                    WebDriverWait(driver, 60).until(
                        lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot svg.main-svg"),
                        message=f"{page}: no plotly figure was rendered",
                    )
                has_widgets = "application/vnd.jupyter.widget-state+json" in html
                if has_widgets:  # embedded widget state must turn into widget DOM nodes
                    WebDriverWait(driver, 60).until(
                        lambda d: d.find_elements(
                            By.CSS_SELECTOR, ".jupyter-widgets, [class*='widget-']"
                        ),
                        message=f"{page}: widget state is embedded but no widget was rendered",
                    )
                if is_notebook:
                    colab = notebooks.colab_url(
                        Path(chapter).name, folder=Path(chapter).parent.as_posix()
                    )
                    student = notebooks.colab_url(Path(chapter).name, folder=book.STUDENTS_FOLDER)
                    links = {
                        a.get_attribute("href")
                        for a in driver.find_elements(
                            By.CSS_SELECTOR, "a[href*='colab.research.google.com']"
                        )
                    }
                    assert colab in links, f"{page}: no link to {colab}; Colab links found: {links}"
                    # the only other notebook a page may open is its own student edition
                    others = {
                        link
                        for link in links
                        if "/github/" in link and link not in (colab, student)
                    }
                    assert not others, f"{page}: Colab links to another notebook: {others}"
                menus = [
                    f
                    for f in driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
                    if f.find_elements(By.CSS_SELECTOR, ".updatemenu-header")
                ]
                if menus:
                    click_second_menu_item(driver, menus[0], page)
                errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
                assert not errors, f"{page}: JavaScript errors in the browser: {errors}"
                problems = page_problems(driver, html)
                if screenshots is not None:
                    save_screenshots(driver, screenshots, Path(chapter).stem)
                seen[chapter] = {
                    "problems": problems,
                    "plotly_figures": len(driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")),
                    "widgets": len(driver.find_elements(By.CSS_SELECTOR, ".jupyter-widgets")),
                }
    finally:
        driver.quit()
    return seen


def click_second_menu_item(driver, figure, page: str) -> None:
    """Open a figure's drop-down menu, pick its second entry, and check the traces it shows (no
    kernel)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure)
    figure.find_element(By.CSS_SELECTOR, ".updatemenu-header").click()
    items = WebDriverWait(driver, 10).until(
        lambda d: figure.find_elements(By.CSS_SELECTOR, ".updatemenu-dropdown-button")
    )
    if len(items) < 2:
        return
    wanted = driver.execute_script(
        "return arguments[0].layout.updatemenus[0].buttons[1].args[0].visible", figure
    )
    items[1].click()
    WebDriverWait(driver, 10).until(
        lambda d: (
            d.execute_script("return arguments[0].data.map(t => t.visible !== false)", figure)
            == wanted
        ),
        message=f"{page}: choosing the second menu entry did not show its traces",
    )


def save_screenshots(driver, folder: Path, stem: str) -> None:
    """The top of the page, and each plotly figure and widget area of it, as PNG files."""
    from selenium.webdriver.common.by import By

    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"{stem}.png"))
    # the whole page, top to bottom, as one tall picture (to read it as a reader scrolls it)
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(int(height), 30000))
    driver.save_screenshot(str(folder / f"{stem}_full.png"))
    driver.set_window_size(size["width"], size["height"])
    elements = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot") + driver.find_elements(
        By.CSS_SELECTOR, ".widget-subarea"
    )
    for i, element in enumerate(elements):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.screenshot(str(folder / f"{stem}_{i:02d}.png"))


@pytest.mark.book
@pytest.mark.slow
@pytest.mark.timeout(1800)  # the whole quick book: at most 20 minutes on CI's 2 cores
def test_built_book_in_browser(tmp_path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(
            "headless Chromium is needed: run `make browser` (apt-get install chromium "
            "chromium-driver)"
        )
    html_dir = build_book(tmp_path / "book")
    chapters = notebooks.toc_chapters(ROOT)
    # the pages link to vendored scripts only: nothing is fetched from a CDN
    for chapter in chapters:
        text = (html_dir / Path(chapter).with_suffix(".html")).read_text(encoding="utf-8")
        external = re.findall(r'<script[^>]+src="(https?://[^"]+)"', text)
        assert not external, f"{chapter}: scripts loaded from the internet: {external}"
    heavy = page_weights(html_dir)
    assert not heavy, f"pages over {MAX_PAGE_BYTES / 1e6:.1f} MB: {heavy}"
    # every live demonstration in the built chapters shows what its text says (test_demonstrations)
    from test_demonstrations import demonstrations, standard_cell_problems

    paths = sorted((html_dir.parent / "jupyter_execute").rglob("*.ipynb"))
    assert paths, f"no executed notebooks next to {html_dir}"
    executed = {path.name: nbformat.read(path, as_version=4) for path in paths}
    stray = {name: standard_cell_problems(nb) for name, nb in executed.items()}
    assert not any(stray.values()), f"set-up cells that show more than they print: {stray}"
    records = [r for nb in executed.values() for r in demonstrations(nb)]
    missed = [r for r in records if not r["holds"]]
    assert records and not missed, f"live demonstrations that do not hold: {missed}"
    screenshots = os.environ.get("ETECRM_SCREENSHOTS")
    seen = check_pages(html_dir, chapters, Path(screenshots) if screenshots else None)
    bad = {chapter: page["problems"] for chapter, page in seen.items() if page["problems"]}
    assert not bad, "pages that do not read right:\n" + "\n".join(
        f"{chapter}:\n  " + "\n  ".join(problems) for chapter, problems in bad.items()
    )
    assert sum(page["widgets"] for page in seen.values()) >= 1, (
        f"no widget rendered anywhere in the book: {seen}"
    )
    assert sum(page["plotly_figures"] for page in seen.values()) >= len(notebook_chapters())


def test_page_weights_name_the_heavy_pages(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "heavy.html").write_bytes(b"x" * (MAX_PAGE_BYTES + 1))
    (tmp_path / "light.html").write_bytes(b"x" * MAX_PAGE_BYTES)
    assert page_weights(tmp_path) == {"book/heavy.html": MAX_PAGE_BYTES + 1}


SYNTHETIC_PAGE = """<!doctype html><html><head><title>synthetic</title></head><body>
<main><h1>A page</h1>
<p>| roi | model | median_r | |---|---|---| | V1 | etecrm | 0.5 |</p>
<div class="cell_output" style="width: 300px"><pre style="white-space: pre">{long}</pre></div>
<div class="cell_output"><div class="widget-progress">
<div class="progress-bar-danger">65%</div></div></div>
<div class="js-plotly-plot" id="unlabelled"></div><div class="js-plotly-plot" id="labelled"></div>
<div class="cell_output"><div class="output stderr">
<pre>/tmp/build/x.py:3: UserWarning: careful</pre></div></div>
<div class="cell_input"><pre>print("| a | b |\\n|---|---|")  # code may show Markdown</pre></div>
<script>
document.getElementById("unlabelled").layout = {{title: {{text: "Median r per ROI"}}}};
document.getElementById("labelled").layout = {{title: {{
  text: "Fine<br><sup>profile: quick · device: cpu · seed: 0</sup>"}}}};
</script></main></body></html>"""


@pytest.mark.book
def test_page_checks_catch_what_readers_would_see(tmp_path):
    """The checks of every page fail on a page with each fault, and pass once it is fixed."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(
            "headless Chromium is needed: run `make browser` (apt-get install chromium "
            "chromium-driver)"
        )
    bad = SYNTHETIC_PAGE.format(long="x = " + "1 + " * 200)
    state = {
        "state": {
            "m": {"model_name": "FloatProgressModel", "state": {"bar_style": "danger", "value": 26}}
        }
    }
    bad += f'<script type="application/vnd.jupyter.widget-state+json">{json.dumps(state)}</script>'
    (tmp_path / "bad.html").write_text(bad, encoding="utf-8")
    good = (
        SYNTHETIC_PAGE.format(long="x = 1")
        .replace(
            "<p>| roi | model | median_r | |---|---|---| | V1 | etecrm | 0.5 |</p>",
            "<table><tr><td>V1</td></tr></table>",
        )
        .replace("progress-bar-danger", "progress-bar-success")
        .replace('"Median r per ROI"', '"r<br><sup>profile: full</sup>"')
        .replace("/tmp/build/x.py:3: UserWarning: careful", "")
    )
    (tmp_path / "good.html").write_text(good, encoding="utf-8")
    driver = chromium_driver()
    try:
        with serve(tmp_path) as base:
            driver.get(f"{base}/bad.html")
            problems = page_problems(driver, driver.page_source)
            driver.get(f"{base}/good.html")
            fixed = page_problems(driver, driver.page_source)
    finally:
        driver.quit()
    text = "\n".join(problems)
    assert "raw Markdown table text" in text and "| roi | model" in text
    assert "red (failed-looking) progress bar" in text
    assert "wider than its box" in text and "x = 1 + 1" in text
    assert (
        "figure without a profile label" in text
        and "Median r per ROI" in text
        and "Fine" not in text
    )
    assert "stderr output on the page" in text and "UserWarning: careful" in text
    assert len(problems) == 5, problems
    assert fixed == [], fixed


def test_solution_lines_and_leak_search(tmp_path):
    """The student-build check finds a solution line in a page's text, and not the signature kept on
    purpose."""
    import nbformat.v4 as nbf

    solution = nbf.new_code_cell(
        'def f(x):\n    """Square."""\n    return x * x  # the answer\n',
        metadata={"tags": ["solution"]},
    )
    student = nbf.new_code_cell(
        'def f(x):\n    """Square."""\n    raise NotImplementedError("Exercise 1")\n'
    )
    nbformat.write(nbf.new_notebook(cells=[solution]), tmp_path / "teacher.ipynb")
    nbformat.write(nbf.new_notebook(cells=[student]), tmp_path / "pupil.ipynb")
    forbidden = solution_lines(tmp_path / "teacher.ipynb", tmp_path / "pupil.ipynb")
    assert forbidden == ["return x * x  # the answer"]
    site = tmp_path / "site"
    site.mkdir()
    (site / "ok.html").write_text(
        '<pre><span class="k">def</span> f(x):\n    raise NotImplementedError</pre>'
    )
    (site / "leak.html").write_text(
        '<pre><span class="k">return</span> x <span>*</span> x  # the answer</pre>'
    )
    assert leaked_solutions(site, forbidden) == {"leak.html": ["return x * x  # the answer"]}


def build_student_book(output: Path) -> Path:
    """``make students`` into ``output`` (student notebooks + the student book); returns the HTML
    folder."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "make_student_notebooks.py"),
            "--out",
            str(output / "notebooks"),
            "--html",
            str(output),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, (
        f"student book build failed:\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    )
    return output / "_build" / "html"


@pytest.mark.book
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_student_book_has_no_solutions(tmp_path):
    """The student edition (``make students``) has every exercise, and no line of any solution in
    its HTML."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from make_student_notebooks import INSTRUCTOR_NOTEBOOKS
    finally:
        sys.path.pop(0)

    html_dir = build_student_book(tmp_path / "students")
    pages = sorted(p.relative_to(html_dir).as_posix() for p in html_dir.glob("*.html"))
    for notebook in INSTRUCTOR_NOTEBOOKS:
        assert f"{notebook.stem}.html" in pages, f"the student book lacks {notebook.stem}: {pages}"
        forbidden = solution_lines(notebook, tmp_path / "students" / "notebooks" / notebook.name)
        assert len(forbidden) >= 10, (
            "the instructor notebook should have solutions to check against"
        )
        leaks = leaked_solutions(html_dir, forbidden)
        assert not leaks, f"solution code in the student book: {leaks}"
        # model answers and instructor notes (cells tagged "instructor") stay out too
        teacher = nbformat.read(notebook, as_version=4)
        notes = [
            line.strip()
            for cell in teacher.cells
            if "instructor" in cell.metadata.get("tags", [])
            for line in cell.source.splitlines()
            if len(line.strip()) >= 20 and "`" not in line and "$" not in line and "*" not in line
        ]
        assert len(notes) >= 20, "the instructor edition should have model answers to check"
        leaks = leaked_solutions(html_dir, notes)
        assert not leaks, f"model answers or instructor notes in the student book: {leaks}"
        for page in html_dir.rglob("*.html"):
            assert "Model answer" not in page.read_text(encoding="utf-8"), page.name
        page = (html_dir / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert "NotImplementedError" in page
        assert notebooks.colab_url(notebook.name, folder=book.STUDENTS_FOLDER) in html_lib.unescape(
            page
        )


# --------------------------------------------------------------------------- what the pages show
def test_show_table_renders_a_real_html_table():
    import numpy as np

    rows = [
        {"roi": "V1", "median_r": np.float64(0.51234), "n": np.int64(800), "note": None},
        {"roi": "LO", "median_r": float("nan"), "n": 400, "note": "a < b"},
    ]
    table = book.show_table(rows, caption="Two ROIs")
    page = table._repr_html_()
    assert page.startswith('<table class="etecrm-table"><caption>Two ROIs</caption>')
    assert "<th>median r</th>" in page and ">0.512</td>" in page and ">800</td>" in page
    assert ">–</td>" in page and "a &lt; b" in page and "np.float64" not in page and "|" not in page
    assert page.count("<tr>") == 3
    # the same table from columns, a DataFrame, or lists with names
    import pandas as pd

    columns = {"roi": ["V1", "LO"], "median_r": [0.51234, float("nan")]}
    expected = book.show_table(rows, columns=["roi", "median_r"])._repr_html_()
    assert book.show_table(columns)._repr_html_() == expected
    assert book.show_table(pd.DataFrame(columns))._repr_html_() == expected
    assert (
        book.show_table(
            [["V1", 0.51234], ["LO", float("nan")]], columns=["roi", "median_r"]
        )._repr_html_()
        == expected
    )
    assert repr(book.show_table(columns)).split() == [
        "ROI",
        "median",
        "r",
        "V1",
        "0.512",
        "LO",
        "–",
    ]
    # plain labels for code names, model names as they are; whole numbers with separators
    alpha = book.show_table([{"frac_ceiling": 0.5, "gwp_ridge": 0.1, "alpha": 100000.0}])
    assert alpha.columns == ["fraction of ceiling", "gwp_ridge", "alpha"]
    assert alpha.rows == [["0.500", "0.100", "100,000"]]
    with pytest.raises(ValueError, match="columns"):
        book.show_table([["V1", 0.5]])
    with pytest.raises(ValueError, match="different lengths"):
        book.show_table({"a": [1, 2], "b": [1]})


def test_verdict_table_never_prints_a_bound_as_zero():
    from etecrm_lib.evaluation import Comparison, EncodingResult

    def comparison(roi, low, high):
        return Comparison(
            "etecrm", "gwp_ridge", roi, "median_r", (low + high) / 2, low, high, 0.5, 100
        )

    table = verdicts.verdict_table(
        [comparison("V1", 0.05, 0.2), comparison("LO", 7e-6, 0.03), comparison("V4", -0.03, 3e-4)]
    )
    assert (
        table.columns[:2] == ["ROI", "models (A − B)"]
        and table.columns[2] == "difference in median r"
    )
    v1, lo, v4 = table.rows
    assert v1[3:] == ["[+0.050, +0.200]", "better"]
    assert lo[3:] == ["[+0.000007, +0.030000]", "better, borderline"]
    assert v4[3:] == ["[-0.03000, +0.00030]", "no reliable difference, borderline"]
    assert verdicts.interval_digits(0.0, 0.5) == 3 and verdicts.interval_digits(1e-9) == 6
    # with the results compared, a column counts the collapsed seeds
    dead = EncodingResult("etecrm", "LO", "sim", 1, np.zeros(10, np.float32))
    alive = EncodingResult("etecrm", "LO", "sim", 1, np.linspace(-0.1, 0.5, 10, dtype=np.float32))
    table = verdicts.verdict_table([comparison("LO", 0.01, 0.03)], results=[dead, alive, alive])
    assert table.columns[-1] == "collapsed seeds"
    assert table.rows[0][-1] == "etecrm: 1 of 3 seeds collapsed"
    with pytest.raises(ValueError, match="no comparisons"):
        verdicts.verdict_table([])
    # two statistics in one table: each row names its own
    top = Comparison("etecrm", "gwp_ridge", "V1", "top_n_mean_r", 0.1, 0.05, 0.2, 0.0, 100)
    mixed = verdicts.verdict_table([comparison("V1", 0.05, 0.2), top])
    assert mixed.columns[2] == "difference"
    assert mixed.rows[1][1] == "etecrm − gwp_ridge (mean r of the top-N voxels)"


def test_finished_progress_bars_print_one_plain_line(capsys):
    import tqdm.auto

    saved = tqdm.auto.tqdm, tqdm.auto.trange
    try:
        book.use_finished_progress_bars()
        for _ in tqdm.auto.tqdm(range(5), desc="epochs"):
            pass
        bar = tqdm.auto.tqdm(total=40, desc="training V1", unit="epoch")
        bar.update(26)
        bar.set_postfix(val_r=0.31)
        bar.close()
        with tqdm.auto.tqdm(total=3, desc="inner", leave=False) as inner:
            inner.update(3)
        for _ in tqdm.auto.tqdm(range(3), disable=True):
            pass
    finally:
        tqdm.auto.tqdm, tqdm.auto.trange = saved
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].startswith("epochs: 5/5 in 00:0")
    assert lines[1].startswith("training V1: 26/40 epochs in 00:0") and "val_r=0.31" in lines[1]
    assert "ended before 40" in lines[1]
    assert (
        len(lines) == 2 and "\r" not in out.out and out.err == ""
    )  # nothing while running, nothing for hidden bars


def test_notebook_defaults_print_plain_numbers():
    import numpy as np

    saved = np.get_printoptions()
    try:
        book.notebook_defaults()
        assert repr(np.float64(0.25)) == "0.25" and str({"r": np.float32(0.5)}) == "{'r': 0.5}"
    finally:
        np.set_printoptions(**saved)


def test_committed_results_read_or_degrade(monkeypatch, tmp_path, capsys):
    found = book.committed_results(models=["gwp_ridge"], rois=["V1"])
    if (book.results_folder() / "results").is_dir() and found:
        assert [(r.model, r.roi, r.info["profile"]) for r in found] == [("gwp_ridge", "V1", "full")]
        assert describe_results(found)["profile"] == "full"
    monkeypatch.setattr(book, "results_folder", lambda: tmp_path / "nowhere")
    assert book.committed_results() == []
    assert "No committed results found" in capsys.readouterr().out


def test_committed_results_and_run_keep_to_one_data_seed(monkeypatch, tmp_path, capsys):
    """Files of another simulated cortex (data seed 1) never mix into the book's subject (data seed
    0)."""
    from etecrm_lib.evaluation import EncodingResult
    from etecrm_lib.results import result_path, save_result

    for data_seed in (0, 1):
        res = EncodingResult(
            "gwp_ridge", "V1", "sim", 1, np.full(4, 0.1 * (data_seed + 1), np.float32)
        )
        save_result(
            res,
            result_path(tmp_path, "sim", "full", 1, "V1", "gwp_ridge", 0, data_seed),
            profile="full",
            seed=0,
            extra={"data_seed": data_seed},
        )
    monkeypatch.setattr(book, "results_folder", lambda: tmp_path)
    (found,) = book.committed_results()
    assert found.info["data_seed"] == 0 and np.allclose(found.test_r, 0.1)
    assert book.committed_results(data_seed=1)[0].info["data_seed"] == 1
    assert (
        book.committed_results(simulation_seed=7) == [] and "sim-data7" in capsys.readouterr().out
    )
    with pytest.warns(DeprecationWarning, match="data_seed is deprecated"):  # the old name
        assert book.committed_results(data_seed=7) == []
    run = book.committed_run(subject=1)
    assert [r.info["data_seed"] for r in run.results] == [0]
    assert book.committed_run(subject=2) is None
    assert (
        f"Subject 2: the committed full-profile run (sim-data0) is not in {tmp_path}"
        in capsys.readouterr().out
    )


def test_student_colab_links():
    assert notebooks.colab_url("10_exercises.ipynb", folder=book.STUDENTS_FOLDER) == (
        "https://colab.research.google.com/github/etecrm-book/etecrm/blob/main/students/10_exercises.ipynb"
    )


def test_callout_and_untrained_names():
    from etecrm_lib.evaluation import EncodingResult

    box = book.callout(
        "Weights: untrained.\n\nSecond <paragraph>.", title="Untrained features", kind="warning"
    )
    page = box._repr_html_()
    assert 'class="admonition warning"' in page and "<p>Second &lt;paragraph&gt;.</p>" in page
    assert repr(box).startswith("UNTRAINED FEATURES: Weights")
    with pytest.raises(ValueError, match="kind"):
        book.callout("x", kind="shout")
    untrained = EncodingResult(
        "alexnet_ridge", "V1", "sim", 1, [0.1], info={"weights": "untrained(seed=0)"}
    )
    pretrained = EncodingResult(
        "alexnet_ridge", "V1", "sim", 1, [0.1], info={"weights": "IMAGENET1K_V1"}
    )
    gabor = EncodingResult("gwp_ridge", "V1", "sim", 1, [0.1])
    book.mark_untrained([untrained, pretrained, gabor])
    book.mark_untrained([untrained])  # twice: still one suffix
    assert [r.model for r in (untrained, pretrained, gabor)] == [
        "alexnet_ridge_untrained",
        "alexnet_ridge",
        "gwp_ridge",
    ]


def test_importing_the_library_changes_nothing_in_the_book_build():
    """Importing ``etecrm_lib.book`` (even in a kernel of the book build) patches nothing;
    ``notebook_defaults()``, which every parameters cell calls, does."""
    code = (
        "import tqdm.auto, etecrm_lib.book as b\n"
        "before = tqdm.auto.tqdm\n"
        "b.notebook_defaults()\n"
        "print(before.__module__, tqdm.auto.tqdm.__name__)"
    )
    env = dict(os.environ, ETECRM_BOOK_BUILD="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tqdm.asyncio", "FinishedBar"]
