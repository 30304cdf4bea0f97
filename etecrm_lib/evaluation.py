"""One honest way to score an encoding model, and every statistic the book reports about it.

Every model in the book (two-step, end-to-end, ablations) is scored by :func:`score` on the held-out
test split, voxel by voxel, which returns an :class:`EncodingResult`; tables, figures and widgets
take lists of those. Every number about accuracy is computed here (figures and widgets only draw):
Pearson r (:func:`correlation`, the one definition), ceilings, ROI statistics
(:func:`roi_statistic`), bootstrap intervals over test images (and model seeds) and their verdicts.

Definitions
-----------
- Accuracy of voxel v: Pearson r between predicted and measured test responses over the
  N_test test images (:func:`pearson_r`).
- Noise ceiling of voxel v (:func:`noise_ceiling`): the highest r any model could reach against the
  *measured* mean-of-R-repeats response, given the trial-to-trial noise estimated from the repeats::

      noise variance   s2_n = mean over images of the variance across repeats (ddof=1)
      signal variance  s2_s = var over images of the mean response - s2_n / R   (clipped at 0)
      ceiling          c_v  = sqrt(s2_s / (s2_s + s2_n / R))

- Oracle ceiling (simulation only, :func:`oracle_ceiling`): r between the noise-free response and
  the measured mean response; the exact value the estimate above targets.
- ``frac_ceiling`` of an ROI: the fraction of explainable variance explained, pooled over voxels,
  ``sum_v max(r_v, 0)^2 / sum_v c_v^2``.
- ``n_significant``: voxels whose r exceeds the one-sided p < 0.001 threshold of a test of zero
  correlation with N_test images (t distribution), uncorrected.

All functions take numpy arrays or torch tensors and run on the GPU when given CUDA tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .resampling import check_resamples, image_resamples

TOP_N = 300
"""The default N of the "top-N voxels" statistic (the released code's model selection used 300
voxels)."""
STATISTICS = {
    "median_r": "median r",
    "mean_r": "mean r",
    "top_n_mean_r": "mean r of the top-N voxels",
}
"""The ROI statistics (:func:`roi_statistic`) and how figures name them."""

# A model is *collapsed* when at least this fraction of its voxels get a constant prediction
# (EncodingResult.collapsed). A model that learned anything has none: in the committed full runs
# every result but three has no constant voxel; those three (ETECRM, LO, subject 1) have 38-100 %.
COLLAPSE_FRACTION = 0.1


# --------------------------------------------------------------------------- per-voxel statistics
def _as_tensor(x, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device or x.device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)


def _like_input(result: torch.Tensor, reference):
    if isinstance(reference, torch.Tensor):
        return result.to(torch.float32)
    return result.cpu().numpy().astype(np.float32)


def _standardized_columns(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Columns (along the image axis -2) centred and scaled to unit sum of squares; constant columns
    0.

    Each column is first divided by its largest absolute value (r does not change), so that any
    finite input works whatever its units. A column is constant when its root mean square after that
    is at most ``eps``: a relative test, so that multiplying an input by any positive number never
    changes r.
    """
    scale = x.abs().amax(-2, keepdim=True)
    x = x / torch.where(scale > 0, scale, torch.ones_like(scale))
    x = x - x.mean(-2, keepdim=True)
    norm = x.square().sum(-2, keepdim=True).sqrt()
    constant = norm <= eps * x.shape[-2] ** 0.5
    return torch.where(
        constant, torch.zeros_like(x), x / torch.where(constant, torch.ones_like(norm), norm)
    )


def correlation(
    x: torch.Tensor, y: torch.Tensor, counts: torch.Tensor | None = None, eps: float = 1e-10
) -> torch.Tensor:
    """The library's one definition of Pearson r, per column, in the dtype of the inputs (no
    checks).

    ``x``, ``y``: ``(..., N, V)`` (N images, V voxels; leading axes broadcast) -> ``(..., V)``: the
    sum over images of the product of the two standardized columns (centred, unit sum of squares).

    ``counts``: optional ``(B, N)`` image weights, e.g. how often each image was drawn by a
    bootstrap resample; then x, y are ``(N, V)`` and the result ``(B, V)`` is r over each weighted
    image set. A column that is constant (over all images, or within a resample: a spread below 1e-6
    of its spread over all images) gets r = 0, whatever the units. Reporting code calls
    :func:`pearson_r`, which checks its inputs and calls this in float64.
    """
    zx, zy = _standardized_columns(x, eps), _standardized_columns(y, eps)
    if counts is None:
        return (zx * zy).sum(-2).clamp(-1.0, 1.0)
    counts = counts.to(zx.dtype)
    total = counts.sum(1, keepdim=True)
    mx, my = counts @ zx / total, counts @ zy / total
    sxy = counts @ (zx * zy) / total - mx * my
    sxx = (counts @ (zx * zx) / total - mx * mx).clamp_min(0)
    syy = (counts @ (zy * zy) / total - my * my).clamp_min(0)
    # unit sum of squares over N images: a mean square of 1/N; below 1e-12/N the resample is
    # constant
    flat = 1e-12 / x.shape[-2]
    constant = (sxx <= flat) | (syy <= flat)
    r = sxy / torch.sqrt(torch.where(constant, torch.ones_like(sxx), sxx * syy))
    return torch.where(constant, torch.zeros_like(r), r.clamp(-1.0, 1.0))


def pearson_r(predictions, responses, eps: float = 1e-10):
    """Pearson r per column: ``(N, V), (N, V) -> (V,)``, in [-1, 1] (numpy or torch in, float32
    out).

    Computed in float64 by :func:`correlation`, after dividing each column by its largest absolute
    value (r does not change), so that any finite input gives a finite r, whatever its units or
    scale.

    - A *constant* column in either input gets r = 0 (not NaN), so that flat predictions score as
      chance rather than poisoning averages. A column counts as constant when its standard
      deviation is at most ``eps`` times its largest absolute value (a relative test, so that
      multiplying an input by any positive number never changes r).
    - NaN or inf anywhere is an error (a ValueError that says where), never a silent r = 0: a model
      that predicts NaN has diverged, and its accuracy is unknown, not zero.
    """
    x, y = _as_tensor(predictions), _as_tensor(responses)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(
            f"predictions {tuple(x.shape)} and responses {tuple(y.shape)} must both be (N, V)"
        )
    y = y.to(x.device)
    _check_finite(x, "predictions")
    _check_finite(y, "responses")
    return _like_input(correlation(x, y, eps=eps), predictions)


def _check_finite(x, name: str, what: str | None = None) -> None:
    """Raise a ValueError that counts and locates NaN/inf values of an ``(N, V)`` array or
    tensor."""
    x = _as_tensor(x)
    bad = ~torch.isfinite(x)
    if not bool(bad.any()):
        return
    columns = torch.nonzero(bad.any(0)).flatten().tolist()
    n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
    hint = (
        "A model whose predictions are NaN or inf has usually diverged in training: train "
        "it again with a "
        "lower learning rate, and check its inputs for NaN"
        if name == "predictions"
        else "Drop those voxels first (from_arrays and the loaders drop voxels with NaN/inf "
        "responses)"
    )
    raise ValueError(
        f"{what or name} contain {n_nan} NaN and {n_inf} inf values, in {len(columns)} of "
        f"{x.shape[1]} columns "
        f"(voxels), the first being column {columns[0]}: Pearson r is undefined for those "
        f"voxels (it is not 0). {hint}"
    )


def noise_ceiling(repeats):
    """Noise ceiling on r for the mean of R repeats: ``(R, N, V) -> (V,)`` (see module
    docstring)."""
    y = _as_tensor(repeats)
    if y.ndim != 3 or y.shape[0] < 2:
        raise ValueError(
            f"repeats must be (R, N, V) with R >= 2 single trials, got shape {tuple(y.shape)}"
        )
    n_rep = y.shape[0]
    noise_var = y.var(dim=0, unbiased=True).mean(dim=0)
    mean_var = y.mean(dim=0).var(dim=0, unbiased=True)
    signal_var = (mean_var - noise_var / n_rep).clamp_min(0)
    total = signal_var + noise_var / n_rep
    ceiling = torch.where(
        total > 0, torch.sqrt(signal_var / total.clamp_min(1e-30)), torch.zeros_like(total)
    )
    return _like_input(ceiling, repeats)


def oracle_ceiling(oracle, responses):
    """r between the noise-free and the measured test responses: ``(N, V), (N, V) -> (V,)``."""
    return pearson_r(oracle, responses)


def significance_threshold(n_images: int, p: float = 1e-3) -> float:
    """The r above which a one-sided test of zero correlation over ``n_images`` gives p < ``p``."""
    from scipy import stats

    t = stats.t.ppf(1 - p, df=n_images - 2)
    return float(t / np.sqrt(n_images - 2 + t * t))


# --------------------------------------------------------------------------- the result type
@dataclass
class EncodingResult:
    """The held-out accuracy of one model on one ROI of one dataset.

    Attributes
    ----------
    model : str            name of the model or variant, e.g. "etecrm", "gwp_ridge"
    roi : str
    dataset : str          e.g. "sim", "vim1"
    subject : int
    test_r : float32 (V,)  per-voxel Pearson r on the test split
    noise_ceiling : float32 (V,) or None   estimated from test repeats (None if no repeats)
    oracle_ceiling : float32 (V,) or None  simulation only
    predictions : float32 (N_test, V) or None   kept for paired bootstrap comparisons
    info : dict            provenance: configuration, seed, device, weights, wall time, ...
    """

    model: str
    roi: str
    dataset: str
    subject: int
    test_r: np.ndarray
    noise_ceiling: np.ndarray | None = None
    oracle_ceiling: np.ndarray | None = None
    predictions: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_voxels(self) -> int:
        return int(np.asarray(self.test_r).size)

    @property
    def constant_fraction(self) -> float:
        """Fraction of voxels with a constant prediction, on the test images or (``info["val_r"]``)
        the validation images, whichever is more: such a voxel's r is exactly 0 (the rule of
        :func:`correlation` for a constant column; a varying prediction never gives r == 0.0)."""
        return max(
            float(np.mean(np.asarray(r) == 0)) if np.size(r) else 0.0
            for r in (self.test_r, self.info.get("val_r", []))
        )

    @property
    def collapsed(self) -> bool:
        """True when at least :data:`COLLAPSE_FRACTION` of the voxels get a constant prediction: a
        network whose read-out units (or all its features) died in training."""
        return self.constant_fraction >= COLLAPSE_FRACTION

    def summary(self, top_n: int = TOP_N) -> dict:
        """The paper's summary plus ours, one flat dict (a table row)."""
        r = np.asarray(self.test_r, dtype=np.float64)
        n_test = None if self.predictions is None else int(np.asarray(self.predictions).shape[0])
        n_test = n_test or self.info.get("n_test_images")
        row = {
            "dataset": self.dataset,
            "subject": self.subject,
            "roi": self.roi,
            "model": self.model,
            "n_voxels": self.n_voxels,
            "median_r": roi_statistic(r, "median_r"),
            "mean_r": roi_statistic(r, "mean_r"),
            f"top{top_n}_mean_r": roi_statistic(r, "top_n_mean_r", top_n),
            "frac_ceiling": fraction_of_ceiling(r, self.noise_ceiling),
            "n_significant": int((r > significance_threshold(n_test)).sum()) if n_test else None,
        }
        if self.noise_ceiling is not None:
            row["median_ceiling"] = float(np.median(self.noise_ceiling))
        if self.oracle_ceiling is not None:
            row["frac_oracle_ceiling"] = fraction_of_ceiling(r, self.oracle_ceiling)
        return row


def fraction_of_ceiling(r, ceiling) -> float:
    """Pooled fraction of explainable variance explained: sum max(r,0)^2 / sum c^2 (NaN without a
    ceiling)."""
    if ceiling is None:
        return float("nan")
    c2 = float(np.sum(np.asarray(ceiling, dtype=np.float64) ** 2))
    if c2 <= 0:
        return float("nan")
    return float(np.sum(np.clip(np.asarray(r, dtype=np.float64), 0, None) ** 2) / c2)


def score(
    predictions,
    dataset,
    roi: str,
    model: str,
    info: dict | None = None,
    keep_predictions: bool = True,
) -> EncodingResult:
    """Score test-split predictions ``(N_test, V)`` of one ROI against ``dataset.test``.

    This is the only function that reads the test responses; fitting code never calls it.
    Predictions with NaN or inf are an error (a diverged model), never scored as r = 0.
    """
    dataset.check_roi(roi)
    measured = dataset.test.responses[roi]
    predictions = (
        predictions.detach().float().cpu().numpy()
        if isinstance(predictions, torch.Tensor)
        else np.asarray(predictions, np.float32)
    )
    if predictions.shape != measured.shape:
        raise ValueError(
            f"predictions for ROI '{roi}' have shape {predictions.shape}, expected "
            f"{measured.shape} "
            "(test images x voxels of the ROI)"
        )
    _check_finite(predictions, "predictions", f"the predictions of model {model!r} for ROI {roi!r}")
    ceiling = noise_ceiling(dataset.test.repeats[roi]) if roi in dataset.test.repeats else None
    oracle = (
        oracle_ceiling(dataset.test.oracle[roi], measured) if roi in dataset.test.oracle else None
    )
    info = dict(info or {})
    info.setdefault("n_test_images", int(measured.shape[0]))
    return EncodingResult(
        model=model,
        roi=roi,
        dataset=dataset.name,
        subject=dataset.subject,
        test_r=pearson_r(predictions, measured),
        noise_ceiling=ceiling,
        oracle_ceiling=oracle,
        predictions=predictions if keep_predictions else None,
        info=info,
    )


def summary_table(results, top_n: int = TOP_N) -> list:
    """One row (dict) per result: see :meth:`EncodingResult.summary`."""
    return [res.summary(top_n) for res in results]


# ----------------------------------------------------------------- ROI statistics and the bootstrap
def default_top_n(n_voxels: int) -> int:
    """The N of the "top-N voxels" statistic for an ROI of ``n_voxels``: ``TOP_N`` (300), or all
    voxels if fewer."""
    return max(1, min(TOP_N, int(n_voxels)))


def roi_statistic(r, statistic: str = "median_r", top_n: int = TOP_N):
    """The ROI summary of per-voxel r along the last axis: ``(..., V) -> (...)``.

    ``r``: an :class:`EncodingResult` (its ``test_r``), a numpy array (-> float or float64 array) or
    a torch tensor (-> tensor). ``statistic``: ``"median_r"`` (the mean of the two middle values for
    an even count, as ``np.median``), ``"mean_r"`` or ``"top_n_mean_r"`` (mean of the ``top_n``
    best voxels; all voxels if the ROI has fewer).
    """
    values = _as_tensor(r.test_r if isinstance(r, EncodingResult) else r)
    if statistic == "median_r":
        out = values.quantile(0.5, dim=-1)
    elif statistic == "mean_r":
        out = values.mean(dim=-1)
    elif statistic == "top_n_mean_r":
        out = values.topk(min(int(top_n), values.shape[-1]), dim=-1).values.mean(dim=-1)
    else:
        raise ValueError(f"statistic must be one of {list(STATISTICS)}, got {statistic!r}")
    if isinstance(r, torch.Tensor):
        return out
    return float(out) if out.ndim == 0 else out.cpu().numpy()


def resampled_statistic(
    predictions, responses, counts: torch.Tensor, statistic: str = "median_r", top_n: int = TOP_N
) -> torch.Tensor:
    """The ROI statistic of per-voxel r under each resample: ``(N, V), (N, V), counts (B, N) ->
    (B,)``."""
    y = _as_tensor(responses)
    x = _as_tensor(predictions, y.device)
    return roi_statistic(correlation(x, y, counts.to(y.device)), statistic, top_n)


def bootstrap_interval(
    result: EncodingResult,
    responses,
    statistic: str = "median_r",
    top_n: int = TOP_N,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple:
    """Percentile bootstrap interval of one model's ROI statistic, resampling the test images.

    ``responses`` are the ROI's measured test responses ``(N_test, V)``; ``result.predictions`` must
    be kept. Returns ``(low, high)``. (For A-vs-B differences use :func:`paired_bootstrap`.)
    """
    if result.predictions is None:
        raise ValueError(
            f"result '{result.model}' / {result.roi} has no predictions: score(..., "
            "keep_predictions=True)"
        )
    if np.shape(result.predictions) != np.shape(responses):
        raise ValueError(
            f"predictions {np.shape(result.predictions)} and responses "
            f"{np.shape(responses)} differ in shape"
        )
    n = np.shape(responses)[0]
    gen = torch.Generator().manual_seed(seed)
    stats = (
        torch.cat(
            [
                resampled_statistic(
                    result.predictions,
                    responses,
                    image_resamples(n, min(250, n_bootstrap - start), gen),
                    statistic,
                    top_n,
                )
                for start in range(0, check_resamples(n_bootstrap), 250)
            ]
        )
        .cpu()
        .numpy()
    )
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


@dataclass
class Comparison:
    """Model A minus model B on one ROI, with a paired bootstrap interval over test images (and
    model seeds).

    ``difference`` is the mean over A's seeds of the ROI statistic minus the same for B;
    ``n_seeds_a`` / ``n_seeds_b``: how many model seeds each side had (1: a single model).
    """

    model_a: str
    model_b: str
    roi: str
    statistic: str
    difference: float
    ci_low: float
    ci_high: float
    p_a_not_better: float
    n_bootstrap: int
    n_seeds_a: int = 1
    n_seeds_b: int = 1

    @classmethod
    def from_dict(cls, record: dict) -> "Comparison":
        """A Comparison from a dict holding its fields (and perhaps more, e.g. a comparisons file's
        record)."""
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})

    @property
    def a_beats_b(self) -> bool:
        """True when the whole interval lies above zero: A is reliably better."""
        return self.ci_low > 0

    @property
    def b_beats_a(self) -> bool:
        """True when the whole interval lies below zero: A is reliably worse."""
        return self.ci_high < 0

    def __str__(self) -> str:
        over = (
            "test images"
            if self.n_seeds_a == self.n_seeds_b == 1
            else f"test images and seeds, {self.n_seeds_a} vs {self.n_seeds_b}"
        )
        return (
            f"{self.roi}: {self.model_a} - {self.model_b} {self.statistic} = "
            f"{self.difference:+.3f} "
            f"[{self.ci_low:+.3f}, {self.ci_high:+.3f}] (95% paired bootstrap over {over})"
        )


VERDICTS = ("better", "worse", "no reliable difference")


def verdict(comparison: Comparison, short: bool = False) -> str:
    """Plain words for a paired-bootstrap difference A - B: which way its 95% interval points.

    ``short=True``: one of :data:`VERDICTS`, "better" / "worse" (A than B) or "no reliable
    difference" (the interval contains or touches 0), for a table column.
    """
    if comparison.a_beats_b:
        return (
            VERDICTS[0]
            if short
            else f"{comparison.model_a} is reliably better (the whole interval is above 0)"
        )
    if comparison.b_beats_a:
        return (
            VERDICTS[1]
            if short
            else f"{comparison.model_a} is reliably worse (the whole interval is below 0)"
        )
    return (
        VERDICTS[2]
        if short
        else "no difference these test images and seeds can detect (the interval contains 0)"
    )


def _seed_list(results) -> list:
    """One result or a list of results (one per model seed) -> a non-empty list."""
    results = [results] if isinstance(results, EncodingResult) else list(results)
    if not results:
        raise ValueError("paired_bootstrap needs at least one result per model")
    for res in results:
        if res.predictions is None:
            raise ValueError(
                "paired_bootstrap needs the test predictions of every result (score(..., "
                "keep_predictions=True))"
            )
    return results


def _per_seed_statistic(
    predictions: list, y: torch.Tensor, counts: torch.Tensor, statistic: str, top_n: int
):
    """ROI statistic of each seed's predictions under each image resample: ``-> (B, S)``."""
    return torch.stack(
        [resampled_statistic(x, y, counts, statistic, top_n) for x in predictions], dim=1
    )


def _seed_mean(stats: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mean over seeds drawn with replacement, one draw per resample: ``(B, S) -> (B,)`` (S = 1: as
    is)."""
    n_resamples, n_seeds = stats.shape
    if n_seeds == 1:
        return stats[:, 0]
    drawn = torch.randint(0, n_seeds, (n_resamples, n_seeds), generator=gen).to(stats.device)
    return stats.gather(1, drawn).mean(1)


def paired_bootstrap(
    result_a,
    result_b,
    responses,
    statistic: str = "median_r",
    n_bootstrap: int = 2000,
    top_n: int = TOP_N,
    confidence: float = 0.95,
    seed: int = 0,
    device=None,
    voxels=None,
) -> Comparison:
    """Is model A better than model B on this ROI? Resample the test images (and the model seeds)
    with replacement.

    ``result_a`` / ``result_b``: one :class:`EncodingResult`, or a list of them, one per model seed
    (same ROI). Each resample draws N_test test images with replacement, shared by both models
    (paired: image difficulty cancels), and draws each model's seeds with replacement (S_a from
    A's S_a seeds, S_b from B's); its statistic is the mean over the drawn seeds of the ROI
    ``statistic`` (``"median_r"``, ``"mean_r"``, ``"top_n_mean_r"``) of per-voxel r on the drawn
    images. So the interval covers both the choice of test images and the luck of the seed. With
    one result per side this is the plain paired bootstrap over test images.

    ``responses`` is the ROI's measured test responses ``(N_test, V)``. ``voxels``: optional voxel
    indices ``(K,)`` chosen beforehand without the test split (e.g. :func:`referee.shared_top_n`);
    both models are then scored on those voxels only (with ``"top_n_mean_r"`` and ``K <= top_n``
    the statistic is their mean r). Returns the observed
    difference (mean over A's seeds minus mean over B's seeds), its percentile interval and the
    bootstrap fraction of resamples in which A is not better (a one-sided p-value).
    """
    runs_a, runs_b = _seed_list(result_a), _seed_list(result_b)
    if len({r.roi for r in runs_a + runs_b}) != 1:
        raise ValueError(
            f"cannot compare ROIs {sorted({r.roi for r in runs_a + runs_b})} with each other"
        )
    y = _as_tensor(responses, device)
    xa = [_as_tensor(r.predictions, y.device) for r in runs_a]
    xb = [_as_tensor(r.predictions, y.device) for r in runs_b]
    if voxels is not None:
        chosen = torch.as_tensor(np.asarray(voxels), dtype=torch.long, device=y.device)
        y, xa, xb = y[:, chosen], [x[:, chosen] for x in xa], [x[:, chosen] for x in xb]
    n = y.shape[0]
    ones = torch.ones(1, n, dtype=torch.float64)
    observed = float(
        _per_seed_statistic(xa, y, ones, statistic, top_n).mean()
        - _per_seed_statistic(xb, y, ones, statistic, top_n).mean()
    )
    gen = torch.Generator().manual_seed(seed)  # the images: the same draws as with one seed
    seed_gen = torch.Generator().manual_seed(seed + 7919)  # the seeds: a stream of their own
    diffs = []
    for start in range(0, check_resamples(n_bootstrap), 250):
        counts = image_resamples(n, min(250, n_bootstrap - start), gen)
        stat_a = _seed_mean(_per_seed_statistic(xa, y, counts, statistic, top_n), seed_gen)
        stat_b = _seed_mean(_per_seed_statistic(xb, y, counts, statistic, top_n), seed_gen)
        diffs.append(stat_a - stat_b)
    diffs = torch.cat(diffs).cpu().numpy()
    alpha = (1 - confidence) / 2
    return Comparison(
        runs_a[0].model,
        runs_b[0].model,
        runs_a[0].roi,
        statistic,
        observed,
        float(np.quantile(diffs, alpha)),
        float(np.quantile(diffs, 1 - alpha)),
        float(np.mean(diffs <= 0)),
        n_bootstrap,
        len(runs_a),
        len(runs_b),
    )


# ------------------------------------------------------ chapters 4-8: seeds, selective optimization
def seed_runs(results, model: str, roi: str | None = None) -> list:
    """The results of ``model`` (on ``roi``, if given), one per model seed, sorted by seed: a list
    for :func:`paired_bootstrap`. Raises a ValueError naming the models present when there is
    none."""
    runs = [r for r in results if r.model == model and (roi is None or r.roi == roi)]
    if not runs:
        raise ValueError(
            f"no results of model {model!r}{'' if roi is None else f' on {roi}'}; "
            f"models present: {sorted({r.model for r in results})}"
        )
    return sorted(runs, key=lambda r: r.info.get("seed") or 0)


def expected_noisy_r(signal_r, scale, noise_std: float = 1.0):
    """Expected correlation with the response of a prediction of size ``scale`` plus fixed-size
    noise.

    The prediction of a voxel over the images is ``p = scale * z`` with z standardized (s.d. 1 over
    the images) and correlated ``signal_r`` with the response; noise regularization adds independent
    Gaussian noise of s.d. ``noise_std``. For many images the correlation of ``p + noise`` with the
    response is ``signal_r * scale / sqrt(scale**2 + noise_std**2)``: it approaches ``signal_r``
    only when the prediction is large next to the noise. Arguments broadcast (numpy); returns
    float64.
    """
    signal_r, scale = np.asarray(signal_r, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    if noise_std < 0 or np.any(scale < 0):
        raise ValueError(
            f"scale and noise_std must be >= 0, got scale min {scale.min()}, noise_std {noise_std}"
        )
    total = np.sqrt(scale**2 + noise_std**2)
    return np.where(total > 0, signal_r * scale / np.where(total > 0, total, 1.0), 0.0)


def rank_correlation(
    x, y, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple:
    """Spearman rank correlation of ``x`` and ``y`` with a percentile bootstrap interval.

    ``x``, ``y``: ``(V,)`` (one value per voxel) or ``(S, V)`` (one row per model seed). The
    statistic is the mean over rows of each row's rank correlation; each resample draws the voxels
    with replacement (the same voxels for every row) and the rows (seeds) with replacement, so the
    interval covers both. Returns ``(rho, low, high)`` (``n_bootstrap=0``: no interval, NaN bounds).
    """
    from scipy import stats

    x, y = (
        np.atleast_2d(np.asarray(x, dtype=np.float64)),
        np.atleast_2d(np.asarray(y, dtype=np.float64)),
    )
    if x.shape != y.shape:
        x, y = np.broadcast_arrays(x, y)
    n_rows, n = x.shape
    if n < 3:
        raise ValueError(f"a rank correlation needs at least 3 voxels, got {n}")

    def rho(rows, cols):
        values = [stats.spearmanr(x[i, cols], y[i, cols]).statistic for i in rows]
        return float(np.nanmean(values))

    observed = rho(range(n_rows), np.arange(n))
    if check_resamples(n_bootstrap, allow_none=True) == 0:
        return observed, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = [rho(rng.integers(0, n_rows, n_rows), rng.integers(0, n, n)) for _ in range(n_bootstrap)]
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(boot, [alpha, 1 - alpha])
    return observed, float(low), float(high)
