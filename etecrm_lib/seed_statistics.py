"""Statistics that :mod:`etecrm_lib.evaluation` leaves to this sibling (its size cap).

Every statistic of the library lives in ``evaluation`` or here; experiments and tables only call
them. Here: the seed ensemble (predictions of several model seeds averaged after standardizing each,
:func:`seed_ensemble`), the bootstrap over test images *and* model seeds of the learning curves
(:func:`images_and_seeds_bootstrap`) and the winner of a control cortex (:func:`control_winner`).
(The paired bootstrap of two models and the verdict words are in ``evaluation``.)
"""

from __future__ import annotations

import numpy as np
import torch

from .evaluation import image_resamples, pearson_r, resampled_statistic, roi_statistic
from .resampling import check_resamples


def standardized(predictions) -> np.ndarray:
    """``(N, V)`` predictions with mean 0 and s.d. 1 per voxel (constant voxels: 0), float64."""
    p = np.asarray(predictions, dtype=np.float64)
    p = p - p.mean(axis=0)
    sd = p.std(axis=0)
    return np.divide(p, sd, out=np.zeros_like(p), where=sd > 0)


def seed_ensemble(predictions) -> np.ndarray:
    """The seed ensemble of ``(N_test, V)`` predictions, one per model seed -> ``(N_test, V)``.

    Each seed's predictions are first standardized per voxel (over the test images: its own mean and
    s.d., no test responses involved): a correlation-trained network predicts in arbitrary units,
    and averaging raw predictions would let the seed with the largest scale decide.
    """
    return np.mean([standardized(p) for p in predictions], axis=0)


def images_and_seeds_bootstrap(predictions: dict, responses, n_bootstrap: int, seed: int) -> dict:
    """Bootstrap median r over test images and model seeds, the same resamples for every key.

    ``predictions``: ``{key: [(N_test, V) per model seed]}`` (e.g. key = (model, train-set size)).
    Returns ``{key: (observed, (B,) resampled)}`` where a statistic is the mean over (resampled)
    seeds of the median over voxels of r over the (resampled) test images. Every key uses the same
    image resamples and the same seed draws (``draw % n_seeds`` for a key with fewer seeds), so
    differences between keys are paired.
    """
    n_bootstrap = check_resamples(n_bootstrap)
    gen = torch.Generator().manual_seed(seed)
    counts = image_resamples(np.shape(responses)[0], n_bootstrap, gen)
    n_seeds = max(len(preds) for preds in predictions.values())
    seed_draws = torch.randint(0, n_seeds, (n_bootstrap, n_seeds), generator=gen)
    out = {}
    for key, preds in predictions.items():
        observed, resampled = [], []
        for pred in preds:
            observed.append(roi_statistic(pearson_r(pred, responses), "median_r"))
            resampled.append(resampled_statistic(pred, responses, counts, "median_r"))
        resampled = torch.stack(resampled, dim=1)  # (B, seeds of this key)
        pick = seed_draws % resampled.shape[1]
        out[key] = (float(np.mean(observed)), resampled.gather(1, pick).mean(1).numpy())
    return out


def control_winner(ci_low: float, ci_high: float, a: str = "gwp_ridge", b: str = "etecrm") -> str:
    """Which model wins a control cortex, from the 95% interval of ``a - b``: ``a`` if the
    interval lies above 0, ``b`` if below, else "undecided" (the interval decides, not the point
    estimate: a percentile interval may leave its point estimate out)."""
    return a if ci_low > 0 else b if ci_high < 0 else "undecided"
