"""Accuracy against training-set size: nested subsets, resumable verified files, curves and
crossings."""

import numpy as np
import pytest

from etecrm_lib import data_size, verdicts
from etecrm_lib.cli import main
from etecrm_lib.data import simulate
from etecrm_lib.data.calibration import SimulationConfig
from etecrm_lib.evaluation import EncodingResult

TINY = SimulationConfig(
    name="tiny", image_size=64, n_train=24, n_test=30, voxels={"V1": 30, "LO": 20}
)


@pytest.fixture(scope="module")
def tiny():
    return simulate(1, TINY, seed=0, cache=False, n_train=120)


def test_first_images_are_nested_and_share_the_test_split(tiny):
    small, large = data_size.first_images(tiny, 40), data_size.first_images(tiny, 80)
    np.testing.assert_array_equal(large.train.stimuli[:40], small.train.stimuli)
    np.testing.assert_array_equal(small.train.responses["V1"], tiny.train.responses["V1"][:40])
    assert small.test is tiny.test and small.info["n_train"] == 40
    assert small.info["cache_key"] != large.info["cache_key"] != tiny.info["cache_key"]
    with pytest.raises(ValueError, match="simulate more"):
        data_size.first_images(tiny, 121)
    with pytest.raises(ValueError, match="increasing"):
        data_size.DataSizeConfig.for_profile("quick", sizes=(200, 100))


def _fake(model: str, n_train: int, seed: int, predictions, roi: str = "V1") -> EncodingResult:
    return EncodingResult(
        model,
        roi,
        "sim",
        1,
        np.zeros(predictions.shape[1], np.float32),
        predictions=predictions.astype(np.float32),
        info={"n_train": n_train, "seed": seed},
    )


def test_curves_and_crossing_have_the_known_answer():
    """Model A's noise falls with the training-set size, B's stays put: A overtakes B where their
    noise levels meet (between 400 and 800 images here) and the intervals say so."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(300, 50))

    class Test:
        responses = {"V1": truth}

    class Dataset:
        test = Test

    results = []
    for seed in range(2):
        for n, noise_a in ((100, 3.0), (200, 2.0), (400, 1.2), (800, 0.5)):
            results.append(_fake("a", n, seed, truth + noise_a * rng.normal(size=truth.shape)))
            results.append(_fake("b", n, seed, truth + 0.8 * rng.normal(size=truth.shape)))
    rows = data_size.learning_curves(results, Dataset, n_bootstrap=300)
    a = [r for r in rows if r["model"] == "a"]
    assert [r["n_train"] for r in a] == [100, 200, 400, 800] and all(r["n_seeds"] == 2 for r in a)
    assert all(r["ci_low"] <= r["median_r"] <= r["ci_high"] for r in rows)
    assert a[0]["median_r"] < a[-1]["median_r"]
    (cross,) = data_size.crossings(results, Dataset, "a", "b", n_bootstrap=300)
    assert 400 < cross["crossing"] < 800 and not cross["a_ahead_at_all_sizes"]
    first, last = cross["differences"][0], cross["differences"][-1]
    assert first["ci_high"] < 0 < last["ci_low"]
    # the page's table: one row per size, A behind at the smallest and ahead at the largest
    table = verdicts.crossing_table([cross])
    assert table.columns[:3] == ["ROI", "training images", "a − b (median r)"]
    assert [row[1] for row in table.rows] == ["100", "200", "400", "800"]
    assert table.rows[0][-1] == "worse" and table.rows[-1][-1] == "better"
    assert table.rows[-1][3] == f"[{last['ci_low']:+.3f}, {last['ci_high']:+.3f}]"
    with pytest.raises(ValueError, match="no sizes"):
        verdicts.crossing_table([])


def test_run_writes_verified_files_and_resumes(tiny, tmp_path, monkeypatch):
    config = data_size.DataSizeConfig.for_profile(
        "quick", sizes=(40, 80), models=("gwp_ridge",), rois=("V1",), seeds=2, n_bootstrap=100
    )
    results = data_size.run_data_size(config, dataset=tiny, out=tmp_path, progress=False)
    # gwp_ridge is deterministic: one fit per size (seed 0), as in every experiment of the runner
    assert [(r.info["n_train"], r.info["seed"]) for r in results] == [(40, 0), (80, 0)]
    files = sorted((tmp_path / "results").glob("*.npz"))
    assert [f.name for f in files] == [
        "sim-data0_quick_sub1_V1_gwp_ridge_n40_seed0.npz",
        "sim-data0_quick_sub1_V1_gwp_ridge_n80_seed0.npz",
    ]
    summary = data_size.read_curves(tmp_path)
    assert {row["n_train"] for row in summary["curves"]} == {40, 80}

    # a second run reads the files instead of fitting again
    def must_not_run(*args, **kwargs):
        raise AssertionError("finished results files should have been used")

    again = data_size.run_data_size(
        config, dataset=tiny, out=tmp_path, progress=False, trainer=must_not_run
    )
    np.testing.assert_array_equal(again[0].test_r, results[0].test_r)

    # a damaged file is reported and fitted again
    monkeypatch.undo()
    files[0].write_bytes(files[0].read_bytes()[:100])
    with pytest.warns(UserWarning, match="recomputing"):
        data_size.run_data_size(config, dataset=tiny, out=tmp_path, progress=False)
    (tmp_path / "curves.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        data_size.read_curves(tmp_path)


def test_datasize_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))
    status = main(
        [
            "datasize",
            "--profile",
            "quick",
            "--sizes",
            "30",
            "60",
            "--models",
            "gwp_ridge",
            "--rois",
            "LO",
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert status == 0 and "curves.json" in capsys.readouterr().out
    summary = data_size.read_curves(tmp_path / "out")
    assert summary["config"]["sizes"] == [30, 60] and summary["simulation"]["n_train"] == 60
    assert (
        main(
            [
                "datasize",
                "--profile",
                "quick",
                "--sizes",
                "60",
                "30",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
