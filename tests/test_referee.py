"""Referee statistics: top-N without test data, the no-information floor, Holm, undecidable ROIs."""

import numpy as np
import pytest

from etecrm_lib import referee
from etecrm_lib.data.calibration import decidable_rois
from etecrm_lib.evaluation import Comparison


def test_top_n_by_validation_averages_the_test_r_of_the_best_validation_voxels():
    test_r = np.array([0.1, 0.9, 0.2, 0.4])
    val_r = np.array([0.5, 0.0, 0.3, 0.6])
    assert referee.top_n_by_validation(test_r, val_r, top_n=2) == pytest.approx((0.4 + 0.1) / 2)
    assert referee.top_n_by_validation(test_r, val_r, top_n=10) == pytest.approx(0.4)
    np.testing.assert_array_equal(referee.shared_top_n(val_r, val_r[::-1], 2), [0, 3])
    with pytest.raises(ValueError, match="finite"):
        referee.top_n_by_validation(test_r, np.array([0.1, np.nan, 0.2, 0.3]))


def test_the_floor_of_test_selected_top_n_is_above_zero_and_of_validation_selected_is_not():
    """The issue's example: 400 voxels, 120 test images, top 300 by test r: a model without any
    information scores about 0.04 (the expected mean of the top 75 % of null r); ranked by an
    independent validation r it scores about 0."""
    responses = np.random.default_rng(0).normal(size=(120, 400))
    on_test = referee.no_information_floor(responses, top_n=300, select="test", n_draws=50)
    on_val = referee.no_information_floor(responses, top_n=300, select="validation", n_draws=50)
    assert 0.03 < on_test["mean"] < 0.05 and on_test["p95"] > on_test["mean"]
    assert abs(on_val["mean"]) < 0.005
    median = referee.no_information_floor(responses, statistic="median_r", n_draws=50)
    assert abs(median["mean"]) < 0.005


def _structured_responses(n_test, n_voxels, seed=0):
    """Responses like measured ones: a shared low-rank signal (voxels correlated), heavy-tailed
    noise, voxels of very different scales and offsets, one voxel with an outlier image."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_t(3, size=(n_test, 4)) @ rng.normal(size=(4, n_voxels))
    y = signal + rng.standard_t(4, size=(n_test, n_voxels))
    y = y * rng.uniform(0.01, 100, size=n_voxels) + rng.normal(0, 50, size=n_voxels)
    y[7, 0] += 1e4
    return y


@pytest.mark.parametrize(
    "statistic, select",
    [("median_r", "test"), ("top_n_mean_r", "validation"), ("top_n_mean_r", "test")],
)
def test_the_floor_from_sizes_agrees_with_the_floor_on_responses(statistic, select):
    """Noise against real-like responses and r drawn from the null distribution give the same floor
    (within Monte-Carlo error): the floor needs only N_test and V, not the responses."""
    n_test, n_voxels, top_n = 60, 350, 300
    on_responses = referee.no_information_floor(
        _structured_responses(n_test, n_voxels), statistic, top_n, select, n_draws=300, seed=1
    )
    from_sizes = referee.floor_from_sizes(n_test, n_voxels, statistic, top_n, select, 2000, 2)
    sd = max(on_responses["sd"], from_sizes["sd"])
    assert on_responses["sd"] == pytest.approx(from_sizes["sd"], rel=0.2)
    se_mean = sd * np.sqrt(1 / 300 + 1 / 2000)
    assert abs(on_responses["mean"] - from_sizes["mean"]) < 4 * se_mean
    assert abs(on_responses["p95"] - from_sizes["p95"]) < 4 * 2.1 * se_mean  # s.e. of a p95


def test_the_floor_from_sizes_has_the_known_null_distribution_of_r():
    """One voxel: r between noise and a fixed vector has mean 0 and s.d. 1/sqrt(N - 1); its p95 is
    the one-sided 5 % critical value of r (t test with N - 2 degrees of freedom)."""
    from scipy import stats

    n = 8  # small, so that 1/sqrt(N - 1) and 1/sqrt(N) differ by 7 %
    one = referee.floor_from_sizes(n, 1, "mean_r", n_draws=40_000, seed=0)
    assert abs(one["mean"]) < 4 / np.sqrt(n - 1) / 200
    assert one["sd"] == pytest.approx(1 / np.sqrt(n - 1), rel=0.02)
    t = stats.t.ppf(0.95, n - 2)
    assert one["p95"] == pytest.approx(t / np.sqrt(n - 2 + t * t), rel=0.03)
    assert referee.floor_from_sizes(n, 400, "top_n_mean_r", 300, "test", 200)["mean"] > 0.04
    with pytest.raises(ValueError, match="n_test >= 3"):
        referee.floor_from_sizes(2, 10)
    with pytest.raises(ValueError, match="select"):
        referee.floor_from_sizes(30, 10, select="train")


def test_holm_adjusts_step_down_and_keeps_the_order():
    adjusted = referee.holm([0.01, 0.04, 0.03, 0.5])
    # sorted: 0.01 x 4 = 0.04, 0.03 x 3 = 0.09, 0.04 x 2 = 0.08 -> running max 0.09, 0.5 x 1 = 0.5
    np.testing.assert_allclose(adjusted, [0.04, 0.09, 0.09, 0.5])
    assert referee.holm([0.9, 0.8])[0] == 1.0
    with pytest.raises(ValueError):
        referee.holm([0.2, 1.5])


def _comparison(roi, difference, p_not_better):
    return Comparison("a", "b", roi, "median_r", difference, -0.1, 0.1, p_not_better, 1000)


def test_holm_verdicts_give_words_per_roi_and_undecidable_where_the_oracle_fails():
    family = [
        _comparison("V1", 0.05, 0.001),  # two-sided p 0.002 -> x3 = 0.006: better
        _comparison("V2", -0.04, 0.995),  # p 0.01 -> x2 = 0.02: worse
        _comparison("V3", 0.02, 0.03),  # p 0.06: no reliable difference
        _comparison("LO", 0.01, 0.001),  # the oracle cannot decide LO
    ]
    oracle = {
        roi: {"oracle_frac_of_ceiling": 0.95, "oracle_frac_significant": 0.4}
        for roi in ("V1", "V2", "V3")
    }
    oracle["LO"] = {"oracle_frac_of_ceiling": 0.6, "oracle_frac_significant": 0.13}
    decidable = decidable_rois(oracle)
    assert decidable == {"V1": True, "V2": True, "V3": True, "LO": False}
    words = referee.holm_verdicts(family, decidable=decidable)
    assert {roi: w["verdict"] for roi, w in words.items()} == {
        "V1": "better",
        "V2": "worse",
        "V3": "no reliable difference",
        "LO": referee.UNDECIDABLE,
    }
    assert words["V1"]["p_holm"] == pytest.approx(0.006)


def test_family_summary_and_the_claim_follow_the_holm_verdicts():
    family = [
        _comparison("V1", 0.05, 0.001),
        _comparison("V2", -0.04, 0.995),
        _comparison("V3", 0.02, 0.03),
    ]
    (line,) = referee.family_summary(family, "subject 1")
    assert line.startswith("subject 1, a - b (median_r), Holm over 3 ROIs: better in V1 (+0.050)")
    assert "worse in V2 (-0.040)" in line and "no reliable difference in V3 (+0.020)" in line
    words = referee.holm_verdicts(family)
    assert referee.claim_verdict(words) == "holds in part"
    assert referee.claim_verdict({"V1": words["V1"]}) == "holds"
    assert referee.claim_verdict({"V2": words["V2"]}) == "is not borne out"
    assert referee.claim_verdict({}) == referee.UNDECIDABLE


def test_forecast_summary_says_where_more_data_favours_a():
    def row(roi, values):
        sizes = (250, 1000, 7000)
        diffs = [
            {"n_train": n, "difference": d, "ci_low": d - 0.01, "ci_high": d + 0.01}
            for n, d in zip(sizes, values)
        ]
        return {"roi": roi, "model_a": "etecrm", "model_b": "gwp_ridge", "differences": diffs}

    lines = referee.forecast_summary([row("V1", (0.0, 0.02, 0.05)), row("LO", (0.03, 0.0, -0.02))])
    assert lines[0].startswith("V1: etecrm - gwp_ridge is reliably positive at 2 of 3 sizes")
    assert "reliably negative at 1 (7000)" in lines[1]
    assert lines[-1].startswith("The forecast that more data favours etecrm is borne out in V1 ")
