"""The helpers chapters 4-8 use: noisy-prediction correlation, rank correlation over voxels and
seeds, training cost from wall times, seed runs and verdicts, and their figures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from etecrm_lib import controls, evaluation, tables, training_plots
from etecrm_lib.evaluation import Comparison, EncodingResult


def result(model, roi, seed, n_voxels, wall, device="cpu"):
    return EncodingResult(
        model,
        roi,
        "sim",
        1,
        np.zeros(n_voxels, np.float32),
        info={"seed": seed, "wall_time_s": wall, "device": device},
    )


# --------------------------------------------------------------------------- expected_noisy_r
def test_expected_noisy_r_matches_a_simulation():
    rng = np.random.default_rng(0)
    n = 400_000
    y = rng.standard_normal(n)
    for rho, scale in ((0.0, 2.0), (0.3, 0.5), (0.6, 3.0)):
        z = rho * y + np.sqrt(1 - rho**2) * rng.standard_normal(n)
        measured = np.corrcoef(scale * z + 1.5 * rng.standard_normal(n), y)[0, 1]
        assert measured == pytest.approx(
            float(evaluation.expected_noisy_r(rho, scale, noise_std=1.5)), abs=0.005
        )


def test_expected_noisy_r_limits_and_broadcasting():
    assert float(evaluation.expected_noisy_r(0.5, 0.0)) == 0.0  # no prediction: nothing but noise
    assert float(evaluation.expected_noisy_r(0.5, 1e6)) == pytest.approx(
        0.5
    )  # huge prediction: noise vanishes
    assert float(evaluation.expected_noisy_r(0.5, 2.0, noise_std=0.0)) == pytest.approx(0.5)
    assert float(evaluation.expected_noisy_r(0.5, 1.0)) == pytest.approx(0.5 / np.sqrt(2))
    grid = evaluation.expected_noisy_r(np.array([[0.0], [0.3]]), np.linspace(0, 4, 5))
    assert grid.shape == (2, 5) and np.all(grid[0] == 0) and np.all(np.diff(grid[1]) > 0)
    with pytest.raises(ValueError, match=">= 0"):
        evaluation.expected_noisy_r(0.5, -1.0)


# --------------------------------------------------------------------------- rank_correlation
def test_rank_correlation_is_spearman_with_an_interval_around_it():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    rho, low, high = evaluation.rank_correlation(x, y, n_bootstrap=300, seed=0)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert low < rho < high and high - low < 0.3
    assert np.isnan(evaluation.rank_correlation(x, y, n_bootstrap=0)[1])


def test_rank_correlation_over_seeds_is_the_mean_of_rows():
    rng = np.random.default_rng(2)
    ceiling = rng.uniform(size=100)
    weights = np.stack([ceiling + s * rng.normal(size=100) for s in (0.1, 0.5, 2.0)])  # (seeds, V)
    rho, low, high = evaluation.rank_correlation(weights, ceiling, n_bootstrap=200, seed=0)
    assert rho == pytest.approx(np.mean([stats.spearmanr(w, ceiling).statistic for w in weights]))
    assert low < rho < high
    with pytest.raises(ValueError, match="at least 3"):
        evaluation.rank_correlation([1.0, 2.0], [2.0, 1.0])


# --------------------------------------------------------------------------- training_seconds
def test_training_seconds_per_roi_subject_and_voxel():
    results = [
        result("etecrm", roi, seed, n, wall)
        for seed, walls in ((0, (2.0, 4.0)), (1, (3.0, 5.0)))
        for roi, n, wall in zip(("V1", "V4"), (100, 300), walls)
    ]
    results += [
        result("gwp_ridge", "V1", 0, 100, 10.0),
        result("gwp_ridge", "V4", 0, 300, 2.0),
        result("no_time", "V1", 0, 100, None),
    ]
    rows = {row["model"]: row for row in tables.training_seconds(results)}
    assert set(rows) == {"etecrm", "gwp_ridge"}  # no wall time: skipped
    e = rows["etecrm"]
    assert e["n_rois"] == 2 and e["n_seeds"] == 2
    assert e["seconds_per_roi"] == pytest.approx(3.5)
    assert e["seconds_per_subject"] == pytest.approx(7.0)  # (6 + 8) / 2
    assert e["seconds_per_subject_sd"] == pytest.approx(np.std([6.0, 8.0], ddof=1))
    assert e["ms_per_voxel"] == pytest.approx(1000 * 7.0 / 400)
    g = rows["gwp_ridge"]
    assert g["seconds_per_subject"] == pytest.approx(12.0) and g["seconds_per_subject_sd"] is None
    assert g["device"] == "cpu"


# --------------------------------------------------------------------------- seed_runs, verdict
def test_seed_runs_sorted_by_seed_and_clear_error():
    results = [result("etecrm", "V1", s, 5, 1.0) for s in (2, 0, 1)] + [
        result("etecrm", "V4", 0, 5, 1.0)
    ]
    assert [r.info["seed"] for r in evaluation.seed_runs(results, "etecrm", "V1")] == [0, 1, 2]
    assert len(evaluation.seed_runs(results, "etecrm")) == 4
    with pytest.raises(ValueError, match="models present: \\['etecrm'\\]"):
        evaluation.seed_runs(results, "gwp_ridge")


def test_verdict_follows_the_interval():
    def cmp(low, high):
        return Comparison("a", "b", "V1", "median_r", (low + high) / 2, low, high, 0.5, 100)

    assert "reliably better" in evaluation.verdict(cmp(0.01, 0.05))
    assert "reliably worse" in evaluation.verdict(cmp(-0.05, -0.01))
    assert "contains 0" in evaluation.verdict(cmp(-0.01, 0.02))


# --------------------------------------------------------------------------- figures
def test_noisy_correlation_curves_draw_the_formula():
    fig = training_plots.noisy_correlation_curves(
        signal_rs=(0.0, 0.5), scales=np.array([0.0, 1.0, 2.0])
    )
    assert len(fig.data) == 4  # r and r^3 per voxel
    r_half, cube_half = fig.data[2], fig.data[3]
    assert np.allclose(r_half.y, evaluation.expected_noisy_r(0.5, [0.0, 1.0, 2.0]))
    assert np.allclose(cube_half.y, np.asarray(r_half.y) ** 3)
    assert np.allclose(fig.data[0].y, 0)  # no signal: flat at 0


def test_weights_over_epochs_sorts_voxels_and_squares_r():
    train_r = np.array([[0.1, -0.5, 0.3], [0.2, 0.4, -0.6]])  # (epochs, voxels)
    fig = training_plots.weights_over_epochs(train_r, order=[2, 0, 1], best_epoch=1)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (3, 2) and np.allclose(z, (train_r**2)[:, [2, 0, 1]].T)
    with pytest.raises(ValueError, match="epochs, voxels"):
        training_plots.weights_over_epochs(np.zeros(3))


def test_training_cost_bars():
    rows = tables.training_seconds([result("etecrm", "V1", s, 10, 1.0 + s) for s in (0, 1)])
    fig = training_plots.training_cost_bars(rows, "seconds_per_subject")
    assert list(fig.data[0].y) == [1.5] and fig.data[0].error_y.array[0] == pytest.approx(
        np.std([1, 2], ddof=1)
    )
    with pytest.raises(ValueError, match="value must be"):
        training_plots.training_cost_bars(rows, "minutes")


# --------------------------------------------------------------------------- control tables
def test_committed_control_tables_load_and_agree_with_their_intervals():
    from etecrm_lib.book import results_folder

    folder = results_folder() / "controls"
    for truth, expected in (("gabor", "gwp_ridge"), ("cnn", "etecrm")):
        control = controls.load_control_table(folder, truth)
        assert control is not None, (
            f"data/results/controls has no full table of the {truth!r} control"
        )
        assert [r["roi"] for r in control.rows] == ["V1", "V2", "V3", "V4", "LO"]
        assert {r["expected_winner"] for r in control.rows} == {expected}
        shown = control.display_rows()
        assert [s["gwp_ridge − etecrm"] for s in shown] == [
            r["gwp_minus_etecrm"] for r in control.rows
        ]
        wins = sum(r["winner"] == expected for r in control.rows)
        assert f"wins in {wins} of 5 ROIs" in control.summary()
    assert (
        controls.load_control_table(folder, "cnn", profile="quick") is None
    )  # not committed: None, no error


def test_a_control_table_that_contradicts_itself_is_refused(tmp_path):
    import json
    import shutil

    from etecrm_lib.book import results_folder

    shutil.copy(results_folder() / "controls" / "controls_cnn_full.json", tmp_path)
    path = tmp_path / "controls_cnn_full.json"
    data = json.loads(path.read_text())
    data["rows"][2]["winner"] = "undecided"  # its interval excludes 0
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="V3.*disagree.*etecrm controls"):
        controls.load_control_table(tmp_path, "cnn")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a control table"):
        controls.load_control_table(tmp_path, "cnn")
    shutil.copy(
        results_folder() / "controls" / "controls_cnn_full.json",
        tmp_path / "controls_gabor_full.json",
    )
    with pytest.raises(ValueError, match="not the 'full' table of 'gabor'"):
        controls.load_control_table(tmp_path, "gabor")


# --------------------------------------------------------------------------- committed verdicts
def test_committed_verdicts_of_both_subjects_in_one_call():
    from etecrm_lib.verdicts import committed_verdicts

    signed = committed_verdicts(["etecrm_signed"], statistics=("median_r", "top_n_mean_r"))
    assert sorted(signed.comparisons) == [
        (1, "median_r"),
        (1, "top_n_mean_r"),
        (2, "median_r"),
        (2, "top_n_mean_r"),
    ]
    assert sorted(signed.runs) == [1, 2] and len(signed.lines) == 4
    first = signed.comparisons[1, "median_r"]
    assert len(first) == 5 and {(c.model_a, c.statistic) for c in first} == {
        ("etecrm_signed", "median_r")
    }
    assert str(signed).startswith("subject 1, etecrm_signed - etecrm (median_r):")
    for c in signed.comparisons[2, "median_r"]:  # the library's verdict words, with the interval
        words = evaluation.verdict(c, short=True)
        assert f"{c.roi} ({c.difference:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}])" in str(signed)
        assert words in str(signed)
    baseline = committed_verdicts(kind="baseline")
    assert {c.model_a for cs in baseline.comparisons.values() for c in cs} == {"etecrm"}


def test_comparison_table_gives_the_interval_and_the_verdict_of_each_comparison():
    from etecrm_lib.book import committed_run

    run = committed_run(subject=1)
    table = tables.comparison_table(run.comparisons, kind="baseline", statistic="median_r")
    assert len(table) == 5 and set(table["kind"]) == {"baseline"}
    for _, row in table.iterrows():
        c = Comparison.from_dict(row.to_dict())
        assert row["verdict"] == evaluation.verdict(c, short=True)
        assert row["interval"] == f"{c.ci_low:+.3f} to {c.ci_high:+.3f}"
        assert row["baseline (val. median r)"].startswith(f"{c.model_b} (")
    assert len(tables.comparison_table(run.comparisons)) == len(run.comparisons)
