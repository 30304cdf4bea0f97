"""Evaluation: per-voxel metrics against scipy, ceilings against known truth, bootstrap and
permutation sanity."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from etecrm_lib import evaluation as ev
from etecrm_lib.data import from_arrays


def test_pearson_r_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
    y[:, 0] += 2 * x[:, 0]
    r = ev.pearson_r(x, y)
    expected = [stats.pearsonr(x[:, v], y[:, v])[0] for v in range(7)]
    np.testing.assert_allclose(r, expected, atol=1e-6)
    # torch in, torch out, same numbers
    np.testing.assert_allclose(
        ev.pearson_r(torch.tensor(x), torch.tensor(y)).numpy(), expected, atol=1e-6
    )


def test_pearson_r_constant_column_is_zero_not_nan():
    x = np.ones((10, 2))
    y = np.random.default_rng(1).normal(size=(10, 2))
    assert np.all(ev.pearson_r(x, y) == 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["predictions", "responses"])
def test_pearson_r_refuses_non_finite_input_instead_of_r_zero(bad, where):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    (x if where == "predictions" else y)[3, 2] = bad
    n_nan, n_inf = (1, 0) if np.isnan(bad) else (0, 1)
    message = (
        rf"{where} contain {n_nan} NaN and {n_inf} inf values, in 1 of 4 columns "
        r"\(voxels\), the first being "
        r"column 2: Pearson r is undefined for those voxels \(it is not 0\)"
    )
    with pytest.raises(ValueError, match=message):
        ev.pearson_r(x, y)
    with pytest.raises(ValueError, match=message):
        ev.pearson_r(torch.tensor(x), torch.tensor(y))


def test_score_refuses_diverged_predictions_and_names_model_and_roi():
    ds, good, _ = _dataset_and_two_models()
    predictions = good.predictions.copy()
    predictions[:, :3] = np.nan
    with pytest.raises(
        ValueError,
        match=r"the predictions of model 'etecrm' for ROI 'V1' contain 240 NaN and 0 inf "
        r"values, in 3 of 150 columns .* diverged in training",
    ):
        ev.score(predictions, ds, "V1", "etecrm")
    flat = ev.score(
        np.full_like(predictions, 0.5), ds, "V1", "flat"
    )  # finite and constant: r = 0, as documented
    assert np.all(flat.test_r == 0)


def test_pearson_r_does_not_depend_on_the_units():
    """r is unchanged by scaling (no absolute epsilon) and stays finite for huge values (no
    overflow)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 5)), rng.normal(size=(50, 5))
    y += x
    r = ev.pearson_r(x, y)
    for scale in (1e-7, 1e-20, 1e20, 1e200):
        np.testing.assert_allclose(ev.pearson_r(x * scale, y * scale), r, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ev.pearson_r(x * 1e-150, y * 1e150), r, rtol=1e-6, atol=1e-7)


def test_pearson_r_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must both be"):
        ev.pearson_r(np.zeros((5, 3)), np.zeros((5, 4)))


def test_noise_ceiling_matches_oracle_on_known_signal():
    """With many images the estimate must approach the analytic ceiling sqrt(s2 / (s2 + n2 / R))."""
    rng = np.random.default_rng(2)
    n_img, n_rep = 4000, 10
    signal_sd = np.array([0.0, 0.3, 1.0, 3.0])
    signal = rng.normal(size=(n_img, 4)) * signal_sd
    repeats = signal[None] + rng.normal(size=(n_rep, n_img, 4))
    analytic = np.sqrt(signal_sd**2 / (signal_sd**2 + 1.0 / n_rep))
    estimated = ev.noise_ceiling(repeats)
    # compare squared ceilings (explainable variance): the square root is steep near zero
    np.testing.assert_allclose(estimated**2, analytic**2, atol=0.01)
    np.testing.assert_allclose(estimated[1:], analytic[1:], atol=0.03)
    oracle = ev.oracle_ceiling(signal[:, 1:], repeats.mean(0)[:, 1:])
    np.testing.assert_allclose(oracle, analytic[1:], atol=0.03)


def test_noise_ceiling_needs_two_repeats():
    with pytest.raises(ValueError, match="R >= 2"):
        ev.noise_ceiling(np.zeros((1, 5, 3)))


def test_significance_threshold_matches_scipy_pvalue():
    thr = ev.significance_threshold(120, p=1e-3)
    # a correlation exactly at the threshold has a one-sided p of 1e-3
    t = thr * np.sqrt(118 / (1 - thr**2))
    assert stats.t.sf(t, df=118) == pytest.approx(1e-3, rel=1e-6)


def _dataset_and_two_models(seed=0, n_test=80, n_vox=150):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(n_test, n_vox))
    repeats = truth[None] + 1.5 * rng.normal(size=(5, n_test, n_vox))
    ds = from_arrays(
        rng.uniform(size=(10, 8, 8)),
        {"V1": rng.normal(size=(10, n_vox))},
        rng.uniform(size=(n_test, 8, 8)),
        test_repeats={"V1": repeats},
        test_oracle={"V1": truth},
        name="toy",
    )
    good = truth + 0.8 * rng.normal(size=truth.shape)
    bad = truth + 3.0 * rng.normal(size=truth.shape)
    return ds, ev.score(good, ds, "V1", "good"), ev.score(bad, ds, "V1", "bad")


def test_score_and_summary():
    ds, good, bad = _dataset_and_two_models()
    assert good.n_voxels == 150 and good.dataset == "toy"
    np.testing.assert_allclose(good.test_r, ev.pearson_r(good.predictions, ds.test.responses["V1"]))
    row = good.summary(top_n=50)
    assert row["median_r"] > bad.summary()["median_r"]
    assert row["top50_mean_r"] >= row["median_r"]
    assert 0 < row["frac_ceiling"] < 1.2
    assert row["n_significant"] > bad.summary()["n_significant"]
    with pytest.raises(ValueError, match="expected"):
        ev.score(np.zeros((3, 150)), ds, "V1", "wrong")
    with pytest.raises(KeyError, match="available ROIs"):
        ev.score(good.predictions, ds, "V9", "x")


def test_fraction_of_ceiling_is_one_for_the_oracle():
    ds, _, _ = _dataset_and_two_models()
    oracle_model = ev.score(ds.test.oracle["V1"], ds, "V1", "oracle")
    assert oracle_model.summary()["frac_oracle_ceiling"] == pytest.approx(1.0, abs=1e-6)


def test_paired_bootstrap_detects_the_better_model_and_not_a_tie():
    ds, good, bad = _dataset_and_two_models()
    y = ds.test.responses["V1"]
    cmp = ev.paired_bootstrap(good, bad, y, n_bootstrap=500)
    assert cmp.a_beats_b and cmp.ci_low > 0 and cmp.p_a_not_better < 0.01
    assert cmp.ci_low <= cmp.difference <= cmp.ci_high
    same = ev.paired_bootstrap(good, good, y, n_bootstrap=200)
    assert same.difference == 0 and same.ci_low == 0 and same.ci_high == 0
    swapped = ev.paired_bootstrap(bad, good, y, statistic="top_n_mean_r", top_n=30, n_bootstrap=300)
    assert swapped.ci_high < 0 and not swapped.a_beats_b


def test_paired_bootstrap_on_chosen_voxels_equals_the_bootstrap_of_those_columns():
    ds, good, bad = _dataset_and_two_models()
    y = ds.test.responses["V1"]
    voxels = np.array([3, 17, 40, 41, 99])
    on_subset = ev.paired_bootstrap(good, bad, y, "top_n_mean_r", n_bootstrap=300, voxels=voxels)
    cut = lambda res: dataclasses.replace(res, predictions=res.predictions[:, voxels])  # noqa: E731
    # the same columns cut out beforehand: the ROI's responses restricted to the chosen voxels
    direct = ev.paired_bootstrap(
        cut(good), cut(bad), y[:, voxels], "mean_r", n_bootstrap=300, top_n=len(voxels)
    )
    assert on_subset.difference == pytest.approx(direct.difference, abs=1e-9)
    assert (on_subset.ci_low, on_subset.ci_high) == pytest.approx((direct.ci_low, direct.ci_high))
    r_good = ev.pearson_r(good.predictions, y)[voxels].mean()
    r_bad = ev.pearson_r(bad.predictions, y)[voxels].mean()
    assert on_subset.difference == pytest.approx(r_good - r_bad, abs=1e-6)


def test_resampled_correlation_with_unit_weights_equals_pearson():
    rng = np.random.default_rng(5)
    x, y = torch.tensor(rng.normal(size=(30, 4))), torch.tensor(rng.normal(size=(30, 4)))
    ones = torch.ones(1, 30, dtype=torch.float64)
    np.testing.assert_allclose(
        ev.correlation(x, y, ones)[0].numpy(), ev.pearson_r(x, y).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(ev.correlation(x, y).numpy(), ev.pearson_r(x, y).numpy(), atol=1e-6)
    # integer weights = duplicated rows
    w = torch.zeros(1, 30, dtype=torch.float64)
    w[0, :10] = 2
    dup = torch.cat([x[:10], x[:10]]), torch.cat([y[:10], y[:10]])
    np.testing.assert_allclose(
        ev.correlation(x, y, w)[0].numpy(), ev.pearson_r(*dup).numpy(), atol=1e-6
    )


def test_resampled_correlation_does_not_depend_on_units():
    """r under bootstrap resamples is scale-free: responses in tiny or huge units give the same r
    (no absolute threshold)."""
    rng = np.random.default_rng(6)
    x = torch.tensor(rng.normal(size=(40, 5)))
    y = x + torch.tensor(rng.normal(size=(40, 5)))
    counts = ev.image_resamples(40, 20, torch.Generator().manual_seed(0))
    r = ev.correlation(x, y, counts)
    assert r.abs().min() > 0.05
    for scale_x, scale_y in [(1.0, 1e-5), (1e-5, 1e-5), (1e-7, 1e-7), (1e5, 1e-9)]:
        np.testing.assert_allclose(
            ev.correlation(x * scale_x, y * scale_y, counts).numpy(), r.numpy(), rtol=1e-9
        )
    # the bootstrap interval of a model is the same in any units of the responses
    ds, good, _ = _dataset_and_two_models(n_vox=40)
    y_test = ds.test.responses["V1"]
    scaled = ev.EncodingResult(
        "good", "V1", "toy", 1, good.test_r, predictions=good.predictions * 1e-5
    )
    assert ev.bootstrap_interval(scaled, y_test * 1e-5, n_bootstrap=200) == pytest.approx(
        ev.bootstrap_interval(good, y_test, n_bootstrap=200), abs=1e-6
    )  # float32 inputs
    # a column constant within a resample (or overall) gets r = 0, whatever its units
    flat = torch.zeros(1, 40, dtype=torch.float64)
    flat[0, 3] = 40
    assert torch.all(ev.correlation(x * 1e-7, y * 1e-7, flat) == 0)


def test_roi_statistic_and_default_top_n():
    r = np.array([0.1, 0.5, -0.2, 0.3])
    assert ev.roi_statistic(r, "median_r") == pytest.approx(np.median(r))
    assert ev.roi_statistic(r, "mean_r") == pytest.approx(np.mean(r))
    assert ev.roi_statistic(r, "top_n_mean_r", 2) == pytest.approx(0.4)
    assert ev.roi_statistic(r, "top_n_mean_r", 100) == pytest.approx(
        np.mean(r)
    )  # fewer voxels than N: all
    batch = torch.tensor(np.stack([r, 2 * r]))
    np.testing.assert_allclose(
        ev.roi_statistic(batch, "median_r").numpy(), [np.median(r), 2 * np.median(r)]
    )
    with pytest.raises(ValueError, match="statistic must be one of"):
        ev.roi_statistic(r, "max_r")
    assert (
        ev.default_top_n(50) == 50
        and ev.default_top_n(5000) == ev.TOP_N
        and ev.default_top_n(0) == 1
    )


def test_verdict_reads_the_interval():
    def cmp(low, high):
        return ev.Comparison("a", "b", "V1", "median_r", (low + high) / 2, low, high, 0.5, 100)

    assert [
        ev.verdict(cmp(*ci), short=True)
        for ci in [(0.01, 0.1), (-0.1, -0.01), (0.0, 0.1), (-0.1, 0.0)]
    ] == ["better", "worse", "no reliable difference", "no reliable difference"]
    assert cmp(0.01, 0.1).a_beats_b and cmp(-0.1, -0.01).b_beats_a and not cmp(-0.1, 0.1).b_beats_a
    assert ev.verdict(cmp(0.01, 0.1)).startswith("a is reliably better")


def test_verdict_summary_groups_rois_by_verdict_with_their_intervals():
    def cmp(roi, low, high, a="a"):
        return ev.Comparison(a, "b", roi, "median_r", (low + high) / 2, low, high, 0.5, 100)

    from etecrm_lib.comparisons import verdict_summary

    lines = verdict_summary(
        [
            cmp("V1", 0.01, 0.03),
            cmp("V2", -0.02, 0.02),
            cmp("V3", 0.02, 0.04),
            cmp("V1", -0.3, -0.1, a="c"),
        ],
        label="subject 1",
    )
    assert lines == [
        "subject 1, a - b (median_r):\n  better in V1 (+0.020 [+0.010, +0.030]), V3 "
        "(+0.030 [+0.020, +0.040]);\n"
        "  no reliable difference in V2 (+0.000 [-0.020, +0.020])",
        "subject 1, c - b (median_r):\n  worse in V1 (-0.200 [-0.300, -0.100])",
    ]
    assert verdict_summary([]) == []


def test_bootstrap_statistics_match_the_summary_with_an_even_voxel_count():
    ds, good, bad = _dataset_and_two_models(n_vox=150)
    cmp = ev.paired_bootstrap(good, bad, ds.test.responses["V1"], n_bootstrap=100)
    assert cmp.difference == pytest.approx(
        good.summary()["median_r"] - bad.summary()["median_r"], abs=1e-6
    )


def test_borderline_verdicts_and_collapsed_results():
    """A bound within 0.001 of 0 makes a verdict borderline; constant predictions: collapsed."""
    from etecrm_lib.comparisons import BORDERLINE, borderline, verdict_label
    from etecrm_lib.evaluation import COLLAPSE_FRACTION, Comparison, EncodingResult

    def comparison(low, high):
        return Comparison("a", "b", "V1", "median_r", (low + high) / 2, low, high, 0.5, 100)

    assert verdict_label(comparison(0.01, 0.05)) == "better"
    assert verdict_label(comparison(BORDERLINE / 2, 0.05)) == "better, borderline"
    assert verdict_label(comparison(-0.05, -BORDERLINE / 10)) == "worse, borderline"
    assert verdict_label(comparison(-0.0004, 0.05)) == "no reliable difference, borderline"
    assert not borderline(comparison(-0.05, 0.05))
    # a constant prediction scores r == 0 exactly (pearson_r's rule): four dead read-out units
    rng = np.random.default_rng(0)
    y, predictions = rng.normal(size=(2, 40, 20))
    predictions[:, :4] = 2.5
    dead = EncodingResult("m", "V1", "sim", 1, ev.pearson_r(predictions, y))
    assert dead.constant_fraction == 0.2 and dead.collapsed == (0.2 >= COLLAPSE_FRACTION)
    noisy = predictions + rng.normal(size=(40, 20))
    alive = EncodingResult("m", "V1", "sim", 1, ev.pearson_r(noisy, y))
    assert alive.constant_fraction == 0.0 and not alive.collapsed
    val = EncodingResult("m", "V1", "sim", 1, np.full(20, 0.2), info={"val_r": np.zeros(20)})
    assert val.constant_fraction == 1.0 and val.collapsed
