"""Verdicts a reader can read: a table of comparisons, and live evidence beside its claim.

- :func:`verdict_table`: one row per comparison (ROI, models, difference, 95 % interval, verdict),
  with enough decimals that no bound prints as 0.000, "borderline" where an end of the interval lies
  within 0.001 of 0 (:func:`comparisons.verdict_label`), and the collapsed seeds counted.
- :func:`crossing_table`: the same for the learning curves of :mod:`data_size`, one row per ROI
  and training-set size.
- :func:`demonstration`: what a chapter's live run showed, checked against what its text says (the
  whole interval on the expected side of 0); the page shows a note, the output carries the numbers
  as metadata for ``tests/test_demonstrations.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .book import Callout, Table, committed_run
from .comparisons import verdict_label, verdict_summary
from .evaluation import STATISTICS, Comparison


def interval_digits(*bounds, least: int = 3, most: int = 6) -> int:
    """Decimals enough that no non-zero bound prints as 0.000: 3, or more for a bound near 0."""
    small = [abs(float(b)) for b in bounds if b and abs(float(b)) < 10.0**-least]
    if not small:
        return least
    return min(most, max(least, int(np.ceil(-np.log10(min(small)))) + 1))


def verdict_table(comparisons, results=None, caption: str | None = None) -> Table:
    """One row per comparison: ROI, models, difference A - B, its 95 % interval, verdict.

    ``comparisons``: :class:`evaluation.Comparison` list. The interval has enough decimals that no
    bound prints as 0.000 (:func:`interval_digits`); the verdict is
    :func:`comparisons.verdict_label` ("better, borderline" when an end of the interval lies within
    0.001 of 0). ``results`` (optional, the per-seed EncodingResults compared): a note column counts
    the collapsed seeds of each side (:attr:`evaluation.EncodingResult.collapsed`).
    """
    comparisons = list(comparisons)
    if not comparisons:
        raise ValueError("verdict_table: no comparisons (pass a list of evaluation.Comparison)")
    names = [STATISTICS.get(c.statistic, c.statistic) for c in comparisons]
    mixed = len(set(names)) > 1  # then each row names its statistic
    rows = []
    for c, name in zip(comparisons, names):
        d = interval_digits(c.ci_low, c.ci_high)
        row = [
            c.roi,
            f"{c.model_a} − {c.model_b}" + (f" ({name})" if mixed else ""),
            f"{c.difference:+.{d}f}",
            f"[{c.ci_low:+.{d}f}, {c.ci_high:+.{d}f}]",
            verdict_label(c),
        ]
        if results is not None:
            row.append(collapse_note(results, (c.model_a, c.model_b), c.roi))
        rows.append(row)
    difference = "difference" if mixed else f"difference in {names[0]}"
    columns = ["ROI", "models (A − B)", difference, "95 % interval", "verdict"]
    if results is not None:
        columns.append("collapsed seeds")
    return Table(columns, rows, caption)


def crossing_table(cross_rows, caption: str | None = None) -> Table:
    """One row per ROI and training-set size of :func:`data_size.crossings`: ROI, training images,
    A - B in median r, its 95 % interval (over test images and model seeds; enough decimals,
    :func:`interval_digits`) and the verdict (:func:`comparisons.verdict_label`)."""
    rows = []
    for row in cross_rows:
        for d in row["differences"]:
            pair = {"roi": row["roi"], "statistic": "median_r", "n_bootstrap": 0}
            # the crossings keep no p-value: the verdict reads only the interval
            as_comparison = Comparison.from_dict(
                {**row, **d, **pair, "p_a_not_better": float("nan")}
            )
            digits = interval_digits(d["ci_low"], d["ci_high"])
            rows.append(
                [
                    row["roi"],
                    f"{d['n_train']:,}",
                    f"{d['difference']:+.{digits}f}",
                    f"[{d['ci_low']:+.{digits}f}, {d['ci_high']:+.{digits}f}]",
                    verdict_label(as_comparison),
                ]
            )
    if not rows:
        raise ValueError("crossing_table: no sizes to show (pass data_size.crossings(...) rows)")
    first = cross_rows[0]
    difference = f"{first['model_a']} − {first['model_b']} (median r)"
    return Table(["ROI", "training images", difference, "95 % interval", "verdict"], rows, caption)


def collapse_note(results, models, roi: str) -> str:
    """``"etecrm: 2 of 5 seeds collapsed"`` for each of ``models`` with collapsed seeds there."""
    notes = []
    for model in dict.fromkeys(models):
        runs = [r for r in results if r.model == model and r.roi == roi]
        dead = sum(r.collapsed for r in runs)
        if dead:
            notes.append(f"{model}: {dead} of {len(runs)} seeds collapsed")
    return "; ".join(notes) or "none"


DEMONSTRATION_KEY = "etecrm_demonstration"  # output metadata read by tests/test_demonstrations.py
EXPECTATIONS = ("positive", "negative")


class Demonstration:
    """What a chapter's live run showed, beside what its text says (see :func:`demonstration`)."""

    def __init__(self, record: dict):
        self.record = record

    @property
    def holds(self) -> bool:
        return bool(self.record["holds"])

    def _text(self) -> str:
        r = self.record
        d = interval_digits(r["low"], r["high"])
        numbers = f"{r['estimate']:+.{d}f} [{r['low']:+.{d}f}, {r['high']:+.{d}f}]"
        side = "above" if r["expect"] == "positive" else "below"
        if self.holds:
            return f"{r['claim']}: {numbers}, the whole 95 % interval {side} 0, as the text says."
        return (
            f"{r['claim']}: {numbers}. The text expects the whole interval {side} 0; this run "
            "did not show it (tests/test_demonstrations.py fails on it)."
        )

    def _repr_mimebundle_(self, include=None, exclude=None):
        kind, title = ("note", "Live demonstration") if self.holds else ("warning", "Not shown")
        box = Callout(self._text(), title, kind)
        data = {"text/html": box._repr_html_(), "text/plain": repr(box)}
        return data, {DEMONSTRATION_KEY: self.record}

    def __repr__(self) -> str:
        return self._text()


def demonstration(
    claim: str, estimate: float, low: float, high: float, expect: str = "positive"
) -> Demonstration:
    """The live run's evidence for ``claim``, checked: leave it as the last expression of a cell.

    ``estimate`` with its 95 % interval ``[low, high]`` (over test images, seeds or examples);
    ``expect``: "positive" (the text says the whole interval lies above 0) or "negative". The page
    shows a note with the numbers (a warning if the run does not show the claim), and the output
    carries them as metadata, so that a test reads what each chapter demonstrated.
    """
    if expect not in EXPECTATIONS:
        raise ValueError(f"expect must be one of {EXPECTATIONS}, got {expect!r}")
    values = [float(v) for v in (estimate, low, high)]
    if not all(np.isfinite(values)) or values[1] > values[2]:
        raise ValueError(f"demonstration needs finite numbers with low <= high, got {values}")
    holds = values[1] > 0 if expect == "positive" else values[2] < 0
    record = dict(zip(("estimate", "low", "high"), values))
    return Demonstration(record | {"claim": str(claim), "expect": expect, "holds": bool(holds)})


@dataclass
class Verdicts:
    """Committed verdicts subject by subject (:func:`committed_verdicts`); prints as its sentences.

    lines : plain sentences with every interval (``comparisons.verdict_summary``), all subjects;
    comparisons : ``{(subject, statistic): [evaluation.Comparison]}`` (for tables and figures);
    runs : ``{subject: tables.Run}`` of each committed run (its results label the figures).
    """

    lines: list
    comparisons: dict
    runs: dict

    def __str__(self) -> str:
        return "\n".join(self.lines)


def committed_verdicts(
    models=None, kind: str = "ablation", statistics=("median_r",), subjects=(1, 2)
) -> Verdicts:
    """The committed verdicts of the simulated subjects, in one call (chapters 4, 6, 7, 8).

    For each subject whose run is committed (``book.committed_run``; a missing one is noted and
    skipped), the stored comparisons of ``kind`` ("ablation": a variant minus etecrm; "baseline":
    etecrm minus the baseline chosen on validation data) whose model A is in ``models`` (None:
    all), for each of ``statistics``, as plain sentences grouped by verdict.
    """
    lines, chosen, runs = [], {}, {}
    for subject in subjects:
        run = committed_run(subject=subject)
        if run is None:
            continue
        runs[subject] = run
        for statistic in statistics:
            found = run.comparison_objects(kind, statistic)
            chosen[subject, statistic] = [c for c in found if models is None or c.model_a in models]
            lines += verdict_summary(chosen[subject, statistic], f"subject {subject}")
    return Verdicts(lines, chosen, runs)
