"""Tables over model seeds (rows and their formatting), and :func:`load_run`, the one call a chapter
needs to read a run. Figure files are :mod:`etecrm_lib.figures`; the control cortices' table is
:mod:`etecrm_lib.controls`; every statistic is computed in :mod:`etecrm_lib.evaluation`.

The seed table has one row per (dataset, data seed, profile, subject, ROI, model): the mean and the
standard deviation (ddof=1; blank for one seed) over model seeds of each ROI statistic
(:meth:`evaluation.EncodingResult.summary`), ``n_seeds`` and the seed set; then one ``ensemble`` row
per model that ran with two or more seeds: its predictions averaged over the seeds, then scored.

The top-300 statistic of these tables (:data:`TOP`, ``top300_val_mean_r``) chooses its voxels
without test data: the mean test r of the 300 voxels with the highest validation r
(:func:`top_n_validation`; ``top_selection`` says how they were chosen). Beside median r and the
top-300 statistic stands their no-information floor (``median_r_floor``,
``top300_val_mean_r_floor``: the 95th percentile for predictions without information,
:func:`floors`).

    run = load_run("data/results", dataset="sim", profile="full", subject=1, simulation_seed=0)
    seed_table(run.rows)                 # a pandas DataFrame: "0.571 ± 0.012" per cell
    seed_table(run.rows).to_html()       # as the book renders it
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .comparisons import load_comparisons
from .evaluation import TOP_N, Comparison, summary_table, verdict
from .referee import floor_from_sizes, top_n_by_validation
from .results import (
    MODEL_KEY_FIELDS,
    collect_results,
    group_by_model,
    mean_val_r,
    model_key,
    result_key,
)
from .storage import atomic_write, jsonable, seeds_label
from .vocabulary import UNSET, renamed

TEST_TOP = f"top{TOP_N}_mean_r"
"""``EncodingResult.summary``'s top-N statistic, its voxels chosen by test r: not in the tables."""
TOP = f"top{TOP_N}_val_mean_r"
"""The tables' top-N statistic: mean test r of the N voxels with the highest validation r."""
FLOOR_COLUMNS = {"median_r": "median_r_floor", TOP: f"{TOP}_floor"}
STAT_COLUMNS = ["median_r", TOP, "mean_r", "n_significant", "frac_ceiling", "frac_oracle_ceiling"]
COLUMN_LABELS = {
    TOP: f"top-{TOP_N} mean r (voxels chosen by validation r)",
    "median_r_floor": "median r floor (p95, no information)",
    f"{TOP}_floor": f"top-{TOP_N} floor (p95, no information)",
}
"""Headers of table.md and titles of the figures for the columns whose code name is not enough."""
BY_VALIDATION = "validation r"
BY_SEEDS_VALIDATION = "mean validation r of its seeds"
NO_VALIDATION = "none: no validation r stored"
KEY_COLUMNS = [*MODEL_KEY_FIELDS, "kind", "n_seeds", "seeds"]
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
    "median_r_floor",
    "mean_r",
    TOP,
    f"{TOP}_floor",
    "top_selection",
    "n_significant",
    "frac_ceiling",
    "frac_oracle_ceiling",
    "median_ceiling",
    "wall_time_s",
    "device",
]


# --------------------------------------------------------------------------- rows
def top_n_validation(res, seeds=()) -> tuple:
    """The tables' top-N statistic of one result and how its voxels were chosen: ``(float, str)``.

    The mean test r of the ``TOP_N`` voxels (all, if fewer) with the highest validation r
    (``res.info["val_r"]``, ``(V,)``, measured on data carved from the train split;
    :func:`referee.top_n_by_validation`). A seed ensemble stores no validation r: give its
    ``seeds`` (the per-seed results it averaged) and their mean validation r chooses. Without a
    finite validation r of the right shape: ``(nan, NO_VALIDATION)``, never the test r.
    """
    val, how = res.info.get("val_r"), BY_VALIDATION
    if val is None:
        val, how = mean_val_r(seeds), BY_SEEDS_VALIDATION
    if val is None or np.shape(val) != np.shape(res.test_r) or not np.all(np.isfinite(val)):
        return float("nan"), NO_VALIDATION
    return top_n_by_validation(res.test_r, val, TOP_N), how


@functools.lru_cache(maxsize=None)
def _floors(n_test, n_voxels: int) -> tuple:
    if not n_test:
        return None, None
    median = floor_from_sizes(n_test, n_voxels, "median_r")["p95"]
    top = floor_from_sizes(n_test, n_voxels, "top_n_mean_r", TOP_N, select="validation")["p95"]
    return median, top


def floors(n_test, n_voxels: int) -> dict:
    """The no-information floors of an ROI of ``n_voxels`` scored on ``n_test`` test images:
    ``{"median_r_floor", "top300_val_mean_r_floor"}``, the 95th percentile of median r and of the
    top-N statistic (voxels chosen independently of the test r) for predictions without information
    (:func:`referee.floor_from_sizes`: it needs only the two sizes). None without ``n_test``.

    It is the floor of one model's value (one seed, or a seed ensemble: averaged noise is noise);
    the mean over seeds of models without information spreads less, so for seed rows it is
    conservative (a mean above it is above the mean's own floor too)."""
    return dict(zip(FLOOR_COLUMNS.values(), _floors(n_test, int(n_voxels))))


def _n_test(res):
    """The number of test images a result was scored on (``info["n_test_images"]``, written by
    ``evaluation.score``; else the stored predictions' rows); None if neither is stored."""
    if res.info.get("n_test_images"):
        return int(res.info["n_test_images"])
    return None if res.predictions is None else int(np.shape(res.predictions)[0])


def table_rows(results) -> list:
    """One flat row per result (one model seed): :meth:`EncodingResult.summary` with the top-N
    statistic chosen by validation r (:func:`top_n_validation`, not the summary's by test r), the
    floors (:func:`floors`), data seed, profile, seed, wall time, device."""
    rows = []
    for res, summary in zip(results, summary_table(results)):
        summary.pop(TEST_TOP, None)
        summary[TOP], summary["top_selection"] = top_n_validation(res)
        summary.update(floors(_n_test(res), res.n_voxels))
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


def _key_row(key: tuple, kind: str, seeds: list) -> dict:
    """The first columns of a seed-table row (:data:`KEY_COLUMNS`) for a :func:`model_key`."""
    return dict(zip(KEY_COLUMNS, (*key, kind, len(seeds), seeds_label(seeds))))


def seed_rows(results, ensembles=()) -> list:
    """The seed table (see the module docstring) as a list of dicts; JSON-able."""
    rows, groups = [], group_by_model(results)
    for key, runs in groups.items():
        summaries = table_rows(runs)
        row = _key_row(key, "seeds", [r.info.get("seed") or 0 for r in runs])
        row["n_voxels"] = runs[0].n_voxels
        for column in STAT_COLUMNS:
            row[column], row[f"{column}_sd"] = _mean_sd(s.get(column) for s in summaries)
        row.update(floors(_n_test(runs[0]), runs[0].n_voxels))
        row["top_selection"] = ", ".join(dict.fromkeys(s["top_selection"] for s in summaries))
        row["median_ceiling"] = summaries[0].get("median_ceiling")
        row["wall_time_s"] = _mean_sd(s.get("wall_time_s") for s in summaries)[0]
        row["device"] = ", ".join(sorted({str(s["device"]) for s in summaries if s.get("device")}))
        row["deterministic"] = bool(runs[0].info.get("deterministic"))
        row["collapsed"] = sum(r.collapsed for r in runs)  # seeds with dead read-outs (evaluation)
        rows.append(row)
    for res in sorted(ensembles, key=result_key):
        summary = table_rows([res])[0]
        seeds = res.info.get("seeds") or []
        members = [r for r in groups.get(model_key(res), []) if r.info.get("seed") in seeds]
        members = members if len(members) == len(seeds) else []  # all the seeds it averaged
        summary[TOP], summary["top_selection"] = top_n_validation(res, members)
        row = _key_row(model_key(res), "ensemble", seeds)
        row.update(
            {
                "n_voxels": res.n_voxels,
                **{c: summary.get(c) for c in STAT_COLUMNS},
                **{f"{c}_sd": None for c in STAT_COLUMNS},
                **{c: summary.get(c) for c in (*FLOOR_COLUMNS.values(), "top_selection")},
                "median_ceiling": summary.get("median_ceiling"),
            }
        )
        rows.append(row)
    order = {key: i for i, key in enumerate(_row_key(r) for r in rows)}
    return jsonable(sorted(rows, key=lambda r: (section(r), order[_row_key(r)])))


def section(row) -> tuple:
    """The section a row belongs to: ``(dataset, data seed (-1 for None), profile, subject)``."""
    return (
        row["dataset"],
        -1 if row["data_seed"] is None else row["data_seed"],
        str(row["profile"]),
        row["subject"],
    )


def _row_key(row) -> tuple:
    return (*section(row), row["roi"], row["model"], row["kind"], row["seeds"])


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


def section_title(key) -> str:
    """A section's heading: "sim (simulation seed 0), subject 1, profile full"."""
    dataset, data_seed, profile, subject = key
    data = dataset if data_seed in (None, -1) else f"{dataset} (simulation seed {data_seed})"
    return f"{data}, subject {subject}, profile {profile}"


HOW_TO_READ = (
    f"**How to read this table.** The top-{TOP_N} column is the mean test r of the {TOP_N} voxels "
    f"(all, if the ROI has fewer) with the highest **validation r** (measured on data carved from "
    "the train split; a seed ensemble's voxels are chosen by the mean validation r of its seeds): "
    "the test split chooses nothing. Each floor column is the 95th percentile of that statistic "
    "for predictions without information (Gaussian noise; it depends only on the ROI's numbers of "
    "test images and voxels): a model with no information exceeds it 5% of the time, so a value "
    "at or below its floor shows no information about the responses. The floor assumes errors "
    "independent from voxel to voxel; a real model's errors are shared across the voxels of an "
    "ROI, so a value just above the floor is not yet evidence of learning: read the s.d. over "
    "seeds and the bootstrap intervals of the comparisons."
)


def _top_cell(row) -> str | None:
    if row.get("top_selection") == NO_VALIDATION:
        return "n/a (no validation r stored)"
    return None


def markdown_table(rows) -> str:
    """Markdown: :data:`HOW_TO_READ`, then one section per (dataset, data seed, profile, subject):
    seed rows (mean ± s.d.) or per-seed rows. Column headers: :data:`COLUMN_LABELS`."""
    seed_table_rows = bool(rows) and "kind" in rows[0]
    shown = (
        ["roi", "model", "seeds", "n_voxels", "median_r", "median_r_floor", TOP, f"{TOP}_floor"]
        + ["mean_r", "n_significant", "frac_ceiling", "frac_oracle_ceiling", "wall_time_s"]
        if seed_table_rows
        else [
            "roi",
            "model",
            "seed",
            "n_voxels",
            "median_r",
            "median_r_floor",
            "mean_r",
            TOP,
            f"{TOP}_floor",
            "n_significant",
            "frac_ceiling",
            "frac_oracle_ceiling",
            "wall_time_s",
        ]
    )
    lines, sections = [HOW_TO_READ, ""], {}
    for row in rows:
        sections.setdefault(section(row), []).append(row)
    for key, group in sections.items():
        lines += [
            f"### {section_title(key)}",
            "",
            "| " + " | ".join(COLUMN_LABELS.get(c, c) for c in shown) + " |",
            "|" + "---|" * len(shown),
        ]
        for row in group:
            special = {
                "model": _model_label(row),
                "seeds": _seeds_cell(row) if "seeds" in row else None,
                TOP: _top_cell(row),
            }
            cells = [
                special.get(col) or _fmt(row.get(col), row.get(f"{col}_sd"), _DIGITS.get(col, 3))
                for col in shown
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


TABLE_COLUMNS = ("median_r", "median_r_floor", TOP, f"{TOP}_floor")
"""What :func:`seed_table` and :meth:`Run.table` show by default: each statistic, then its floor."""


def seed_table(rows, columns=TABLE_COLUMNS, numeric: bool = False):
    """The seed table as a pandas DataFrame indexed by (subject, ROI, model), for
    ``DataFrame.to_html``.

    rows : :func:`seed_rows` (e.g. ``load_run(...).rows``). columns : statistics to show (default
    :data:`TABLE_COLUMNS`: median r and the top-300 statistic by validation r, each beside its
    no-information floor).
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
                cell = _top_cell(row) if col == TOP else None
                record[col] = cell or _fmt(row.get(col), row.get(f"{col}_sd"), _DIGITS.get(col, 3))
        if any(r.get("collapsed") for r in rows):  # marked, and kept in the means (see evaluation)
            dead = row.get("collapsed")
            record["collapsed"] = f"{dead} of {row['n_seeds']} seeds" if dead else ""
        records.append(record)
    return pd.DataFrame.from_records(records).set_index(["subject", "roi", "model"])


def comparison_table(records, kind: str | None = None, statistic: str | None = None):
    """Comparison records (``load_run(...).comparisons``) as a pandas DataFrame, one row per
    comparison, keeping only ``kind`` ("baseline", "ablation") and ``statistic`` if given.

    Besides the record's fields: ``top_n_selection`` (for the top-N statistic, how its voxels were
    chosen: the record's own field; a record without it, written before the selection was
    recorded, chose each model's best voxels by test r and reads ``"test r"``), ``interval`` (the
    95% interval as text), ``verdict`` (A than B: ``evaluation.verdict``'s words) and, for baseline
    comparisons, ``baseline (val. median r)`` and ``next best`` (the candidates' validation scores
    that chose the baseline).
    """
    import pandas as pd

    keep = [
        "subject",
        "roi",
        "kind",
        "model_a",
        "model_b",
        "statistic",
        "top_n_selection",
        "difference",
        "ci_low",
        "ci_high",
        "p_a_not_better",
        "n_seeds_a",
        "n_seeds_b",
        "n_bootstrap",
    ]
    rows = []
    for r in records:
        if kind not in (None, r.get("kind")) or statistic not in (None, r.get("statistic")):
            continue
        row = {k: r.get(k) for k in keep}
        if r.get("statistic") == "top_n_mean_r":
            row["top_n_selection"] = r.get("top_n_selection") or "test r"
        row["interval"] = f"{r['ci_low']:+.3f} to {r['ci_high']:+.3f}"
        row["verdict"] = verdict(Comparison.from_dict(r), short=True)
        val = r.get("baseline_val_median_r")
        if val:
            runner_up = max((m for m in val if m != r["model_b"]), key=val.get, default=None)
            row["baseline (val. median r)"] = f"{r['model_b']} ({val[r['model_b']]:.3f})"
            row["next best"] = f"{runner_up} ({val[runner_up]:.3f})" if runner_up else ""
        rows.append(row)
    return pd.DataFrame.from_records(rows)


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

    def table(self, columns=TABLE_COLUMNS, numeric: bool = False):
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
    out,
    dataset: str = "sim",
    profile: str = "full",
    subject: int = 1,
    simulation_seed: int | None = 0,
    data_seed=UNSET,
) -> Run:
    """Read one run from a ``etecrm reproduce`` output folder (no data, no training).

    ``simulation_seed``: the simulated cortex (None for real data; ``data_seed``: its old name).
    """
    wanted = (dataset, profile, subject, renamed(simulation_seed, data_seed, "data_seed"))

    def mine(res):
        return (res.dataset, res.info.get("profile"), res.subject, res.info.get("data_seed"))

    results = [r for r in collect_results(out) if mine(r) == wanted]
    ensembles = [r for r in collect_results(out, "ensembles") if mine(r) == wanted]
    comparisons = [
        c
        for c in load_comparisons(out)
        if (c.get("dataset"), c.get("profile"), c.get("subject"), c.get("data_seed")) == wanted
    ]
    if not results:
        raise FileNotFoundError(
            f"no results of {dataset} (simulation seed {wanted[-1]}), profile {profile}, subject "
            f"{subject} under {Path(out) / 'results'}; run `etecrm reproduce --out {out}` with "
            "those settings"
        )
    return Run(results, ensembles, comparisons, seed_rows(results, ensembles))
