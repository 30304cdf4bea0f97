"""One honest way to score an encoding model: on the held-out test split, voxel by voxel.

Every model in the book (two-step, end-to-end, ablations) is scored by :func:`score`, which
returns an :class:`EncodingResult`; tables, figures and widgets take lists of those.

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

TOP_N = 300


# --------------------------------------------------------------------------- per-voxel statistics
def _as_tensor(x, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device or x.device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)


def _like_input(result: torch.Tensor, reference):
    if isinstance(reference, torch.Tensor):
        return result.to(torch.float32)
    return result.cpu().numpy().astype(np.float32)


def pearson_r(predictions, responses, eps: float = 1e-10):
    """Pearson r per column: ``(N, V), (N, V) -> (V,)``, in [-1, 1].

    Computed in float64, after dividing each column by its largest absolute value (r does not
    change), so that any finite input gives a finite r, whatever its units or scale.

    - A *constant* column in either input gets r = 0 (not NaN), so that flat predictions score as
      chance rather than poisoning averages. A column counts as constant when its standard
      deviation is at most ``eps`` times its largest absolute value (a relative test, so that
      multiplying an input by any positive number never changes r).
    - NaN or inf anywhere is an error (a ValueError that says where), never a silent r = 0: a model
      that predicts NaN has diverged, and its accuracy is unknown, not zero.
    """
    x, y = _as_tensor(predictions), _as_tensor(responses)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"predictions {tuple(x.shape)} and responses {tuple(y.shape)} must both be (N, V)")
    y = y.to(x.device)
    _check_finite(x, "predictions")
    _check_finite(y, "responses")
    x, constant_x = _centred_unit_columns(x, eps)
    y, constant_y = _centred_unit_columns(y, eps)
    denom = torch.sqrt((x * x).sum(0) * (y * y).sum(0))
    r = torch.where(constant_x | constant_y, torch.zeros_like(denom),
                    ((x * y).sum(0) / denom.clamp_min(1e-300)).clamp(-1.0, 1.0))
    return _like_input(r, predictions)


def _centred_unit_columns(x: torch.Tensor, eps: float):
    """Each column divided by its largest absolute value, then centred; and which columns are constant."""
    scale = x.abs().amax(0)
    x = x / torch.where(scale > 0, scale, torch.ones_like(scale))
    x = x - x.mean(0)
    constant = x.square().mean(0).sqrt() <= eps
    return x, constant


def _check_finite(x: torch.Tensor, name: str, what: str | None = None) -> None:
    """Raise a ValueError that counts and locates NaN/inf values of an ``(N, V)`` tensor."""
    bad = ~torch.isfinite(x)
    if not bool(bad.any()):
        return
    columns = torch.nonzero(bad.any(0)).flatten().tolist()
    n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
    hint = ("A model whose predictions are NaN or inf has usually diverged in training: train it again with a "
            "lower learning rate, and check its inputs for NaN" if name == "predictions" else
            "Drop those voxels first (from_arrays and the loaders drop voxels with NaN/inf responses)")
    raise ValueError(
        f"{what or name} contain {n_nan} NaN and {n_inf} inf values, in {len(columns)} of {x.shape[1]} columns "
        f"(voxels), the first being column {columns[0]}: Pearson r is undefined for those voxels (it is not 0). {hint}"
    )


def noise_ceiling(repeats):
    """Noise ceiling on r for the mean of R repeats: ``(R, N, V) -> (V,)`` (see module docstring)."""
    y = _as_tensor(repeats)
    if y.ndim != 3 or y.shape[0] < 2:
        raise ValueError(f"repeats must be (R, N, V) with R >= 2 single trials, got shape {tuple(y.shape)}")
    n_rep = y.shape[0]
    noise_var = y.var(dim=0, unbiased=True).mean(dim=0)
    mean_var = y.mean(dim=0).var(dim=0, unbiased=True)
    signal_var = (mean_var - noise_var / n_rep).clamp_min(0)
    total = signal_var + noise_var / n_rep
    ceiling = torch.where(total > 0, torch.sqrt(signal_var / total.clamp_min(1e-30)), torch.zeros_like(total))
    return _like_input(ceiling, repeats)


def oracle_ceiling(oracle, responses):
    """r between the noise-free and the measured test responses: ``(N, V), (N, V) -> (V,)``."""
    return pearson_r(oracle, responses)


def significance_threshold(n_images: int, p: float = 1e-3) -> float:
    """The r above which a one-sided test of zero correlation over ``n_images`` gives p < ``p``."""
    from scipy import stats

    t = stats.t.ppf(1 - p, df=n_images - 2)
    return float(t / np.sqrt(n_images - 2 + t * t))


def permutation_pvalues(predictions, responses, n_permutations: int = 1000, seed: int = 0, chunk: int = 100):
    """One-sided permutation p-value per voxel for r > 0: ``(N, V), (N, V) -> (V,)``.

    The test images' order is shuffled in the predictions (the same permutation for all voxels,
    so the voxels' noise correlations are kept); p = (1 + #{r_perm >= r}) / (1 + n_permutations).
    """
    x, y = _as_tensor(predictions), _as_tensor(responses)
    y = y.to(x.device)
    n = x.shape[0]
    zx = (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-12)
    zy = (y - y.mean(0)) / y.std(0, unbiased=False).clamp_min(1e-12)
    r_true = (zx * zy).mean(0)
    gen = torch.Generator().manual_seed(seed)
    exceed = torch.zeros_like(r_true)
    done = 0
    while done < n_permutations:
        b = min(chunk, n_permutations - done)
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(b)]).to(x.device)
        r_perm = torch.einsum("bnv,nv->bv", zx[perms], zy) / n
        exceed += (r_perm >= r_true - 1e-12).sum(0)
        done += b
    p = (1 + exceed) / (1 + n_permutations)
    return _like_input(p, predictions)


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

    def summary(self, top_n: int = TOP_N) -> dict:
        """The paper's summary plus ours, one flat dict (a table row)."""
        r = np.asarray(self.test_r, dtype=np.float64)
        n_test = None if self.predictions is None else int(np.asarray(self.predictions).shape[0])
        n_test = n_test or self.info.get("n_test_images")
        row = {
            "dataset": self.dataset, "subject": self.subject, "roi": self.roi, "model": self.model,
            "n_voxels": self.n_voxels,
            "median_r": float(np.median(r)),
            "mean_r": float(np.mean(r)),
            f"top{top_n}_mean_r": top_n_mean(r, top_n),
            "frac_ceiling": fraction_of_ceiling(r, self.noise_ceiling),
            "n_significant": int((r > significance_threshold(n_test)).sum()) if n_test else None,
        }
        if self.noise_ceiling is not None:
            row["median_ceiling"] = float(np.median(self.noise_ceiling))
        if self.oracle_ceiling is not None:
            row["frac_oracle_ceiling"] = fraction_of_ceiling(r, self.oracle_ceiling)
        return row

    def to_arrays(self) -> dict:
        """Arrays and JSON-able metadata, for saving (see ``reproduce``)."""
        out = {"test_r": np.asarray(self.test_r, dtype=np.float32)}
        for key in ("noise_ceiling", "oracle_ceiling", "predictions"):
            value = getattr(self, key)
            if value is not None:
                out[key] = np.asarray(value, dtype=np.float32)
        return out


def top_n_mean(r, top_n: int = TOP_N) -> float:
    """Mean r of the ``top_n`` best voxels (all voxels if the ROI has fewer)."""
    r = np.sort(np.asarray(r, dtype=np.float64))[::-1]
    return float(r[: min(top_n, r.size)].mean())


def fraction_of_ceiling(r, ceiling) -> float:
    """Pooled fraction of explainable variance explained: sum max(r,0)^2 / sum c^2 (NaN without a ceiling)."""
    if ceiling is None:
        return float("nan")
    c2 = float(np.sum(np.asarray(ceiling, dtype=np.float64) ** 2))
    if c2 <= 0:
        return float("nan")
    return float(np.sum(np.clip(np.asarray(r, dtype=np.float64), 0, None) ** 2) / c2)


def score(predictions, dataset, roi: str, model: str, info: dict | None = None, keep_predictions: bool = True) -> EncodingResult:
    """Score test-split predictions ``(N_test, V)`` of one ROI against ``dataset.test``.

    This is the only function that reads the test responses; fitting code never calls it.
    Predictions with NaN or inf are an error (a diverged model), never scored as r = 0.
    """
    dataset.check_roi(roi)
    measured = dataset.test.responses[roi]
    predictions = predictions.detach().float().cpu().numpy() if isinstance(predictions, torch.Tensor) else np.asarray(predictions, np.float32)
    if predictions.shape != measured.shape:
        raise ValueError(
            f"predictions for ROI '{roi}' have shape {predictions.shape}, expected {measured.shape} "
            "(test images x voxels of the ROI)"
        )
    _check_finite(_as_tensor(predictions), "predictions", f"the predictions of model {model!r} for ROI {roi!r}")
    ceiling = noise_ceiling(dataset.test.repeats[roi]) if roi in dataset.test.repeats else None
    oracle = oracle_ceiling(dataset.test.oracle[roi], measured) if roi in dataset.test.oracle else None
    info = dict(info or {})
    info.setdefault("n_test_images", int(measured.shape[0]))
    return EncodingResult(
        model=model, roi=roi, dataset=dataset.name, subject=dataset.subject,
        test_r=pearson_r(predictions, measured), noise_ceiling=ceiling, oracle_ceiling=oracle,
        predictions=predictions if keep_predictions else None, info=info,
    )


def summary_table(results, top_n: int = TOP_N) -> list:
    """One row (dict) per result: see :meth:`EncodingResult.summary`."""
    return [res.summary(top_n) for res in results]


# --------------------------------------------------------------------------- comparing two models
def _bootstrap_r(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-voxel r under B resamplings given as image counts: ``x, y (N, V), weights (B, N) -> (B, V)``."""
    total = weights.sum(1, keepdim=True)
    mx, my = weights @ x / total, weights @ y / total
    sxy = weights @ (x * y) / total - mx * my
    sxx = (weights @ (x * x) / total - mx * mx).clamp_min(0)
    syy = (weights @ (y * y) / total - my * my).clamp_min(0)
    denom = torch.sqrt(sxx * syy)
    return torch.where(denom > 1e-12, sxy / denom.clamp_min(1e-12), torch.zeros_like(denom))


def _statistic(r: torch.Tensor, statistic: str, top_n: int) -> torch.Tensor:
    """The ROI summary of per-voxel r along the last axis: ``(..., V) -> (...)``."""
    if statistic == "median_r":
        return r.quantile(0.5, dim=-1)  # the mean of the two middle values, as np.median
    if statistic == "mean_r":
        return r.mean(dim=-1)
    if statistic == "top_n_mean_r":
        k = min(top_n, r.shape[-1])
        return r.topk(k, dim=-1).values.mean(dim=-1)
    raise ValueError(f"statistic must be 'median_r', 'mean_r' or 'top_n_mean_r', got {statistic!r}")


@dataclass
class Comparison:
    """Model A minus model B on one ROI, with a paired bootstrap interval over test images (and model seeds).

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
        """A Comparison from a dict holding its fields (and perhaps more, e.g. a comparisons file's record)."""
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})

    @property
    def a_beats_b(self) -> bool:
        """True when the whole interval lies above zero."""
        return self.ci_low > 0

    def __str__(self) -> str:
        over = "test images" if self.n_seeds_a == self.n_seeds_b == 1 else \
            f"test images and seeds, {self.n_seeds_a} vs {self.n_seeds_b}"
        return (f"{self.roi}: {self.model_a} - {self.model_b} {self.statistic} = {self.difference:+.3f} "
                f"[{self.ci_low:+.3f}, {self.ci_high:+.3f}] (95% paired bootstrap over {over})")


def _seed_list(results) -> list:
    """One result or a list of results (one per model seed) -> a non-empty list."""
    results = [results] if isinstance(results, EncodingResult) else list(results)
    if not results:
        raise ValueError("paired_bootstrap needs at least one result per model")
    for res in results:
        if res.predictions is None:
            raise ValueError("paired_bootstrap needs the test predictions of every result (score(..., keep_predictions=True))")
    return results


def _per_seed_statistic(predictions: list, y: torch.Tensor, counts: torch.Tensor, statistic: str, top_n: int):
    """ROI statistic of each seed's predictions under each image resample: ``-> (B, S)``."""
    return torch.stack([_statistic(_bootstrap_r(x, y, counts), statistic, top_n) for x in predictions], dim=1)


def _seed_mean(stats: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mean over seeds drawn with replacement, one draw per resample: ``(B, S) -> (B,)``."""
    n_resamples, n_seeds = stats.shape
    if n_seeds == 1:
        return stats[:, 0]
    drawn = torch.randint(0, n_seeds, (n_resamples, n_seeds), generator=gen).to(stats.device)
    return stats.gather(1, drawn).mean(1)


def paired_bootstrap(result_a, result_b, responses, statistic: str = "median_r", n_bootstrap: int = 2000,
                     top_n: int = TOP_N, confidence: float = 0.95, seed: int = 0, device=None) -> Comparison:
    """Is model A better than model B on this ROI? Resample the test images (and the model seeds) with replacement.

    ``result_a`` / ``result_b``: one :class:`EncodingResult`, or a list of them, one per model seed
    (same ROI). Each resample draws N_test test images with replacement, shared by both models
    (paired: image difficulty cancels), and draws each model's seeds with replacement (S_a from
    A's S_a seeds, S_b from B's); its statistic is the mean over the drawn seeds of the ROI
    ``statistic`` (``"median_r"``, ``"mean_r"``, ``"top_n_mean_r"``) of per-voxel r on the drawn
    images. So the interval covers both the choice of test images and the luck of the seed. With
    one result per side this is the plain paired bootstrap over test images.

    ``responses`` is the ROI's measured test responses ``(N_test, V)``. Returns the observed
    difference (mean over A's seeds minus mean over B's seeds), its percentile interval and the
    bootstrap fraction of resamples in which A is not better (a one-sided p-value).
    """
    runs_a, runs_b = _seed_list(result_a), _seed_list(result_b)
    if len({r.roi for r in runs_a + runs_b}) != 1:
        raise ValueError(f"cannot compare ROIs {sorted({r.roi for r in runs_a + runs_b})} with each other")
    y = _as_tensor(responses, device)
    xa = [_as_tensor(r.predictions, y.device) for r in runs_a]
    xb = [_as_tensor(r.predictions, y.device) for r in runs_b]
    n = y.shape[0]
    ones = torch.ones(1, n, dtype=torch.float64, device=y.device)
    observed = float(_per_seed_statistic(xa, y, ones, statistic, top_n).mean()
                     - _per_seed_statistic(xb, y, ones, statistic, top_n).mean())
    gen = torch.Generator().manual_seed(seed)                # the images: the same draws as with one seed
    seed_gen = torch.Generator().manual_seed(seed + 7919)    # the seeds: a stream of their own
    diffs = []
    for start in range(0, n_bootstrap, 250):
        b = min(250, n_bootstrap - start)
        idx = torch.randint(0, n, (b, n), generator=gen)
        counts = torch.zeros(b, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones(b, n, dtype=torch.float64)).to(y.device)
        stat_a = _seed_mean(_per_seed_statistic(xa, y, counts, statistic, top_n), seed_gen)
        stat_b = _seed_mean(_per_seed_statistic(xb, y, counts, statistic, top_n), seed_gen)
        diffs.append(stat_a - stat_b)
    diffs = torch.cat(diffs).cpu().numpy()
    alpha = (1 - confidence) / 2
    return Comparison(runs_a[0].model, runs_b[0].model, runs_a[0].roi, statistic, observed,
                      float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha)),
                      float(np.mean(diffs <= 0)), n_bootstrap, len(runs_a), len(runs_b))


def pearson_r_t(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-column Pearson r of two float tensors, staying in torch: ``(N, V), (N, V) -> (V,)``."""
    return _bootstrap_r(x, y, torch.ones(1, x.shape[0], dtype=x.dtype, device=x.device))[0]


# --------------------------------------------------------------------------- chapters 4-8: selective optimization, seeds, cost
def seed_runs(results, model: str, roi: str | None = None) -> list:
    """The results of ``model`` (on ``roi``, if given), one per model seed, sorted by seed: a list for
    :func:`paired_bootstrap`. Raises a ValueError naming the models present when there is none."""
    runs = [r for r in results if r.model == model and (roi is None or r.roi == roi)]
    if not runs:
        raise ValueError(f"no results of model {model!r}{'' if roi is None else f' on {roi}'}; "
                         f"models present: {sorted({r.model for r in results})}")
    return sorted(runs, key=lambda r: r.info.get("seed") or 0)


def verdict(comparison: Comparison) -> str:
    """Plain words for a paired-bootstrap difference A - B: which way its 95% interval points."""
    if comparison.ci_low > 0:
        return f"{comparison.model_a} is reliably better (the whole interval is above 0)"
    if comparison.ci_high < 0:
        return f"{comparison.model_a} is reliably worse (the whole interval is below 0)"
    return "no difference these test images and seeds can detect (the interval contains 0)"


def expected_noisy_r(signal_r, scale, noise_std: float = 1.0):
    """Expected correlation with the response of a prediction of size ``scale`` plus fixed-size noise.

    The prediction of a voxel over the images is ``p = scale * z`` with z standardized (s.d. 1 over
    the images) and correlated ``signal_r`` with the response; noise regularization adds independent
    Gaussian noise of s.d. ``noise_std``. For many images the correlation of ``p + noise`` with the
    response is ``signal_r * scale / sqrt(scale**2 + noise_std**2)``: it approaches ``signal_r`` only
    when the prediction is large next to the noise. Arguments broadcast (numpy); returns float64.
    """
    signal_r, scale = np.asarray(signal_r, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    if noise_std < 0 or np.any(scale < 0):
        raise ValueError(f"scale and noise_std must be >= 0, got scale min {scale.min()}, noise_std {noise_std}")
    total = np.sqrt(scale ** 2 + noise_std ** 2)
    return np.where(total > 0, signal_r * scale / np.where(total > 0, total, 1.0), 0.0)


def rank_correlation(x, y, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple:
    """Spearman rank correlation of ``x`` and ``y`` with a percentile bootstrap interval.

    ``x``, ``y``: ``(V,)`` (one value per voxel) or ``(S, V)`` (one row per model seed). The statistic
    is the mean over rows of each row's rank correlation; each resample draws the voxels with
    replacement (the same voxels for every row) and the rows (seeds) with replacement, so the
    interval covers both. Returns ``(rho, low, high)`` (``n_bootstrap=0``: no interval, NaN bounds).
    """
    from scipy import stats

    x, y = np.atleast_2d(np.asarray(x, dtype=np.float64)), np.atleast_2d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape:
        x, y = np.broadcast_arrays(x, y)
    n_rows, n = x.shape
    if n < 3:
        raise ValueError(f"a rank correlation needs at least 3 voxels, got {n}")

    def rho(rows, cols):
        values = [stats.spearmanr(x[i, cols], y[i, cols]).statistic for i in rows]
        return float(np.nanmean(values))

    observed = rho(range(n_rows), np.arange(n))
    if n_bootstrap < 1:
        return observed, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = [rho(rng.integers(0, n_rows, n_rows), rng.integers(0, n, n)) for _ in range(n_bootstrap)]
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(boot, [alpha, 1 - alpha])
    return observed, float(low), float(high)


def training_seconds(results) -> list:
    """What training cost, per model, from the results' wall times (``info["wall_time_s"]``).

    One row per model: ``seconds_per_roi`` (mean over ROIs and seeds), ``seconds_per_subject`` (all
    its ROIs, mean over seeds, with ``seconds_per_subject_sd`` over seeds), ``ms_per_voxel`` (all ROIs'
    time over all their voxels, mean over seeds), ``n_rois``, ``n_seeds`` and ``device`` (all devices
    seen, so a table shows when models ran on different machines). Results without a wall time are skipped.
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
        rows.append({
            "model": model, "n_rois": len(rois), "n_seeds": len(seeds),
            "seconds_per_roi": float(np.mean([float(r.info["wall_time_s"]) for r in runs])),
            "seconds_per_subject": float(np.mean(totals)),
            "seconds_per_subject_sd": float(np.std(totals, ddof=1)) if len(totals) > 1 else None,
            "ms_per_voxel": float(np.mean([1000 * t / v for t, v in zip(totals, voxels)])),
            "device": ", ".join(sorted({str(r.info.get("device")) for r in runs if r.info.get("device")})),
        })
    return rows
