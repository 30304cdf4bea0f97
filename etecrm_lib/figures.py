"""Figure files of a run: seed bars per ROI and the bootstrap differences, as HTML (and PNG).

:func:`write_figures` is what ``etecrm reproduce`` and ``etecrm table`` call after the tables;
:func:`seed_bars` is the figure a chapter shows of a run's seed table. PNG export needs kaleido and
a Chromium; without them only the HTML files are written, and a note says why.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import plots
from .evaluation import Comparison
from .results import dataset_tag
from .storage import atomic_write, check_inside
from .tables import COLUMN_LABELS, TOP, section, section_title


def seed_bars(rows, statistic: str = "median_r"):
    """Bars per ROI, one colour per model: the mean over seeds with ±1 s.d. error bars; ensembles as
    own bars; the statistic's no-information floor (``<statistic>_floor``, 95th percentile) as a
    black dash per ROI where the rows have one."""
    import plotly.graph_objects as go

    def label(row):
        return row["model"] + (" (seed ensemble)" if row["kind"] == "ensemble" else "")

    fig = go.Figure()
    for name in dict.fromkeys(label(r) for r in rows):
        mine = [r for r in rows if label(r) == name]
        fig.add_trace(
            go.Bar(
                x=[r["roi"] for r in mine],
                y=[r.get(statistic) for r in mine],
                name=name,
                marker_color=plots.model_colour(mine[0]["model"]),
                marker_pattern_shape="/" if mine[0]["kind"] == "ensemble" else "",
                error_y=dict(
                    type="data",
                    array=[r.get(f"{statistic}_sd") or 0 for r in mine],
                    visible=any(r.get(f"{statistic}_sd") for r in mine),
                ),
            )
        )
    floor = {r["roi"]: r[f"{statistic}_floor"] for r in rows if r.get(f"{statistic}_floor")}
    if floor:
        fig.add_trace(
            go.Scatter(
                x=list(floor),
                y=list(floor.values()),
                mode="markers",
                marker=dict(symbol="line-ew", size=40, line=dict(width=2, color="black")),
                name="no-information floor (p95)",
            )
        )
    title = "median r" if statistic == "median_r" else statistic.replace("_", " ")
    title = COLUMN_LABELS.get(statistic, title)
    fig.update_layout(
        barmode="group",
        height=480,
        yaxis_title=title,
        title=f"{title}<br>per ROI on held-out test images: mean over model seeds ± s.d.",
    )
    return fig


def png_failure_note(err: Exception) -> str:
    """What to do when a PNG could not be written: install kaleido, or give it a browser."""
    import importlib.util

    if importlib.util.find_spec("kaleido") is None:
        return (
            "PNG export needs the kaleido package (pip install kaleido, or the library's [book] "
            "extra); the HTML figures were written."
        )
    first_line = str(err).splitlines()[0] if str(err) else ""
    return (
        f"PNG export failed ({type(err).__name__}: {first_line}); the HTML figures were written. "
        "kaleido needs Chrome or Chromium: apt-get install chromium, or set BROWSER_PATH."
    )


def _find_browser() -> None:
    """Point kaleido (plotly's PNG export) at Debian's Chromium if no browser was configured."""
    if not os.environ.get("BROWSER_PATH"):
        for candidate in (
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ):
            if Path(candidate).exists():
                os.environ["BROWSER_PATH"] = candidate
                break


def _figures(rows, comparisons) -> dict:
    figures, sections = {}, {}
    for row in rows:
        sections.setdefault(section(row), []).append(row)
    for key, group in sections.items():
        dataset, data_seed, profile, subject = key
        tag = dataset_tag(dataset, None if data_seed == -1 else data_seed)
        stem = f"{tag}_{profile}_sub{subject}"
        for statistic in ("median_r", TOP):
            fig = seed_bars(group, statistic)
            fig.update_layout(title=f"{section_title(key)}: {fig.layout.title.text}")
            figures[f"{stem}_{statistic}"] = fig
        for kind in ("baseline", "ablation"):
            mine = [
                Comparison.from_dict(c)
                for c in comparisons
                if c.get("statistic") == "median_r"
                and c.get("kind") == kind
                and section({**c, "data_seed": c.get("data_seed")}) == key
            ]
            if mine:
                fig = plots.comparison_bars(mine)
                fig.update_layout(title=f"{section_title(key)}: {fig.layout.title.text}")
                figures[f"{stem}_bootstrap_{kind}"] = fig
    return figures


def write_figures(rows, out, comparisons=()) -> list:
    """HTML figures (and PNG copies when kaleido and Chromium work) under ``out/figures``; returns
    notes.

    Per (dataset, data seed, profile, subject): median r and top-300 mean r per ROI
    (:func:`seed_bars`) and the bootstrap differences of the comparisons
    (``plots.comparison_bars``). Never raises for a missing plotting stack: the tables are the
    results, figures are a convenience.
    """
    try:
        import plotly  # noqa: F401
    except ImportError:
        return [
            "figures skipped: plotly is not installed (pip install plotly kaleido); tables "
            "were written"
        ]
    figdir = Path(out) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    _find_browser()
    notes, png_ok = [], True
    for stem, fig in _figures(rows, comparisons).items():
        check_inside(figdir / f"{stem}.png", figdir)  # names come from files: never outside
        with atomic_write(figdir / f"{stem}.html") as tmp:
            fig.write_html(tmp, include_plotlyjs="cdn")
        notes.append(f"wrote {figdir / (stem + '.html')}")
        if png_ok:
            try:
                with atomic_write(figdir / f"{stem}.png") as tmp:
                    fig.write_image(tmp, format="png", width=1000, height=500)
                notes.append(f"wrote {figdir / (stem + '.png')}")
            except (
                Exception
            ) as err:  # kaleido needs Chrome/Chromium; a missing browser must not end the run
                png_ok = False
                notes.append(png_failure_note(err))
    return notes
