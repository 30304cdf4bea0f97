"""Statistics a referee asks for: voxels chosen without test data, a floor, Holm, undecidable ROIs.

- **Top-N voxels chosen without the test split.** Taking each model's N best voxels *by test r* and
  then averaging their test r rewards noise: a model with no information already scores above 0
  (:func:`no_information_floor` shows how much). :func:`top_n_by_validation` ranks the voxels by
  their validation r (measured on data carved from the train split, ``info["val_r"]``) and reports
  the mean *test* r of those N; :func:`shared_top_n` gives both models of a comparison the same
  voxels (ranked by the mean of their validation r), so the selection favours neither.
- **A no-information floor** beside every summary: the value the statistic takes for predictions
  that carry no information about the responses (Gaussian noise, scored against the measured test
  responses, so the voxels' own correlations are kept). A model at its floor has learned nothing.
  Where the test responses are not at hand (results files), :func:`floor_from_sizes` gives the same
  floor from the numbers of test images and voxels alone.
- **Multiple comparisons.** A verdict per ROI is one test per ROI: across the five ROIs of one
  comparison (a *family*), :func:`holm` adjusts the p-values (Holm 1979: controls the chance of any
  false "better" or "worse" in the family at ``alpha``) and :func:`holm_verdicts` gives the words.
- **Undecidable ROIs.** Where even the oracle of the simulation (the truth read out by ridge,
  :func:`etecrm_lib.data.calibration.oracle_report`) cannot reach the gate, no comparison can be
  decided: the verdict is :data:`UNDECIDABLE`, not "no difference".
"""

from __future__ import annotations

import numpy as np
import torch

from .evaluation import TOP_N, VERDICTS, Comparison, correlation, roi_statistic

UNDECIDABLE = "undecidable on this simulation"
SELECTIONS = ("test", "validation")


def top_n_by_validation(test_r, val_r, top_n: int = TOP_N) -> float:
    """Mean test r of the ``top_n`` voxels with the highest validation r (all if fewer): float.

    ``test_r``, ``val_r``: ``(V,)`` per-voxel r of one model on the test split and on its validation
    split (carved from the train split). Ties in ``val_r`` go to the lower voxel index.
    """
    test_r, val_r = np.asarray(test_r, np.float64), np.asarray(val_r, np.float64)
    if test_r.shape != val_r.shape or test_r.ndim != 1:
        raise ValueError(
            f"test_r {test_r.shape} and val_r {val_r.shape} must be per-voxel vectors of one ROI"
        )
    if not np.all(np.isfinite(val_r)):
        raise ValueError("val_r has NaN or inf: rank the voxels by finite validation r only")
    order = np.argsort(-val_r, kind="stable")[: max(1, min(int(top_n), val_r.size))]
    return float(test_r[order].mean())


def shared_top_n(val_r_a, val_r_b, top_n: int = TOP_N) -> np.ndarray:
    """The voxels both models of a comparison are scored on: the ``top_n`` by the mean of their
    validation r (``(V,)`` each) -> sorted voxel indices ``int64 (min(top_n, V),)``."""
    a, b = np.asarray(val_r_a, np.float64), np.asarray(val_r_b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"val_r of the two models must be (V,) vectors of one ROI: {a.shape}, {b.shape}"
        )
    order = np.argsort(-(a + b) / 2, kind="stable")[: max(1, min(int(top_n), a.size))]
    return np.sort(order)


def _floor_summary(values: np.ndarray) -> dict:
    """``{"mean", "sd", "p95"}`` of a statistic's values over no-information draws."""
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
        "p95": float(np.quantile(values, 0.95)),
    }


def no_information_floor(
    responses,
    statistic: str = "top_n_mean_r",
    top_n: int = TOP_N,
    select: str = "test",
    n_draws: int = 200,
    seed: int = 0,
) -> dict:
    """What ``statistic`` gives for predictions without information: ``{"mean", "sd", "p95"}`` over
    draws.

    ``responses``: measured test responses ``(N_test, V)``. Each draw scores Gaussian-noise
    predictions against them (:func:`evaluation.correlation`) and takes the ROI ``statistic``
    (:func:`evaluation.roi_statistic`). ``select``: for ``"top_n_mean_r"``, ``"test"`` picks the N
    voxels by that same test r (the selection this floor warns about), ``"validation"`` by an
    independent ranking, as :func:`top_n_by_validation` does for a model without information.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    y = torch.as_tensor(np.asarray(responses), dtype=torch.float64)
    if y.ndim != 2 or y.shape[0] < 3:
        raise ValueError(f"responses must be (N_test >= 3, V), got {tuple(y.shape)}")
    gen = torch.Generator().manual_seed(int(seed))
    values = []
    for _ in range(int(n_draws)):
        r = correlation(torch.randn(y.shape, generator=gen, dtype=torch.float64), y)
        if statistic == "top_n_mean_r" and select == "validation":
            chosen = torch.randperm(r.numel(), generator=gen)[: max(1, min(int(top_n), r.numel()))]
            values.append(float(r[chosen].mean()))
        else:
            values.append(float(roi_statistic(r, statistic, top_n)))
    return _floor_summary(np.asarray(values))


def floor_from_sizes(
    n_test: int,
    n_voxels: int,
    statistic: str = "top_n_mean_r",
    top_n: int = TOP_N,
    select: str = "validation",
    n_draws: int = 1000,
    seed: int = 0,
) -> dict:
    """:func:`no_information_floor` without the test responses: ``{"mean", "sd", "p95"}``.

    The floor depends only on the number of test images ``n_test`` and of voxels ``n_voxels``:
    each voxel's r between fresh Gaussian noise and *any* fixed, non-constant response vector
    follows the null distribution of Pearson r over ``n_test`` images, ``(r + 1) / 2 ~
    Beta((n_test - 2) / 2, (n_test - 2) / 2)``, and the voxels' noise is drawn independently, so
    their r are independent whatever the responses and their correlations across voxels. So r is
    drawn from that distribution here (the results files do not store the test responses).
    ``statistic``, ``top_n`` and ``select`` as in :func:`no_information_floor`. ``p95`` is the
    value a model with no information exceeds 5 % of the time.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    n_test, n_voxels = int(n_test), int(n_voxels)
    if n_test < 3 or n_voxels < 1:
        raise ValueError(f"need n_test >= 3 and n_voxels >= 1, got {n_test} and {n_voxels}")
    half = (n_test - 2) / 2
    r = 2 * np.random.default_rng(seed).beta(half, half, size=(int(n_draws), n_voxels)) - 1
    if statistic == "top_n_mean_r" and select == "validation":  # r are independent of any ranking
        values = r[:, : max(1, min(int(top_n), n_voxels))].mean(axis=1)
    else:
        values = np.asarray(roi_statistic(r, statistic, top_n), np.float64)
    return _floor_summary(values)


def two_sided_p(comparison: Comparison) -> float:
    """Two-sided bootstrap p of a comparison: twice the smaller tail of its bootstrap distribution
    (from ``p_a_not_better``, the share of resamples with A - B <= 0), at most 1."""
    p = float(comparison.p_a_not_better)
    return min(1.0, 2 * min(p, 1 - p))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order: ``(m,) -> (m,)``.

    The k-th smallest p (k = 1..m) is multiplied by m - k + 1, the running maximum is taken (an
    adjusted p never falls below a smaller one's) and the result is capped at 1. Rejecting where the
    adjusted p is below alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError(f"p_values must be a vector of probabilities in [0, 1], got {p}")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def holm_verdicts(comparisons, alpha: float = 0.05, decidable: dict | None = None) -> dict:
    """One verdict word per ROI for a family of comparisons (one model pair, several ROIs).

    ``comparisons``: :class:`evaluation.Comparison` objects, one per ROI. The two-sided p-values
    (:func:`two_sided_p`) are Holm-adjusted over the family; an ROI is "better" or "worse" (A than
    B,
    :data:`evaluation.VERDICTS`) where its adjusted p is below ``alpha``, else "no reliable
    difference". ``decidable``: ``{roi: bool}`` from the simulation's oracle
    (:func:`etecrm_lib.data.calibration.decidable_rois`); an ROI marked False
    gets :data:`UNDECIDABLE` and leaves the family. Returns ``{roi: {"verdict", "p", "p_holm"}}``.
    """
    comparisons = list(comparisons)
    decidable = decidable or {}
    family = [c for c in comparisons if decidable.get(c.roi, True)]
    adjusted = holm([two_sided_p(c) for c in family]) if family else []
    out = {}
    for c in comparisons:
        out[c.roi] = {"verdict": UNDECIDABLE, "p": two_sided_p(c), "p_holm": float("nan")}
    for c, p_holm in zip(family, adjusted):
        word = VERDICTS[2]
        if p_holm < alpha:
            word = VERDICTS[0] if c.difference > 0 else VERDICTS[1]
        out[c.roi].update(verdict=word, p_holm=float(p_holm))
    return out


def family_summary(
    comparisons, label: str = "", decidable: dict | None = None, alpha: float = 0.05
) -> list:
    """Plain sentences for families of comparisons, verdicts Holm-adjusted within each family.

    A family is one (model A, model B, statistic) over its ROIs (:func:`holm_verdicts`). One line
    per family, e.g. ``"subject 1, etecrm - gwp_ridge (median_r), Holm over 5 ROIs: better in V2
    (+0.021), V3 (+0.018); no reliable difference in V1 (+0.004), V4 (-0.002); worse in LO
    (-0.012)"``. Every word and number comes from the comparisons given.
    """
    groups = {}
    for c in comparisons:
        groups.setdefault((c.model_a, c.model_b, c.statistic), []).append(c)
    lines = []
    for (a, b, statistic), family in groups.items():
        words = holm_verdicts(family, alpha, decidable)
        parts = []
        for word in (*VERDICTS, UNDECIDABLE):
            rois = [
                f"{c.roi} ({c.difference:+.3f})" for c in family if words[c.roi]["verdict"] == word
            ]
            if rois:
                parts.append(f"{word} in {', '.join(rois)}")
        head = (
            f"{label + ', ' if label else ''}{a} - {b} ({statistic}), Holm over {len(family)} ROIs"
        )
        lines.append(f"{head}: " + "; ".join(parts))
    return lines


def claim_verdict(words: dict) -> str:
    """Whether a claim "A is better than B" holds over ROIs, from :func:`holm_verdicts`' words:
    "holds" (better in every decidable ROI), "holds in part" (in some), "is not borne out" (in
    none) or :data:`UNDECIDABLE` (no ROI can be decided)."""
    decided = [w["verdict"] for w in words.values() if w["verdict"] != UNDECIDABLE]
    if not decided:
        return UNDECIDABLE
    better = sum(word == VERDICTS[0] for word in decided)
    if better == len(decided):
        return "holds"
    return "holds in part" if better else "is not borne out"


def forecast_summary(crossings: list) -> list:
    """Sentences on the forecast "more data favours model A" from data-size differences.

    ``crossings``: per ROI ``{"roi", "model_a", "model_b", "differences": [{"n_train",
    "difference", "ci_low", "ci_high"}, ...]}`` (:func:`etecrm_lib.data_size.crossings`). Per ROI:
    at which sizes A - B is reliably positive or negative (95 % interval), and the difference at the
    smallest and the largest size. The forecast is *borne out* in an ROI when A is reliably ahead
    at the largest size and by more than at the smallest; the last sentence names those ROIs.
    """
    lines, borne = [], []
    for row in crossings:
        diffs = sorted(row["differences"], key=lambda d: d["n_train"])
        ahead = [d["n_train"] for d in diffs if d["ci_low"] > 0]
        behind = [d["n_train"] for d in diffs if d["ci_high"] < 0]
        first, last = diffs[0], diffs[-1]
        lines.append(
            f"{row['roi']}: {row['model_a']} - {row['model_b']} is reliably positive at "
            f"{len(ahead)} of {len(diffs)} sizes ({', '.join(map(str, ahead)) or 'none'}), "
            f"reliably negative at {len(behind)} ({', '.join(map(str, behind)) or 'none'}); "
            f"{first['difference']:+.3f} at {first['n_train']} images, "
            f"{last['difference']:+.3f} at {last['n_train']}"
        )
        if last["ci_low"] > 0 and last["difference"] > first["difference"]:
            borne.append(row["roi"])
    if crossings:
        where = ", ".join(borne) if borne else "no ROI"
        lines.append(
            f"The forecast that more data favours {crossings[0]['model_a']} is borne out in {where}"
            f" (of {', '.join(r['roi'] for r in crossings)}) within "
            f"{max(d['n_train'] for r in crossings for d in r['differences'])} images."
        )
    return lines
