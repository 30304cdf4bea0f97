"""The identifiability gate: the oracle read-out (known answers) and ``oracle_report`` (quick size).

The default-profile gate itself (every ROI, three simulation seeds) is the slow test at the end.
"""

import numpy as np
import pytest

from etecrm_lib import evaluation
from etecrm_lib.data.calibration import (
    BEST_V1_R,
    CALIBRATION_TARGETS,
    SimulationConfig,
    committed_oracle_report,
    decidable_rois,
    gate_failures,
    oracle_fit,
    oracle_report,
)
from etecrm_lib.data.simulate import GENERATOR_VERSION

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


def test_the_gate_names_what_fails():
    row = {"oracle_frac_of_ceiling": 0.9, "oracle_frac_significant": 0.4}
    passing = {"V1": dict(row, oracle_frac_significant=0.5), "LO": row}
    assert gate_failures(passing) == []
    failing = {
        "V1": row,
        "V4": dict(row, oracle_frac_of_ceiling=0.6),
        "LO": dict(row, oracle_frac_significant=0.2),
    }
    messages = " ".join(gate_failures(failing))
    assert "V4: the oracle reaches 0.60" in messages and "LO: the oracle predicts 20%" in messages
    rising = {"V1": row, "LO": dict(row, oracle_frac_significant=0.45)}
    assert "does not fall" in " ".join(gate_failures(rising))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_subject_passes_the_identifiability_gate(seed):
    """The default profile (vim-1 sizes): the gate, and each ROI within 0.06 of its target share;
    the oracle's best V1 voxels near vim-1's best (within 0.08)."""
    table = oracle_report(subject=1, profile="default", seed=seed)
    assert gate_failures(table) == []
    for roi, target in CALIBRATION_TARGETS.items():
        share = table[roi]["oracle_frac_significant"]
        assert abs(share - target["oracle_frac_significant"]) < 0.06, (roi, share)
    assert abs(table["V1"]["oracle_best_r"] - BEST_V1_R) < 0.1


def test_the_committed_oracle_tables_are_of_this_generator_and_pass_the_gate():
    """data/calibration/oracle_report.json (chapter 1 reads it) was made by the current generator
    on the default profile, seeds 0-2, with the current targets, and passes the gate on each seed;
    the previous generator's tables, kept beside it, failed it in V4 and LO."""
    report = committed_oracle_report()
    assert report is not None
    assert report["generator_version"] == GENERATOR_VERSION and report["profile"] == "default"
    assert report["targets"] == CALIBRATION_TARGETS
    assert sorted(report["tables"], key=int) == ["0", "1", "2"]
    for table in report["tables"].values():
        assert gate_failures(table) == []
        assert abs(table["V1"]["oracle_best_r"] - BEST_V1_R) < 0.1
    previous = report["previous_generator"]
    assert previous["generator_version"] < GENERATOR_VERSION
    for table in previous["tables"].values():
        assert not decidable_rois(table)["V4"] and not decidable_rois(table)["LO"]
