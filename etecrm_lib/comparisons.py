"""Which model is better, over test images and model seeds: the baseline choice and the stored
comparisons.

Two kinds of comparison are made at the end of ``etecrm reproduce`` (where the test data are), per
ROI, for median r and for the mean r of the top-300 voxels, each with
:func:`evaluation.paired_bootstrap` resampling test images and model seeds together:

- ``"baseline"``: ``etecrm`` minus the two-step baseline. The baseline is chosen **without test
  data** (:func:`choose_baseline`): the two-step model with the highest validation median r, where a
  voxel's validation r is measured on data carved from the train split (``info["val_r"]``: the
  ridge's k-fold CV r, the ROI-wise read-out's validation images), averaged over the model's seeds.
  The test split only scores the chosen pair.
- ``"ablation"``: each other ETECRM variant minus ``etecrm`` (the effect of removing one part;
  negative = the part helps).

The top-300 statistic scores both models of a pair on the same voxels, chosen **without test data**
(:func:`top_n_voxels`: the 300 with the highest validation r, averaged over the two models and their
seeds); each record says so in ``top_n_selection``. (Choosing each model's 300 best voxels by test r
would reward noise: see :func:`referee.no_information_floor`.)

Comparisons are stored per (data, profile, subject, pair of models, seed sets), one JSON file each
(:func:`comparisons_path`); saving merges into an existing file by (ROI, statistic), so a rerun with
fewer models, fewer ROIs or another seed set never deletes earlier comparisons.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .evaluation import TOP_N, VERDICTS, Comparison, paired_bootstrap, verdict
from .referee import shared_top_n
from .results import MAX_SEED, dataset_tag, mean_val_r
from .storage import atomic_write, check_name, jsonable, seeds_label

REFERENCE = "etecrm"
STATISTICS = ("median_r", "top_n_mean_r")
BASELINE_RULE = (
    "two-step model with the highest validation median r (per-voxel r on data carved from the "
    "train split: ridge k-fold CV r, or the ROI-wise read-out's validation images), mean over its "
    "seeds; test data not used"
)


@dataclass
class BaselineChoice:
    """The two-step baseline of one ROI. ``val_median_r``: every candidate's score; ``skipped``:
    models without ``val_r``."""

    roi: str
    model: str | None
    val_median_r: dict
    skipped: list


def family(runs) -> str | None:
    """The family a result (or the first of a list of them) records: "etecrm" or "two_step"."""
    first = runs[0] if isinstance(runs, list) else runs
    return first.info.get("family")


def choose_baseline(results, roi: str) -> BaselineChoice:
    """The two-step model of ``roi`` with the highest validation median r; reads only
    ``info["val_r"]``.

    ``results``: any list of EncodingResult (several seeds per model allowed; the family each
    records, ``info["family"]``, says which are two-step models). A model's score is
    the mean over its seeds of the median over voxels of ``val_r``. Ties go to the model listed
    first. The test split is never read: neither ``test_r`` nor the predictions are looked at.
    """
    per_model, skipped = {}, []
    for res in results:
        if res.roi != roi or family(res) != "two_step":
            continue
        val_r = res.info.get("val_r")
        if val_r is None:
            skipped.append(res.model)
            continue
        per_model.setdefault(res.model, []).append(
            float(np.median(np.asarray(val_r, dtype=np.float64)))
        )
    scores = {m: float(np.mean(v)) for m, v in per_model.items()}
    best = max(scores, key=scores.get) if scores else None
    return BaselineChoice(roi, best, scores, sorted(set(skipped) - set(scores)))


TOP_N_SELECTION = (
    "the same voxels for both models: the top 300 by validation r (mean over both models and their "
    "seeds; data carved from the train split), test data not used"
)


def top_n_voxels(runs_a: list, runs_b: list, top_n: int = TOP_N):
    """The voxels both models' top-N statistic is scored on: ``int64 (top_n,)`` indices, or None
    when a result lacks ``info["val_r"]``.

    Each model's validation r (``(V,)`` per result) is averaged over its seeds; the ranking is by
    the mean of the two models (:func:`referee.shared_top_n`), so the selection favours neither and
    never looks at the test split.
    """
    val_a, val_b = mean_val_r(runs_a), mean_val_r(runs_b)
    if val_a is None or val_b is None:
        return None
    return shared_top_n(val_a, val_b, top_n)


def _record(cmp, kind: str, runs_a: list, runs_b: list, context: dict) -> dict:
    seeds = lambda runs: sorted(int(r.info.get("seed") or 0) for r in runs)  # noqa: E731
    return {
        "kind": kind,
        **context,
        "seeds_a": seeds(runs_a),
        "seeds_b": seeds(runs_b),
        **jsonable(vars(cmp)),
    }


def compare_run(
    by_model: dict,
    responses: dict,
    context: dict,
    n_bootstrap: int = 2000,
    bootstrap_seed: int = 0,
    reference: str = REFERENCE,
    log=print,
) -> list:
    """The comparisons of one run, as JSON-able dicts.

    by_model : ``{(roi, model): [EncodingResult per seed]}`` of this run only
    responses : ``{roi: measured test responses (N_test, V)}``
    context : fields every record gets: ``dataset``, ``data_seed``, ``profile``, ``subject``
    """
    records = []
    for roi in dict.fromkeys(r for r, _ in by_model):
        runs = {m: rs for (r, m), rs in by_model.items() if r == roi}
        if reference not in runs:
            continue
        pairs = []
        choice = choose_baseline([res for rs in runs.values() for res in rs], roi)
        if choice.model:
            pairs.append(("baseline", reference, choice.model))
        elif any(family(rs) == "two_step" for rs in runs.values()):
            log(f"{roi}: no two-step model has a validation score (val_r); no baseline comparison")
        pairs += [
            ("ablation", m, reference)
            for m, rs in runs.items()
            if m != reference and family(rs) == "etecrm"
        ]
        for kind, a, b in pairs:
            extra = (
                {"baseline_rule": BASELINE_RULE, "baseline_val_median_r": choice.val_median_r}
                if kind == "baseline"
                else {}
            )
            for statistic in STATISTICS:
                voxels = top_n_voxels(runs[a], runs[b]) if statistic == "top_n_mean_r" else None
                cmp = paired_bootstrap(
                    runs[a],
                    runs[b],
                    responses[roi],
                    statistic=statistic,
                    n_bootstrap=n_bootstrap,
                    seed=bootstrap_seed,
                    voxels=voxels,
                )
                selection = {}
                if statistic == "top_n_mean_r":
                    selection["top_n_selection"] = (
                        TOP_N_SELECTION if voxels is not None else "test r"
                    )
                records.append(_record(cmp, kind, runs[a], runs[b], context) | extra | selection)
    return records


BORDERLINE = 0.001
"""A verdict is *borderline* when an end of its 95 % interval lies within this of zero."""


def borderline(comparison: Comparison, margin: float = BORDERLINE) -> bool:
    """True when an end of the interval lies within ``margin`` of 0: another set of test images or
    seeds could well move it across 0 and change the verdict."""
    return min(abs(comparison.ci_low), abs(comparison.ci_high)) < margin


def verdict_label(comparison: Comparison) -> str:
    """The verdict for a table cell: "better", "worse" or "no reliable difference" (A than B), with
    ", borderline" added when an end of the interval lies within :data:`BORDERLINE` of 0."""
    word = verdict(comparison, short=True)
    return f"{word}, borderline" if borderline(comparison) else word


def verdict_summary(comparison_list, label: str = "") -> list:
    """Plain sentences for many comparisons: one per (A, B, statistic), ROIs grouped by verdict,
    every interval given.

    ``comparison_list``: :class:`evaluation.Comparison` list (e.g. one ablation on every ROI);
    ``label`` starts each sentence (e.g. "subject 1"). Returns a list of str, one line per verdict:
    "subject 1, etecrm_signed - etecrm (median_r):", then "  worse in V1 (-0.270 [-0.365, -0.206]),
    V2 (...);" and "  no reliable difference in V4 (...)".
    """
    groups = {}
    for c in comparison_list:
        groups.setdefault((c.model_a, c.model_b, c.statistic), []).append(c)
    sentences = []
    for (a, b, statistic), group in groups.items():
        parts = []
        for word in VERDICTS:
            chosen = [c for c in group if verdict(c, short=True) == word]
            if chosen:
                rois = ", ".join(
                    f"{c.roi} ({c.difference:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}])"
                    for c in chosen
                )
                parts.append(f"  {word} in {rois}")
        sentences.append(
            f"{label + ', ' if label else ''}{a} - {b} ({statistic}):\n" + ";\n".join(parts)
        )
    return sentences


# --------------------------------------------------------------------------- files
def comparisons_path(out, record: dict) -> Path:
    """The file of one (data, profile, subject, pair of models, seed sets) under
    ``out/comparisons``; its names pass ``storage.check_name``."""
    for key in ("dataset", "profile", "model_a", "model_b"):
        check_name(record[key], key)
    tag = dataset_tag(record["dataset"], record.get("data_seed"))
    name = (
        f"{tag}_{record['profile']}_sub{record['subject']}_{record['model_a']}_seeds{seeds_label(record['seeds_a'])}"
        f"_vs_{record['model_b']}_seeds{seeds_label(record['seeds_b'])}.json"
    )
    return Path(out) / "comparisons" / name


_NUMBER = (int, float)
_RECORD_FIELDS = {
    "dataset": str,
    "profile": str,
    "subject": int,
    "model_a": str,
    "model_b": str,
    "roi": str,
    "statistic": str,
    "difference": _NUMBER,
    "seeds_a": list,
    "seeds_b": list,
}
_FIGURE_FIELDS = {  # a record with a "kind" is drawn: it needs its whole interval
    "kind": str,
    "ci_low": _NUMBER,
    "ci_high": _NUMBER,
    "p_a_not_better": _NUMBER,
    "n_bootstrap": int,
}


def _record_problem(record) -> str | None:
    """What makes a record of a comparisons file unusable (a field missing or of the wrong type,
    an unsafe name, a seed out of range), or None."""
    if not isinstance(record, dict):
        return f"a record is a JSON {type(record).__name__}, not an object"
    for key, kind in (_RECORD_FIELDS | (_FIGURE_FIELDS if "kind" in record else {})).items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"field {key!r} is {value!r}"
    seeds = [*record["seeds_a"], *record["seeds_b"], record.get("data_seed") or 0]
    if not all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds):
        return f"seeds {seeds} are not all integers from 0 to {MAX_SEED}"
    try:
        for key in ("dataset", "profile", "model_a", "model_b", "roi"):
            check_name(record[key], key)
    except ValueError as err:
        return str(err)
    return None


def _read_records(path: Path) -> list:
    """The records of one comparisons file; a damaged or malformed file is skipped with a warning
    (it is written again by the next run that computes its comparisons)."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        warnings.warn(f"skipping unreadable comparisons file {path}: {err}", stacklevel=3)
        return []
    if not isinstance(records, list):
        warnings.warn(f"skipping comparisons file {path}: not a list of comparisons", stacklevel=3)
        return []
    problem = next(filter(None, map(_record_problem, records)), None)
    if problem is not None:
        warnings.warn(f"skipping malformed comparisons file {path}: {problem}", stacklevel=3)
        return []
    return records


def save_comparisons(out, records) -> list:
    """Write ``records`` into their files (:func:`comparisons_path`), merged with what is there.
    Returns the paths.

    A record replaces an earlier one of the same file only if it has the same ROI and statistic
    (the same comparison, recomputed); every other earlier record is kept.
    """
    by_file = {}
    for record in records:
        by_file.setdefault(comparisons_path(out, record), []).append(record)
    for path, new in by_file.items():
        merged = {
            (r.get("roi"), r.get("statistic")): r
            for r in (_read_records(path) if path.exists() else [])
        }
        merged.update({(r["roi"], r["statistic"]): r for r in new})
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(list(merged.values()), indent=1))
    return list(by_file)


def load_comparisons(out) -> list:
    """All comparison records under ``out/comparisons/`` (unreadable files are skipped with a
    warning)."""
    merged = []
    for path in sorted((Path(out) / "comparisons").glob("*.json")):
        merged += _read_records(path)
    return merged
