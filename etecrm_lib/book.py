"""What the book's chapters call while they run: which profile, Colab set-up, tables, notes,
committed results.

Every chapter notebook opens with the same three cells (written by :mod:`etecrm_lib.notebooks`):
a title with an "Open in Colab" badge; a set-up cell that on Google Colab installs this library and
calls :func:`check_runtime`; a parameters cell (tagged ``parameters``): ``DATASET``, ``PROFILE``
(:func:`default_profile`) and ``SEED``.

The book build's Sphinx extension (plotly figures in the pages, no CDN downloads, and
``ETECRM_BOOK_BUILD=1`` for the notebook kernels) is not part of the library: it is
``book/_ext/etecrm_build.py``, named in ``_config.yml``.

What the pages show (see :func:`notebook_defaults`, which every parameters cell calls; importing
this module changes nothing):

- tables: :func:`show_table` (real HTML tables, floats rounded, plain column labels, a caption);
  verdict tables and live demonstrations are in :mod:`etecrm_lib.verdicts`;
- progress bars: live bars in Jupyter and Colab; in the book build one plain line per finished bar
  (no half-filled red widgets in the static page);
- numbers: numpy scalars print as plain numbers (``0.5``, not ``np.float64(0.5)``);
- committed full-profile results: :func:`committed_results` and :func:`committed_run` read
  :func:`results_folder` (``$ETECRM_RESULTS``, the checkout, or the clone the library was installed
  from; the default simulated subject: data seed 0), or say where they looked.
"""

from __future__ import annotations

import html
import io
import numbers
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .device import describe_device
from .estimates import estimate_sentence
from .gpu import precision_for
from .profiles import PROFILES
from .results import collect_results, dataset_tag
from .tables import load_run
from .vocabulary import UNSET, renamed

COLAB_URL = "https://colab.research.google.com"
BOOK_FOLDER = "book"  # chapters live in book/ under the repository root
STUDENTS_FOLDER = "students"  # the student edition: exercise notebooks without solutions
PROFILE_ENV = "ETECRM_PROFILE"
BUILD_ENV = (
    "ETECRM_BOOK_BUILD"  # set (to "1") by the Sphinx extension for the kernels of the book build
)
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_COLAB_BADGE = (
    "_static/colab-badge.svg"  # book/vendor/colab-badge.svg, shown in the built pages
)


# --------------------------------------------------------------------------- profile and runtime
def default_profile() -> str:
    """The profile a chapter runs by default: ``$ETECRM_PROFILE`` if set, else "full" on a GPU,
    "quick" on CPU.

    "quick" is small (64x64 images, a few hundred training images) and runs in a minute or two on
    a laptop CPU; "full" is the vim-1-sized experiment and wants a GPU.
    """
    chosen = os.environ.get(PROFILE_ENV, "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(
                f"{PROFILE_ENV}={chosen!r} is not a profile; use one of {PROFILES} (or unset it)"
            )
        return chosen
    return "full" if torch.cuda.is_available() else "quick"


def on_colab() -> bool:
    """True inside a Google Colab notebook."""
    return "google.colab" in sys.modules


def check_runtime(chapter: str | None = None) -> None:
    """Say which device, precision and profile the chapter uses and, on a GPU, how long it takes.

    ``chapter`` (e.g. "08_comparison"): on a GPU, the estimate is measured there and then
    (``estimates.estimate_sentence``: two epochs of ETECRM training of the chapter's shape, timed
    and extrapolated to its trainings). Without a GPU on Colab, a warning says how to get one.
    The profile is :func:`default_profile`: "full" on a GPU; ``PROFILE = "quick"`` in the parameters
    cell (or ``ETECRM_PROFILE=quick`` before starting the notebook) gives a short run. Prints,
    returns nothing: the set-up cell that ends with this call shows no stray value (the device is
    in the first printed line, e.g. 'device: Tesla T4' or 'device: cpu (2 threads)').
    """
    gpu = torch.cuda.is_available()
    if not gpu and on_colab():
        warnings.warn(
            "No GPU found: in Colab choose Runtime > Change runtime type > T4 GPU, then run the "
            "notebook again.",
            stacklevel=2,
        )
    device, profile = describe_device(), default_profile()
    precision = precision_for("auto", "cuda" if gpu else "cpu")
    print(f"etecrm_lib {__version__}, device: {device}, precision: {precision}, profile: {profile}")
    if gpu and chapter:
        print(estimate_sentence(chapter, device))
    elif not gpu:
        print("No GPU: the chapter runs its small 'quick' profile (minutes on a CPU).")
    if profile == "full":
        print('For a short run, set PROFILE = "quick" in the parameters cell below.')


# --------------------------------------------------------------------------- what the pages show
def in_book_build() -> bool:
    """True inside a notebook kernel started by the book build (the Sphinx extension sets
    ``ETECRM_BOOK_BUILD``)."""
    return os.environ.get(BUILD_ENV, "") not in ("", "0")


def _format_cell(value, digits: int) -> str:
    """One table cell as text: floats rounded to ``digits`` decimals, numpy scalars as plain
    numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if value != value:  # NaN
            return "–"
        if value.is_integer() and abs(value) >= 1000:  # e.g. a ridge alpha: 100,000, not 100000.000
            return f"{value:,.0f}" if abs(value) < 10**9 else f"{value:.3g}"
        return f"{value:.{digits}f}" if abs(value) < 10**6 else f"{value:.3g}"
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return _format_cell(value.item(), digits)
    return str(value)


class Table:
    """A table that shows as a real HTML table in Jupyter, Colab and the built book (see
    :func:`show_table`).

    ``columns`` (list of str), ``rows`` (list of lists of cell text), ``caption`` (str or None).
    Printing it gives an aligned plain-text version.
    """

    def __init__(self, columns: list, rows: list, caption: str | None = None):
        self.columns, self.rows, self.caption = list(columns), [list(r) for r in rows], caption

    def _repr_html_(self) -> str:
        def cells(values, tag):
            out = []
            for v in values:
                numeric = re.fullmatch(r"[-+−]?[\d.,]+(e[-+]?\d+)?%?|–", v) is not None
                align = ' style="text-align: right"' if numeric and tag == "td" else ""
                out.append(f"<{tag}{align}>{html.escape(v)}</{tag}>")
            return "".join(out)

        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        head = f"<thead><tr>{cells(self.columns, 'th')}</tr></thead>"
        body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in self.rows)
        return f'<table class="etecrm-table">{caption}{head}<tbody>{body}</tbody></table>'

    def __repr__(self) -> str:
        widths = [
            max([len(c)] + [len(r[i]) for r in self.rows]) for i, c in enumerate(self.columns)
        ]
        lines = [self.caption] if self.caption else []
        lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths)))
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in self.rows]
        return "\n".join(lines)


PLAIN_LABELS = {
    "roi": "ROI",
    "model": "model",
    "n_voxels": "voxels",
    "median_r": "median r",
    "mean_r": "mean r",
    "top300_mean_r": "mean r, top 300 voxels by test r",
    "top300_val_mean_r": "mean r, top 300 voxels by validation r",
    "median_r_floor": "median r, no-information floor (p95)",
    "top300_val_mean_r_floor": "top-300 mean r, no-information floor (p95)",
    "top_selection": "top-300 voxels chosen by",
    "top_n_selection": "top-N voxels chosen by",
    "top_n_mean_r": "mean r, top-N voxels",
    "frac_ceiling": "fraction of ceiling",
    "frac_oracle_ceiling": "fraction of oracle ceiling",
    "median_ceiling": "median noise ceiling",
    "n_significant": "significant voxels",
    "n_seeds": "seeds",
    "wall_time_s": "wall time (s)",
    "train_seconds": "training time (s)",
    "best_epoch": "best epoch",
    "val_r": "validation r",
    "test_r": "test r",
    "ci_low": "95 % interval, low",
    "ci_high": "95 % interval, high",
    "difference": "difference",
    "collapsed": "collapsed seeds",
}
"""How :func:`show_table` labels the columns it knows (code names such as ``frac_ceiling`` become
words); other names, model names among them, are shown as they are."""


def plain_label(name) -> str:
    """A column label a reader understands: ``"median_r"`` -> ``"median r"`` (PLAIN_LABELS)."""
    name = str(name)
    if name in PLAIN_LABELS:
        return PLAIN_LABELS[name]
    if name.endswith("_sd") and name[:-3] in PLAIN_LABELS:
        return f"{PLAIN_LABELS[name[:-3]]}, s.d."
    return name  # model names (gwp_ridge, etecrm_mse) stay as the figures' legends write them


def show_table(
    data, caption: str | None = None, columns: list | None = None, digits: int = 3
) -> Table:
    """A table for a chapter page: leave the returned :class:`Table` as the last expression of a
    cell.

    ``data`` is a pandas DataFrame, a list of dicts (one per row; e.g.
    ``evaluation.summary_table``), a dict of equal-length columns, or a list of lists (then give
    ``columns``). ``columns`` also picks and orders the columns of dict rows. Floats are rounded
    to ``digits`` decimals (large whole numbers with thousands separators); ``None`` is left blank
    and NaN shows as "–". Column labels are plain words (:func:`plain_label`). The page shows a
    real HTML table (never Markdown).
    """
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        data = data.to_dict("records")
    if isinstance(data, dict):
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"show_table: the columns have different lengths {lengths}")
        keys = list(data)
        data = [dict(zip(keys, values)) for values in zip(*data.values())]
    data = list(data)
    if data and isinstance(data[0], dict):
        if columns is None:
            columns = list(dict.fromkeys(k for row in data for k in row))
        rows = [[row.get(c) for c in columns] for row in data]
    else:
        if columns is None and data:
            raise ValueError("show_table: rows given as lists need `columns=[...]` (their names)")
        rows = [list(r) for r in data]
        bad = [len(r) for r in rows if len(r) != len(columns)]
        if bad:
            raise ValueError(f"show_table: {len(columns)} columns but a row has {bad[0]} values")
    columns = [plain_label(c) for c in (columns or [])]
    return Table(columns, [[_format_cell(v, digits) for v in r] for r in rows], caption)


class Callout:
    """A boxed note in a page (see :func:`callout`): a Sphinx admonition in the book, a bordered box
    elsewhere."""

    def __init__(self, text: str, title: str, kind: str):
        self.text, self.title, self.kind = text, title, kind

    def _repr_html_(self) -> str:
        colour = {"note": "#0969da", "warning": "#bf8700", "important": "#cf222e"}.get(
            self.kind, "#0969da"
        )
        paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in self.text.split("\n\n"))
        return (
            f'<div class="admonition {self.kind}" style="border-left: 4px solid {colour}; '
            'padding: 0.2em 0.8em">'
            f'<p class="admonition-title"><strong>{html.escape(self.title)}</strong></p>'
            f"{paragraphs}</div>"
        )

    def __repr__(self) -> str:
        return f"{self.title.upper()}: {self.text}"


def callout(text: str, title: str = "Note", kind: str = "note") -> Callout:
    """A visible note computed by the code (e.g. "these features are UNTRAINED"); ``kind``: note,
    warning, important.

    Paragraphs are separated by a blank line. Leave it as the last expression of a cell, or
    ``display`` it.
    """
    if kind not in ("note", "warning", "important"):
        raise ValueError(f"kind must be 'note', 'warning' or 'important', got {kind!r}")
    return Callout(text, title, kind)


UNTRAINED_SUFFIX = "_untrained"


def mark_untrained(results) -> list:
    """Rename results whose CNN weights were untrained (``info["weights"]`` "untrained(...)"):
    "alexnet_ridge_untrained".

    Every table and figure then says so. Returns the same results (changed in place); names already
    marked are left alone.
    """
    results = list(results)
    for res in results:
        weights = str(res.info.get("weights", ""))
        if weights.startswith("untrained") and not res.model.endswith(UNTRAINED_SUFFIX):
            res.model += UNTRAINED_SUFFIX
    return results


def _finished_bar_class():
    """A tqdm class that draws nothing while running and prints one plain line when it finishes."""
    from tqdm import std

    class FinishedBar(std.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["file"] = io.StringIO()  # tqdm's own drawing goes nowhere
            super().__init__(*args, **kwargs)

        def close(self):
            if getattr(self, "disable", True):
                return
            leave = self.leave if self.leave is not None else self.pos == 0
            if leave:
                info = self.format_dict
                elapsed = self.format_interval(info["elapsed"])
                total = info.get("total")
                done = f"{self.n}/{total}" if total else f"{self.n}"
                unit = "" if info.get("unit", "it") == "it" else f" {info['unit']}"
                if unit and self.n != 1 and not unit.endswith("s"):
                    unit += "s"  # "26/40 epochs", "1/1 model"
                text = f"{self.desc + ': ' if self.desc else ''}{done}{unit} in {elapsed}"
                if info.get("postfix"):
                    text += f" ({info['postfix']})"
                if total and self.n < total:
                    text += f", ended before {total} (e.g. early stopping)"
                print(text, file=sys.stdout, flush=True)
            super().close()

    return FinishedBar


def use_finished_progress_bars() -> None:
    """Progress bars print one plain line when they finish (for the static pages of the book build).

    Replaces ``tqdm.auto.tqdm``; library modules import it when they run, so call this before the
    library starts work (importing ``etecrm_lib.book`` in the parameters cell does, in the build).
    """
    import tqdm.auto
    import tqdm.autonotebook

    bar = _finished_bar_class()
    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = bar
        module.trange = lambda *args, **kwargs: bar(range(*args), **kwargs)


def notebook_defaults() -> None:
    """Make notebook output read well: plain numbers, and in the book build finished-only progress
    lines.

    Every chapter's parameters cell calls it (importing this module changes nothing).
    """
    try:
        np.set_printoptions(legacy="1.25")  # numpy >= 2: np.float64(0.5) prints as 0.5
    except (ValueError, TypeError):  # numpy 1.x prints plain numbers already and has no such option
        pass
    if in_book_build():
        use_finished_progress_bars()


# --------------------------------------------------------------------------- committed results
RESULTS_ENV = "ETECRM_RESULTS"  # a folder of committed results, e.g. <a clone>/data/results


def installed_from() -> Path | None:
    """The local folder pip installed this library from (``pip install <folder>``, as the chapters'
    Colab set-up cell does with its clone of the repository), or None (an editable install, an
    install from a URL or an archive). Read from the ``direct_url.json`` pip records (PEP 610)."""
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    try:
        recorded = json.loads(
            metadata.distribution("etecrm_lib").read_text("direct_url.json") or "{}"
        )
    except (metadata.PackageNotFoundError, ValueError):
        return None
    url = urlparse(recorded.get("url", ""))
    if url.scheme != "file" or "dir_info" not in recorded:
        return None
    return Path(unquote(url.path))


def results_places() -> list:
    """Where committed results are looked for, in order: ``[(what, folder or None), ...]``:
    ``$ETECRM_RESULTS``, the checkout this library runs from, the folder pip installed it from."""
    source = installed_from()
    return [
        (
            f"${RESULTS_ENV}",
            Path(os.environ[RESULTS_ENV]).expanduser() if os.environ.get(RESULTS_ENV) else None,
        ),
        (
            "beside the library (a checkout)",
            Path(__file__).resolve().parents[1] / "data" / "results",
        ),
        (
            "the folder the library was installed from",
            source / "data" / "results" if source else None,
        ),
    ]


def results_generator_version(folder=None) -> int | None:
    """The version of the simulated cortex (``data.simulate.GENERATOR_VERSION``) that made the
    committed results: read from the run's record, ``README.md`` of ``folder`` (default
    :func:`results_folder`; the line "generator version N"), or None if it says none."""
    readme = Path(folder or results_folder()) / "README.md"
    if not readme.exists():
        return None
    found = re.search(r"generator version (\d+)", readme.read_text(encoding="utf-8"))
    return int(found.group(1)) if found else None


def results_folder() -> Path:
    """The folder of the committed full-profile results (``data/results`` of the repository).

    The first of :func:`results_places` that holds a ``results/`` folder: the environment variable
    ``ETECRM_RESULTS``, then the checkout (``pip install -e``), then the clone pip installed the
    library from (the Colab set-up cell). If none does, the checkout's path (absent; then
    :func:`missing_results_note` says where they were looked for). ``ETECRM_RESULTS`` naming no
    folder is an error.
    """
    places = results_places()
    env = places[0][1]
    if env is not None and not env.is_dir():
        raise FileNotFoundError(
            f"{RESULTS_ENV}={env} is not a folder: point it to a results folder (e.g. "
            f"<clone>/data/results) or unset it"
        )
    for _, folder in places:
        if folder is not None and (folder / "results").is_dir():
            return folder
    return places[1][1]


def missing_results_note() -> str:
    """One sentence saying where committed results were looked for and how to get them."""
    looked = "; ".join(f"{what}: {folder or 'not set'}" for what, folder in results_places())
    return (
        f"No committed results found (looked in {looked}). To see them, clone the repository and "
        f"set {RESULTS_ENV}=<clone>/data/results, or read the built book."
    )


def committed_results(
    models=None,
    rois=None,
    dataset: str = "sim",
    subject: int = 1,
    profile: str = "full",
    seed: int | None = 0,
    simulation_seed: int | None = 0,
    data_seed=UNSET,
) -> list:
    """The committed results (``data/results``, written by ``etecrm reproduce``) as EncodingResults.

    Picks one dataset/subject/profile, one simulation seed (the simulated cortex: 0 is the book's
    default subject; None for real data; ``data_seed``: its old name) and one model seed
    (``seed=None``: every seed), optionally some models and ROIs, so that files of other simulated
    cortices never mix in. Degrades gracefully: when the folder is missing (e.g. on Colab, which
    installs the library only) or a file is unreadable, it prints why and returns what it could
    read (possibly ``[]``); a chapter then shows its live run only.
    """
    simulation_seed = renamed(simulation_seed, data_seed, "data_seed")
    folder = results_folder()
    if not (folder / "results").is_dir():
        print(missing_results_note())
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = collect_results(folder)
    for w in caught:
        print(f"note: {w.message}")
    chosen = [
        r
        for r in found
        if r.dataset == dataset
        and r.subject == subject
        and r.info.get("profile") == profile
        and r.info.get("data_seed") == simulation_seed
        and (models is None or r.model in models)
        and (rois is None or r.roi in rois)
        and (seed is None or r.info.get("seed") in (seed, None))
    ]
    if not chosen:
        print(
            f"No committed {profile}-profile results for {dataset_tag(dataset, simulation_seed)} "
            f"subject {subject}"
            f"{' and models ' + ', '.join(models) if models else ''} in {folder}."
        )
    return chosen


def committed_run(
    subject: int = 1,
    dataset: str = "sim",
    profile: str = "full",
    simulation_seed: int | None = 0,
    data_seed=UNSET,
):
    """The committed run of one subject (``tables.load_run`` of ``data/results``: results, seed
    ensembles, comparisons), or None after printing a note that the page shows its live run only.

    The default is what the book's figures are made from: the simulated subject ``subject``, profile
    "full", simulation seed 0 (``etecrm reproduce --profile full --seeds 5 --simulation-seed 0``;
    ``data_seed``: the old name of ``simulation_seed``).
    """
    simulation_seed = renamed(simulation_seed, data_seed, "data_seed")
    folder = results_folder()
    if not (folder / "results").is_dir():
        print(missing_results_note())
        return None
    try:
        return load_run(folder, dataset, profile, subject, simulation_seed)
    except FileNotFoundError:
        print(
            f"Subject {subject}: the committed {profile}-profile run "
            f"({dataset_tag(dataset, simulation_seed)}) is not in "
            f"{folder} (made with `etecrm reproduce --profile {profile} --seeds 5"
            f"{'' if simulation_seed is None else f' --simulation-seed {simulation_seed}'}`); "
            "this page "
            "shows its live run only."
        )
        return None


__all__ = [
    "COLAB_URL",
    "PROFILES",
    "PROFILE_ENV",
    "STUDENTS_FOLDER",
    "default_profile",
    "on_colab",
    "check_runtime",
    "show_table",
    "Table",
    "notebook_defaults",
    "use_finished_progress_bars",
    "in_book_build",
    "committed_results",
    "committed_run",
    "results_folder",
    "missing_results_note",
    "RESULTS_ENV",
    "callout",
    "mark_untrained",
]
