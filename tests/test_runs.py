"""The one runner (etecrm_lib.runs): keys and file names, resuming an interrupted run, the trainer.

The trainer here is a stand-in that "fits" nothing: it scores the test responses plus noise drawn
from the key's seed (fast, and different for every key). It counts what it trains and can stop
the run after a number of results, as a killed run would; every experiment (reproduce, the
data-size curves, the control cortices) is then run again and must train only what is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from etecrm_lib import ablations, controls, data_size, results, runs
from etecrm_lib.data import simulate
from etecrm_lib.data.calibration import SimulationConfig
from etecrm_lib.evaluation import score
from etecrm_lib.reproduce import reproduce
from etecrm_lib.results import ResultKey

TINY = SimulationConfig(
    name="tiny", image_size=32, n_train=24, n_test=20, voxels={"V1": 12, "LO": 10}
)


class Interrupted(Exception):
    """What the stand-in trainer raises to stop a run, as Ctrl-C or a kill would."""


class StandIn:
    """A trainer: one scored result per key; records the keys; stops after `stop_after` results."""

    def __init__(self, stop_after: int | None = None):
        self.trained, self.stop_after = [], stop_after

    def __call__(self, dataset, keys, settings):
        assert len({key.data_group() for key in keys}) == 1  # one dataset and ROI per call
        for key in keys:
            if self.stop_after is not None and len(self.trained) == self.stop_after:
                raise Interrupted(f"stopped after {self.stop_after} results")
            self.trained.append(key)
            rng = np.random.default_rng([key.seed, len(key.model), dataset.train.n_images])
            truth = dataset.test.responses[key.roi]
            predictions = truth + rng.normal(0, 2.0, truth.shape)
            family = ablations.get_variant(key.model).family
            info = {"seed": key.seed, "family": family, "val_r": rng.random(truth.shape[1])}
            yield score(predictions, dataset, key.roi, key.model, info=info)


@pytest.fixture(scope="module")
def cortex():
    return simulate(1, TINY, seed=0, cache=False, n_train=60)


@pytest.fixture(scope="module")
def gabor_cortex():
    return simulate(1, TINY, seed=0, cache=False, ground_truth="gabor")


def files(out) -> dict:
    """``{file name: modification time}`` of every results file under ``out``."""
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "results").glob("*.npz"))}


def resumes(run, out, n_total: int, stop_after: int):
    """Run, interrupted after ``stop_after`` results; run again; check what the rerun trained."""
    first = StandIn(stop_after)
    with pytest.raises(Interrupted):
        run(first)
    finished = files(out)
    assert len(finished) == stop_after == len(first.trained)
    for name in finished:  # what is there is complete and verified
        results.load_result(out / "results" / name)
    second = StandIn()
    found = run(second)
    assert len(second.trained) == n_total - stop_after  # finished keys are not trained again
    assert not set(second.trained) & set(first.trained)
    assert {n: t for n, t in files(out).items() if n in finished} == finished  # nor rewritten
    assert len(files(out)) == n_total and not list((out / "results").glob(".*.part"))
    assert (
        StandIn().trained == [] and run(StandIn(stop_after=0)) is not None
    )  # all done: no training
    return found


# --------------------------------------------------------------------------- keys
def test_keys_name_files_and_carry_what_experiments_add():
    key = ResultKey.make("sim", 0, "full", 1, "V1", "etecrm", 3)
    assert key.stem() == "sim-data0_full_sub1_V1_etecrm_seed3"
    assert key == ResultKey("sim", 0, "full", 1, "V1", "etecrm", 3)
    sized = ResultKey.make("sim", 0, "full", 1, "V1", "etecrm", 3, n_train=500)
    control = ResultKey.make("sim", 2, "quick", 1, "LO", "gwp_ridge", 0, ground_truth="gabor")
    assert sized.stem() == "sim-data0_full_sub1_V1_etecrm_n500_seed3"
    assert control.path("out").as_posix() == (
        "out/results/sim-data2_quick_sub1_LO_gwp_ridge_truth-gabor_seed0.npz"
    )
    assert sized.fields()["n_train"] == 500 and sized.extra("n_train") == 500
    assert len({key.data_group(), sized.data_group(), control.data_group()}) == 3
    real = ResultKey.make("vim1", None, "full", 2, "V4", "gwp_ridge", 0)
    assert real.stem() == "vim1_full_sub2_V4_gwp_ridge_seed0"
    assert results.result_path("o", "vim1", "full", 2, "V4", "gwp_ridge", 0) == real.path("o")
    with pytest.raises(ValueError, match="model '../etecrm' cannot be part of a file name"):
        ResultKey.make("sim", 0, "full", 1, "V1", "../etecrm", 0)


def test_keys_for_runs_deterministic_models_once(cortex):
    keys = runs.keys_for(cortex, "quick", ["V1", "LO"], ["etecrm", "gwp_ridge"], [0, 1, 2])
    assert [(k.roi, k.model, k.seed) for k in keys[:4]] == [
        ("V1", "etecrm", 0),
        ("V1", "etecrm", 1),
        ("V1", "etecrm", 2),
        ("V1", "gwp_ridge", 0),
    ]
    assert len(keys) == 8 and {k.simulation_seed for k in keys} == {0}


# --------------------------------------------------------------------------- the runner
def test_runner_resumes_and_checks_what_the_trainer_returns(cortex, tmp_path):
    keys = runs.keys_for(cortex, "quick", ["V1", "LO"], ["etecrm", "gwp_ridge"], [0, 1])
    settings = runs.RunSettings.start("cpu", progress=False)

    def run(trainer):
        return runs.run_keys(keys, lambda key: cortex, tmp_path, trainer, settings)

    found = resumes(run, tmp_path, n_total=6, stop_after=4)
    assert list(found) == keys and found[keys[0]].info["git_commit"] is not None

    def wrong(dataset, keys, settings):
        return [score(dataset.test.responses["LO"], dataset, "LO", "etecrm")]

    with pytest.raises(ValueError, match="one result per key"):
        runs.run_keys(keys[:1], lambda key: cortex, None, wrong, settings)
    with pytest.raises(ValueError, match="no result"):
        runs.run_keys(keys[:1], lambda key: cortex, None, lambda *a: [], settings)


@pytest.mark.slow
def test_the_batched_trainer_fits_the_models_the_default_trainer_fits(cortex):
    """runs.train_in_groups: the ETECRM keys of a ROI in one stacked network, the rest one by one;
    the same results, in the keys' order."""
    keys = runs.keys_for(cortex, "quick", ["V1"], ["etecrm", "gwp_ridge", "etecrm_mse"], [0, 1])
    settings = runs.RunSettings.start("cpu", progress=False)
    grouped = runs.run_keys(keys, lambda key: cortex, None, runs.train_in_groups, settings)
    alone = runs.run_keys(keys, lambda key: cortex, None, runs.train_one_by_one, settings)
    assert list(grouped) == keys
    for key in keys:
        assert (grouped[key].model, grouped[key].info["seed"]) == (key.model, key.seed)
        np.testing.assert_allclose(grouped[key].test_r, alone[key].test_r, atol=1e-4)
    assert grouped[keys[0]].info["group_size"] == 4  # etecrm and etecrm_mse, seeds 0 and 1


# --------------------------------------------------------------------------- the three experiments
def test_reproduce_resumes_from_an_interrupted_run(cortex, tmp_path):
    def run(trainer):
        return reproduce(
            cortex,
            profile="quick",
            n_seeds=2,
            models=["etecrm", "etecrm_mse", "gwp_ridge"],
            out=tmp_path,
            device="cpu",
            figures=False,
            n_bootstrap=100,
            progress=False,
            log=lambda *a: None,
            trainer=trainer,
        )

    found = resumes(run, tmp_path, n_total=2 * 5, stop_after=3)
    assert [(r.roi, r.model) for r in found[:3]] == [("V1", "etecrm")] * 2 + [("V1", "etecrm_mse")]
    assert (tmp_path / "table.md").exists() and list((tmp_path / "comparisons").glob("*.json"))


def test_data_size_resumes_from_an_interrupted_run(cortex, tmp_path):
    config = data_size.DataSizeConfig.for_profile(
        "quick", sizes=(30, 60), models=("etecrm", "gwp_ridge"), seeds=2, n_bootstrap=100
    )

    def run(trainer):
        return data_size.run_data_size(
            config, dataset=cortex, out=tmp_path, progress=False, trainer=trainer
        )

    found = resumes(run, tmp_path, n_total=2 * 3, stop_after=2)
    assert [(r.info["n_train"], r.model, r.info["seed"]) for r in found] == [
        (30, "etecrm", 0),
        (30, "gwp_ridge", 0),
        (30, "etecrm", 1),
        (60, "etecrm", 0),
        (60, "gwp_ridge", 0),
        (60, "etecrm", 1),
    ]
    assert data_size.read_curves(tmp_path)["config"]["sizes"] == [30, 60]


def test_controls_resume_from_an_interrupted_run(gabor_cortex, cortex, tmp_path):
    config = controls.ControlConfig.for_profile("quick", ground_truth="gabor", n_bootstrap=100)

    def run(trainer):
        return controls.run_controls(
            config, tmp_path, "cpu", False, trainer, lambda *a: None, gabor_cortex
        )

    table = resumes(run, tmp_path, n_total=2 * 4, stop_after=5)
    assert [r["roi"] for r in table.rows] == ["V1", "LO"] and table.model_seeds == [0, 1, 2]
    assert all("truth-gabor" in name for name in files(tmp_path))
    assert controls.load_control_table(tmp_path, "gabor", "quick").rows == table.rows
    with pytest.raises(ValueError, match="ground truth"):
        controls.run_controls(config, tmp_path, "cpu", False, StandIn(), print, cortex)


def test_controls_command_runs_the_experiment_and_prints_its_table(monkeypatch, capsys):
    from etecrm_lib import cli
    from etecrm_lib.book import results_folder

    committed = controls.load_control_table(results_folder() / "controls", "gabor")
    asked = []
    monkeypatch.setattr(cli, "run_controls", lambda config, **kw: asked.append(config) or committed)
    argv = ["controls", "--ground-truth", "gabor", "--seeds", "2", "--rois", "V1,V4", "--quiet"]
    assert cli.main(argv) == 0
    assert asked == [controls.ControlConfig("gabor", "quick", seeds=2, rois=("V1", "V4"))]
    printed = capsys.readouterr().out
    assert "| V1 |" in printed and "wins in" in printed
    assert cli.main(["controls", "--ground-truth", "gabor", "--seeds", "0"]) == 2
    trainers = []
    monkeypatch.setattr(cli, "run_controls", lambda c, **kw: trainers.append(kw) or committed)
    assert cli.main(["controls", "--ground-truth", "gabor", "--quiet", "--batched"]) == 0
    assert cli.main(["controls", "--ground-truth", "gabor", "--quiet"]) == 0
    assert [kw["trainer"] for kw in trainers] == [runs.train_in_groups, None]


def test_committed_files_are_named_by_the_key_their_meta_records():
    from etecrm_lib.book import results_folder

    paths = sorted((results_folder() / "results").glob("*.npz"))
    assert len(paths) > 100
    for path in paths[::25]:
        assert ResultKey.from_meta(results.read_meta(path)).stem() == path.stem


def test_an_old_name_still_works_with_a_deprecation_warning():
    from etecrm_lib.vocabulary import OLD_NAMES, UNSET, renamed

    assert renamed(3, UNSET, "data_seed") == 3  # the new name: no warning
    with pytest.warns(DeprecationWarning, match="data_seed is deprecated.*use simulation_seed"):
        assert renamed(0, 5, "data_seed") == 5
    assert {OLD_NAMES[k] for k in ("dest", "cache_dir", "data_dir", "data_root")} == {"root"}
