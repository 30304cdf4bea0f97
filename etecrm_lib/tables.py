"""Tables and figures over model seeds, and :func:`load_run`, the one call a chapter needs to read a
run.

The seed table has one row per (dataset, data seed, profile, subject, ROI, model): the mean and the
standard deviation (ddof=1; blank for one seed) over model seeds of each ROI statistic
(:meth:`evaluation.EncodingResult.summary`), ``n_seeds`` and the seed set; then one ``ensemble`` row
per model that ran with two or more seeds: its predictions averaged over the seeds, then scored.

    run = load_run("data/results", dataset="sim", profile="full", subject=1, data_seed=0)
    seed_table(run.rows)                 # a pandas DataFrame: "0.571 ± 0.012" per cell
    seed_table(run.rows).to_html()       # as the book renders it
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import plots
from .comparisons import load_comparisons
from .evaluation import TOP_N, Comparison, summary_table
from .results import collect_results, group_by_model, jsonable, result_key, seeds_label
from .storage import atomic_write, check_inside

TOP = f"top{TOP_N}_mean_r"
STAT_COLUMNS = ["median_r", TOP, "mean_r", "n_significant", "frac_ceiling", "frac_oracle_ceiling"]
KEY_COLUMNS = [
    "dataset",
    "data_seed",
    "profile",
    "subject",
    "roi",
    "model",
    "kind",
    "n_seeds",
    "seeds",
]
PER_SEED_COLUMNS = [
    "dataset",
    "data_seed",
    "profile",
    "subject",
    "seed",
    "roi",
    "model",
    "n_voxels",
    "median_r",
    "mean_r",
    TOP,
    "n_significant",
    "frac_ceiling",
    "frac_oracle_ceiling",
    "median_ceiling",
    "wall_time_s",
    "device",
]


# --------------------------------------------------------------------------- rows
def table_rows(results) -> list:
    """One flat row per result (one model seed): :meth:`EncodingResult.summary` plus data seed,
    profile, seed, wall time, device."""
    rows = []
    for res, summary in zip(results, summary_table(results)):
        summary.update(
            {
                key: res.info.get(key)
                for key in ("data_seed", "profile", "seed", "wall_time_s", "device")
            }
        )
        ordered = {key: summary.get(key) for key in PER_SEED_COLUMNS}
        ordered.update(summary)
        rows.append(jsonable(ordered))
    return rows


def _mean_sd(values) -> tuple:
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else None


def seed_rows(results, ensembles=()) -> list:
    """The seed table (see the module docstring) as a list of dicts; JSON-able."""
    rows = []
    for (dataset, data_seed, profile, subject, roi, model), runs in group_by_model(results).items():
        summaries = table_rows(runs)
        seeds = [r.info.get("seed") or 0 for r in runs]
        row = dict(
            zip(
                KEY_COLUMNS,
                (
                    dataset,
                    data_seed,
                    profile,
                    subject,
                    roi,
                    model,
                    "seeds",
                    len(runs),
                    seeds_label(seeds),
                ),
            )
        )
        row["n_voxels"] = runs[0].n_voxels
        for column in STAT_COLUMNS:
            row[column], row[f"{column}_sd"] = _mean_sd(s.get(column) for s in summaries)
        row["median_ceiling"] = summaries[0].get("median_ceiling")
        row["wall_time_s"] = _mean_sd(s.get("wall_time_s") for s in summaries)[0]
        row["device"] = ", ".join(sorted({str(s["device"]) for s in summaries if s.get("device")}))
        row["deterministic"] = bool(runs[0].info.get("deterministic"))
        row["collapsed"] = sum(r.collapsed for r in runs)  # seeds with dead read-outs (evaluation)
        rows.append(row)
    for res in sorted(ensembles, key=result_key):
        summary = table_rows([res])[0]
        seeds = res.info.get("seeds") or []
        row = dict(
            zip(
                KEY_COLUMNS,
                (
                    res.dataset,
                    res.info.get("data_seed"),
                    res.info.get("profile"),
                    res.subject,
                    res.roi,
                    res.model,
                    "ensemble",
                    len(seeds),
                    seeds_label(seeds),
                ),
            )
        )
        row.update(
            {
                "n_voxels": res.n_voxels,
                **{c: summary.get(c) for c in STAT_COLUMNS},
                **{f"{c}_sd": None for c in STAT_COLUMNS},
                "median_ceiling": summary.get("median_ceiling"),
            }
        )
        rows.append(row)
    order = {key: i for i, key in enumerate(_row_key(r) for r in rows)}
    return jsonable(sorted(rows, key=lambda r: (_section(r), order[_row_key(r)])))


def _section(row) -> tuple:
    return (
        row["dataset"],
        -1 if row["data_seed"] is None else row["data_seed"],
        str(row["profile"]),
        row["subject"],
    )


def _row_key(row) -> tuple:
    return (*_section(row), row["roi"], row["model"], row["kind"], row["seeds"])


# --------------------------------------------------------------------------- formatting
def _fmt(value, sd=None, digits: int = 3) -> str:
    """``0.571``, ``0.571 ± 0.012``; counts and seconds with ``digits=1``; values >= 100 without
    decimals."""
    if value is None:
        return ""
    if isinstance(value, float):
        digits = digits if abs(value) < 100 else 0
        return f"{value:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")
    return str(value)


_DIGITS = {"n_significant": 1, "wall_time_s": 1}


def _seeds_cell(row) -> str:
    return f"{row['seeds']} (deterministic)" if row.get("deterministic") else str(row["seeds"])


def _model_label(row) -> str:
    return (
        f"{row['model']} (ensemble of seeds {row['seeds']})"
        if row.get("kind") == "ensemble"
        else row["model"]
    )


def _section_title(key) -> str:
    dataset, data_seed, profile, subject = key
    data = dataset if data_seed in (None, -1) else f"{dataset} (simulation seed {data_seed})"
    return f"{data}, subject {subject}, profile {profile}"


def markdown_table(rows) -> str:
    """Markdown, one section per (dataset, data seed, profile, subject): seed rows (mean ± s.d.) or
    per-seed rows."""
    seed_table_rows = bool(rows) and "kind" in rows[0]
    shown = (
        ["roi", "model", "seeds", "n_voxels", *STAT_COLUMNS, "wall_time_s"]
        if seed_table_rows
        else [
            "roi",
            "model",
            "seed",
            "n_voxels",
            "median_r",
            "mean_r",
            TOP,
            "n_significant",
            "frac_ceiling",
            "frac_oracle_ceiling",
            "wall_time_s",
        ]
    )
    lines, sections = [], {}
    for row in rows:
        sections.setdefault(_section(row), []).append(row)
    for key, group in sections.items():
        lines += [
            f"### {_section_title(key)}",
            "",
            "| " + " | ".join(shown) + " |",
            "|" + "---|" * len(shown),
        ]
        for row in group:
            special = {
                "model": _model_label(row),
                "seeds": _seeds_cell(row) if "seeds" in row else None,
            }
            cells = [
                special.get(col) or _fmt(row.get(col), row.get(f"{col}_sd"), _DIGITS.get(col, 3))
                for col in shown
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def seed_table(rows, columns=("median_r", TOP), numeric: bool = False):
    """The seed table as a pandas DataFrame indexed by (subject, ROI, model), for
    ``DataFrame.to_html``.

    rows : :func:`seed_rows` (e.g. ``load_run(...).rows``). columns : statistics to show.
    Cells read ``"0.571 ± 0.012"`` (the mean over seeds ± s.d.); with ``numeric=True`` each
    statistic gets two float columns, ``<stat>`` and ``<stat>_sd``. Ensemble rows are labelled
    ``"<model> (ensemble of seeds 0-4)"``. If any row has collapsed seeds
    (:attr:`evaluation.EncodingResult.collapsed`), a ``collapsed`` column says "3 of 5 seeds".
    """
    import pandas as pd

    records = []
    for row in rows:
        record = {
            "subject": row["subject"],
            "roi": row["roi"],
            "model": _model_label(row),
            "n_seeds": row["n_seeds"],
            "seeds": _seeds_cell(row),
        }
        for col in columns:
            if numeric:
                record[col], record[f"{col}_sd"] = row.get(col), row.get(f"{col}_sd")
            else:
                record[col] = _fmt(row.get(col), row.get(f"{col}_sd"), _DIGITS.get(col, 3))
        if any(r.get("collapsed") for r in rows):  # marked, and kept in the means (see evaluation)
            dead = row.get("collapsed")
            record["collapsed"] = f"{dead} of {row['n_seeds']} seeds" if dead else ""
        records.append(record)
    return pd.DataFrame.from_records(records).set_index(["subject", "roi", "model"])


def comparison_table(records):
    """Comparison records (``load_run(...).comparisons``) as a pandas DataFrame, one row per
    comparison."""
    import pandas as pd

    keep = [
        "subject",
        "roi",
        "kind",
        "model_a",
        "model_b",
        "statistic",
        "difference",
        "ci_low",
        "ci_high",
        "p_a_not_better",
        "n_seeds_a",
        "n_seeds_b",
        "n_bootstrap",
    ]
    return pd.DataFrame.from_records([{k: r.get(k) for k in keep} for r in records])


# --------------------------------------------------------------------------- files
def write_tables(results, ensembles, out) -> dict:
    """``table.md/.csv/.json`` (the seed table) and ``table_per_seed.csv/.json`` under ``out``.
    Returns the paths."""
    out = Path(out)
    rows, per_seed = seed_rows(results, ensembles), table_rows(results)
    paths = {
        "md": out / "table.md",
        "csv": out / "table.csv",
        "json": out / "table.json",
        "per_seed_csv": out / "table_per_seed.csv",
        "per_seed_json": out / "table_per_seed.json",
    }
    with atomic_write(paths["md"]) as tmp:
        tmp.write_text(markdown_table(rows))
    for key, table in (("", rows), ("per_seed_", per_seed)):
        with atomic_write(paths[f"{key}csv"]) as tmp:
            tmp.write_text(_csv(table))
        with atomic_write(paths[f"{key}json"]) as tmp:
            tmp.write_text(json.dumps(table, indent=1))
    return paths


def _csv(rows) -> str:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------- what training cost
def training_seconds(results) -> list:
    """What training cost, per model, from the results' wall times (``info["wall_time_s"]``).

    One row per model: ``seconds_per_roi`` (mean over ROIs and seeds), ``seconds_per_subject`` (all
    its ROIs, mean over seeds, with ``seconds_per_subject_sd`` over seeds), ``ms_per_voxel`` (all
    ROIs' time over all their voxels, mean over seeds), ``n_rois``, ``n_seeds`` and ``device`` (all
    devices seen, so a table shows when models ran on different machines). Results without a wall
    time are skipped.
    """
    per_model = {}
    for res in results:
        seconds = res.info.get("wall_time_s")
        if seconds is None:
            continue
        per_model.setdefault(res.model, []).append(res)
    rows = []
    for model, runs in per_model.items():
        seeds = sorted({r.info.get("seed") or 0 for r in runs})
        rois = list(dict.fromkeys(r.roi for r in runs))
        totals, voxels = [], []
        for s in seeds:
            mine = [r for r in runs if (r.info.get("seed") or 0) == s]
            totals.append(sum(float(r.info["wall_time_s"]) for r in mine))
            voxels.append(sum(r.n_voxels for r in mine))
        rows.append(
            {
                "model": model,
                "n_rois": len(rois),
                "n_seeds": len(seeds),
                "seconds_per_roi": float(np.mean([float(r.info["wall_time_s"]) for r in runs])),
                "seconds_per_subject": float(np.mean(totals)),
                "seconds_per_subject_sd": float(np.std(totals, ddof=1))
                if len(totals) > 1
                else None,
                "ms_per_voxel": float(np.mean([1000 * t / v for t, v in zip(totals, voxels)])),
                "device": ", ".join(
                    sorted({str(r.info.get("device")) for r in runs if r.info.get("device")})
                ),
            }
        )
    return rows


# --------------------------------------------------------------------------- reading a run
@dataclass
class Run:
    """What one (dataset, data seed, profile, subject) left in an output folder.

    results : per-seed EncodingResult list; ensembles : seed-ensemble results; comparisons : records
    (dicts, see :mod:`etecrm_lib.comparisons`); rows : :func:`seed_rows` of the two.
    """

    results: list
    ensembles: list
    comparisons: list
    rows: list = field(default_factory=list)

    def table(self, columns=("median_r", TOP), numeric: bool = False):
        """:func:`seed_table` of this run."""
        return seed_table(self.rows, columns, numeric)

    def comparison_objects(self, kind: str | None = None, statistic: str = "median_r") -> list:
        """The comparisons as :class:`evaluation.Comparison` (for ``plots.comparison_bars``),
        filtered."""
        return [
            Comparison.from_dict(c)
            for c in self.comparisons
            if c.get("statistic") == statistic and (kind is None or c.get("kind") == kind)
        ]


def load_run(
    out, dataset: str = "sim", profile: str = "full", subject: int = 1, data_seed: int | None = 0
) -> Run:
    """Read one run from a ``etecrm reproduce`` output folder (no data, no training). ``data_seed``:
    None for real data."""

    def mine(res):
        return (res.dataset, res.info.get("profile"), res.subject, res.info.get("data_seed")) == (
            dataset,
            profile,
            subject,
            data_seed,
        )

    results = [r for r in collect_results(out) if mine(r)]
    ensembles = [r for r in collect_results(out, "ensembles") if mine(r)]
    comparisons = [
        c
        for c in load_comparisons(out)
        if (c.get("dataset"), c.get("profile"), c.get("subject"), c.get("data_seed"))
        == (dataset, profile, subject, data_seed)
    ]
    if not results:
        raise FileNotFoundError(
            f"no results of {dataset} (data seed {data_seed}), profile {profile}, subject "
            f"{subject} "
            f"under {Path(out) / 'results'}; run `etecrm reproduce --out {out}` with those settings"
        )
    return Run(results, ensembles, comparisons, seed_rows(results, ensembles))


# --------------------------------------------------------------------------- control cortices
@dataclass
class ControlTable:
    """One control cortex's table, as ``tools/control_table.py`` writes it
    (``controls_<truth>_<profile>.json``).

    rows : one dict per ROI: ``etecrm_median_r`` (mean over ``model_seeds``),
    ``gwp_ridge_median_r``, ``gwp_minus_etecrm`` with its 95% paired-bootstrap interval
    ``ci_low``/``ci_high`` (test images and ETECRM seeds), ``winner`` ("gwp_ridge", "etecrm" or
    "undecided") and ``expected_winner``.
    """

    ground_truth: str
    profile: str
    subject: int
    model_seeds: list
    rows: list

    def display_rows(self) -> list:
        """The rows as a chapter shows them (:func:`book.show_table`)."""
        return [
            {
                "roi": r["roi"],
                "etecrm": r["etecrm_median_r"],
                "gwp_ridge": r["gwp_ridge_median_r"],
                "gwp_ridge − etecrm": r["gwp_minus_etecrm"],
                "95% interval": f"{r['ci_low']:+.3f} to {r['ci_high']:+.3f}",
                "winner": r["winner"],
                "expected": r["expected_winner"],
            }
            for r in self.rows
        ]

    def caption(self) -> str:
        return (
            f"'{self.ground_truth}' control cortex, {self.profile} profile, subject "
            f"{self.subject}: median r "
            f"(ETECRM: mean over seeds {self.model_seeds}; 95% bootstrap over test images "
            "and seeds)"
        )

    def summary(self) -> str:
        """One sentence: in how many ROIs the expected family wins, and the range of the
        differences."""
        wins = [r["roi"] for r in self.rows if r["winner"] == r["expected_winner"]]
        differences = [r["gwp_minus_etecrm"] for r in self.rows]
        return (
            f"'{self.ground_truth}' control: the expected family "
            f"({self.rows[0]['expected_winner']}) wins in "
            f"{len(wins)} of {len(self.rows)} ROIs ({', '.join(wins) or 'none'}); "
            "gwp_ridge − etecrm ranges "
            f"from {min(differences):+.3f} to {max(differences):+.3f}"
        )


def control_winner(ci_low: float, ci_high: float) -> str:
    """Which family wins a control, from the 95% interval of gwp_ridge − etecrm: the one the
    interval favours, if it excludes 0."""
    return "gwp_ridge" if ci_low > 0 else "etecrm" if ci_high < 0 else "undecided"


def load_control_table(folder, ground_truth: str, profile: str = "full") -> ControlTable | None:
    """Read ``folder/controls_<ground_truth>_<profile>.json``; None if there is none.

    Every row's ``winner`` is checked against its interval (a file that disagrees with itself is
    refused).
    """
    path = Path(folder) / f"controls_{ground_truth}_{profile}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        table = ControlTable(
            data["ground_truth"],
            data["profile"],
            data["subject"],
            data["model_seeds"],
            data["rows"],
        )
        for r in table.rows:
            # (not the difference against the interval: a percentile interval may leave its point
            # estimate out)
            if control_winner(r["ci_low"], r["ci_high"]) != r["winner"]:
                raise ValueError(
                    f"ROI {r['roi']}: winner {r['winner']!r} and interval [{r['ci_low']}, "
                    f"{r['ci_high']}] "
                    f"disagree"
                )
    except (KeyError, TypeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"{path} is not a control table written by tools/control_table.py ({err}); "
            f"write it again with `python tools/control_table.py --ground-truth {ground_truth} "
            f"--profile {profile} --out {Path(folder)}`"
        ) from err
    if (table.ground_truth, table.profile) != (ground_truth, profile) or not table.rows:
        raise ValueError(
            f"{path} holds the {table.profile!r} table of {table.ground_truth!r} with "
            f"{len(table.rows)} rows, not the {profile!r} table of {ground_truth!r}"
        )
    return table


# --------------------------------------------------------------------------- figures
def seed_bars(rows, statistic: str = "median_r"):
    """Bars per ROI, one colour per model: the mean over seeds with ±1 s.d. error bars; ensembles as
    own bars."""
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
    title = "median r" if statistic == "median_r" else statistic.replace("_", " ")
    fig.update_layout(
        barmode="group",
        height=480,
        yaxis_title=title,
        title=f"{title} per ROI on held-out test images: mean over model seeds ± s.d.",
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
        sections.setdefault(_section(row), []).append(row)
    for key, group in sections.items():
        dataset, data_seed, profile, subject = key
        stem = (
            f"{dataset if data_seed == -1 else f'{dataset}-data{data_seed}'}_{profile}_sub{subject}"
        )
        for statistic in ("median_r", TOP):
            fig = seed_bars(group, statistic)
            fig.update_layout(title=f"{_section_title(key)}: {fig.layout.title.text}")
            figures[f"{stem}_{statistic}"] = fig
        for kind in ("baseline", "ablation"):
            mine = [
                Comparison.from_dict(c)
                for c in comparisons
                if c.get("statistic") == "median_r"
                and c.get("kind") == kind
                and _section({**c, "data_seed": c.get("data_seed")}) == key
            ]
            if mine:
                fig = plots.comparison_bars(mine)
                fig.update_layout(title=f"{_section_title(key)}: {fig.layout.title.text}")
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
