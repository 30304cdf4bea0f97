"""Is the simulated cortex as learnable as vim-1? The targets, and the oracle that checks them.

An *oracle* model is the best any model could do with the truth: it is given each voxel's true
features (its *basis*, :func:`.simulate.generate_with_basis`), and only has to learn how the voxel
weighs them, by ridge regression on the noisy training responses (:func:`oracle_fit`). If even the
oracle cannot predict an area's voxels, no model comparison can be decided there.
:func:`oracle_report` measures, per ROI, the true noise ceiling and the oracle's accuracy on the
test images; the targets below are what the oracle must reach on the default subject.

The sizes and the noise of the experiment live in :mod:`.measurement` (re-exported here).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import evaluation
from ..device import get_device
from .dataset import EncodingDataset
from .measurement import (  # noqa: F401 - re-exported: the sizes and noise of the experiment
    CORTEX,
    INEFFECTIVE_SNR,
    MAX_TRAIN_IMAGES,
    SNR_SPREAD,
    AreaModel,
    SimulationConfig,
    hemifield_grid,
    measure,
)
from .simulate import generate_with_basis, true_noise_ceiling

# Per ROI: median noise ceiling and fraction of predictable voxels of the default subject.
CALIBRATION_TARGETS = {  # on the true noise ceiling
    "V1": {"median_ceiling": 0.29, "predictable_fraction": 0.52},
    "V2": {"median_ceiling": 0.26, "predictable_fraction": 0.45},
    "V3": {"median_ceiling": 0.23, "predictable_fraction": 0.38},
    "V4": {"median_ceiling": 0.20, "predictable_fraction": 0.30},
    "LO": {"median_ceiling": 0.17, "predictable_fraction": 0.22},
}
BEST_V1_R = 0.8
ORACLE_ALPHAS = tuple(10.0 ** np.arange(-3.0, 4.5, 0.5))  # x the number of training images
VALIDATION_SHARE = 0.2  # the last 20 % of the training images choose each voxel's alpha


def oracle_fit(
    basis_train: np.ndarray, responses: np.ndarray, basis_test: np.ndarray, device=None
) -> np.ndarray:
    """Ridge read-out of each voxel's own features, fitted on training data only: ``(N_test, V)``.

    ``basis_train (N, V, K)``, ``responses (N, V)`` (noisy training responses), ``basis_test
    (N_test, V, K)``. Each voxel's K features are z-scored on the training images; its penalty is
    chosen among :data:`ORACLE_ALPHAS` (times N) by r on the last :data:`VALIDATION_SHARE` of the
    training images (fitted on the rest), then it is refitted on all training images. The test
    split is only predicted, never used.
    """
    device = device or get_device()
    x = torch.as_tensor(np.asarray(basis_train), dtype=torch.float64, device=device).transpose(0, 1)
    z = torch.as_tensor(np.asarray(basis_test), dtype=torch.float64, device=device).transpose(0, 1)
    y = torch.as_tensor(np.asarray(responses), dtype=torch.float64, device=device).T[..., None]
    mean, std = x.mean(1, keepdim=True), x.std(1, keepdim=True).clamp_min(1e-12)
    x, z = (x - mean) / std, (z - mean) / std  # (V, N, K), (V, N_test, K)
    n = x.shape[1]
    n_fit = n - max(int(round(VALIDATION_SHARE * n)), 2)
    alphas = torch.as_tensor(ORACLE_ALPHAS, dtype=torch.float64, device=device)
    fitted = _ridge_predict(x[:, :n_fit], y[:, :n_fit], x[:, n_fit:], alphas * n_fit)
    scores = evaluation.correlation(fitted[..., 0].permute(1, 2, 0), y[:, n_fit:, 0].T)  # (A, V)
    best = alphas[scores.argmax(0)] * n  # (V,)
    prediction = _ridge_predict(x, y, z, best[:, None])  # (V, 1, N_test, 1)
    return prediction[:, 0, :, 0].T.float().cpu().numpy()


def _ridge_predict(x, y, z, alphas):
    """Per voxel ridge with intercept: ``x (V, N, K)``, ``y (V, N, 1)``, ``z (V, M, K)``,
    ``alphas (A,)`` or ``(V, A)`` -> predictions ``(V, A, M, 1)`` (features already z-scored)."""
    y_mean = y.mean(1, keepdim=True)
    x_mean = x.mean(1, keepdim=True)
    xc = x - x_mean
    gram = xc.transpose(1, 2) @ xc  # (V, K, K)
    evals, evecs = torch.linalg.eigh(gram)
    proj = evecs.transpose(1, 2) @ (xc.transpose(1, 2) @ (y - y_mean))  # (V, K, 1)
    alphas = alphas.expand(x.shape[0], -1) if alphas.ndim == 1 else alphas  # (V, A)
    filt = 1.0 / (evals[:, None, :] + alphas[..., None])  # (V, A, K)
    weights = evecs[:, None] @ (filt[..., None] * proj[:, None])  # (V, A, K, 1)
    return (z - x_mean)[:, None] @ weights + y_mean[:, None]


def oracle_report(
    subject: int = 1,
    profile: str | SimulationConfig = "default",
    seed: int = 0,
    ground_truth: str = "cortex",
) -> dict:
    """Per ROI, how far the truth itself gets on the simulated test images (no cache: it simulates).

    Returns ``{roi: {...}}`` with ``median_true_ceiling`` (:func:`.simulate.true_noise_ceiling`),
    ``frac_predictable`` (share of voxels whose true ceiling exceeds the p < 0.001 threshold of r
    over the test images, :func:`evaluation.significance_threshold`), ``oracle_median_r``,
    ``oracle_best_r`` (99th percentile), ``oracle_frac_significant`` (share of voxels whose oracle
    r on the mean test responses exceeds that threshold), ``oracle_frac_of_ceiling`` (median over
    the effective voxels of oracle r / true ceiling), ``n_voxels`` and ``threshold``.
    """
    config = (
        profile if isinstance(profile, SimulationConfig) else SimulationConfig.for_profile(profile)
    )
    config.check()
    dataset, basis = generate_with_basis(config, subject, seed, ground_truth=ground_truth)
    return oracle_table(dataset, basis)


def oracle_table(dataset: EncodingDataset, basis: dict) -> dict:
    """:func:`oracle_report`'s table for a simulated dataset and its basis."""
    threshold = evaluation.significance_threshold(dataset.test.n_images, p=1e-3)
    out = {}
    for roi in dataset.rois:
        prediction = oracle_fit(
            basis["train"][roi], dataset.train.responses[roi], basis["test"][roi]
        )
        r = np.asarray(evaluation.pearson_r(prediction, dataset.test.responses[roi]), np.float64)
        ceiling = true_noise_ceiling(dataset, roi)
        effective = np.asarray(dataset.voxels[roi].extra["effective"], dtype=bool)
        out[roi] = {
            "n_voxels": int(r.size),
            "threshold": threshold,
            "median_true_ceiling": float(np.median(ceiling)),
            "frac_predictable": float(np.mean(ceiling > threshold)),
            "oracle_median_r": float(np.median(r)),
            "oracle_best_r": float(np.quantile(r, 0.99)),
            "oracle_frac_significant": float(np.mean(r > threshold)),
            "oracle_frac_of_ceiling": float(np.median(r[effective] / ceiling[effective])),
        }
    return out


def calibration_summary(dataset: EncodingDataset) -> dict:
    """Per ROI, what :data:`CALIBRATION_TARGETS` describes, measured on ``dataset``'s test images.

    Returns ``{roi: {"median_ceiling", "predictable_fraction", "estimated_median_ceiling",
    "estimated_predictable_fraction", "target_median_ceiling", "target_predictable_fraction"}}``:
    the median true noise ceiling (:func:`.simulate.true_noise_ceiling`) and the share of voxels
    whose ceiling exceeds the p < 0.001 threshold of r over the test images
    (:func:`evaluation.significance_threshold`); the ``estimated_`` pair is the same from the
    ceiling estimated from the repeats alone (:func:`evaluation.noise_ceiling`), as an experiment
    sees it.
    """
    threshold = evaluation.significance_threshold(dataset.test.n_images, p=1e-3)
    out = {}
    for roi in dataset.rois:
        ceiling = true_noise_ceiling(dataset, roi)
        estimated = np.asarray(
            evaluation.noise_ceiling(dataset.test.repeats[roi]), dtype=np.float64
        )
        target = CALIBRATION_TARGETS.get(roi, {})
        out[roi] = {
            "median_ceiling": float(np.median(ceiling)),
            "predictable_fraction": float(np.mean(ceiling > threshold)),
            "estimated_median_ceiling": float(np.median(estimated)),
            "estimated_predictable_fraction": float(np.mean(estimated > threshold)),
            "target_median_ceiling": target.get("median_ceiling"),
            "target_predictable_fraction": target.get("predictable_fraction"),
        }
    return out
