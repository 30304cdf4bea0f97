"""The identifiability gate: the oracle read-out (known answers) and ``oracle_report`` (quick size).

The default-profile gate itself (every ROI, three simulation seeds) is the slow test at the end.
"""

import numpy as np
import pytest

from etecrm_lib import evaluation
from etecrm_lib.data.calibration import (
    CALIBRATION_TARGETS,
    SimulationConfig,
    oracle_fit,
    oracle_report,
)

KEYS = {
    "n_voxels",
    "threshold",
    "median_true_ceiling",
    "frac_predictable",
    "oracle_median_r",
    "oracle_best_r",
    "oracle_frac_significant",
    "oracle_frac_of_ceiling",
}


def _linear_voxels(n, n_voxels, k, noise, rng):
    basis = rng.normal(size=(n, n_voxels, k))
    weights = rng.normal(size=(n_voxels, k))
    signal = np.einsum("nvk,vk->nv", basis, weights)
    return basis, signal, signal + noise * signal.std(0) * rng.normal(size=signal.shape)


def test_oracle_fit_recovers_a_known_linear_readout_from_noisy_training_data():
    rng = np.random.default_rng(0)
    basis, signal, noisy = _linear_voxels(600, 30, 4, noise=2.0, rng=rng)
    prediction = oracle_fit(basis[:500], noisy[:500], basis[500:])
    r = np.asarray(evaluation.pearson_r(prediction, signal[500:]))
    assert prediction.shape == (100, 30)
    assert np.median(r) > 0.95  # 4 weights from 500 noisy images: almost exact


def test_oracle_fit_on_pure_noise_predicts_nothing_and_never_sees_the_test_responses():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(400, 200, 3))
    noise = rng.normal(size=(400, 200))
    prediction = oracle_fit(basis[:300], noise[:300], basis[300:])
    r = np.asarray(evaluation.pearson_r(prediction, noise[300:]))
    assert abs(np.mean(r)) < 0.03  # chance: mean r over 200 voxels about 0 +- 0.007
    # the same training data give the same prediction whatever the test responses are
    again = oracle_fit(basis[:300], noise[:300], basis[300:])
    np.testing.assert_allclose(prediction, again, rtol=1e-6)


@pytest.fixture(scope="module")
def small_report():
    config = SimulationConfig(
        name="oracle-test", image_size=64, n_train=300, n_test=40, voxels={"V1": 80, "LO": 60}
    )
    return oracle_report(subject=1, profile=config, seed=0)


def test_oracle_report_has_every_number_per_roi_and_they_are_consistent(small_report):
    assert list(small_report) == ["V1", "LO"]
    for roi, row in small_report.items():
        assert set(row) == KEYS
        assert row["threshold"] == pytest.approx(evaluation.significance_threshold(40, 1e-3))
        assert 0 < row["median_true_ceiling"] < 1 and 0 <= row["frac_predictable"] <= 1
        assert 0 <= row["oracle_frac_significant"] <= 1
        assert row["oracle_median_r"] <= row["oracle_best_r"] < 1
        # the oracle is a model: on average it cannot beat the truth
        assert row["oracle_frac_of_ceiling"] < 1.1
    # V1's read-out of its own features is learnable even from 300 images
    assert small_report["V1"]["oracle_frac_of_ceiling"] > 0.5


def test_calibration_targets_name_every_roi_and_fall_from_v1_to_lo():
    rois = list(CALIBRATION_TARGETS)
    assert rois == ["V1", "V2", "V3", "V4", "LO"]
    for key in CALIBRATION_TARGETS["V1"]:
        values = [CALIBRATION_TARGETS[roi][key] for roi in rois]
        assert values == sorted(values, reverse=True), key
