"""The variant registry and run_variants: names, switches, seeding, and agreement with the models
run directly."""

import numpy as np
import pytest

from etecrm_lib import ablations
from etecrm_lib.data import from_arrays

ALL = [
    "etecrm",
    "etecrm_unweighted",
    "etecrm_no_noise",
    "etecrm_signed",
    "etecrm_mse",
    "gwp_ridge",
    "alexnet_ridge",
    "gwp_roiwise",
]


def small_dataset(seed=0, n_train=72, n_test=20, size=32):
    """Smooth random images; V1 voxels respond to local contrast energy at a few positions, plus
    noise."""
    rng = np.random.default_rng(seed)

    def images(n):
        x = rng.normal(size=(n, size // 4, size // 4))
        x = np.kron(x, np.ones((4, 4)))  # blocky, so that 2x2 downsampling keeps the signal
        return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)

    train, test = images(n_train), images(n_test)
    n_vox = 20
    pos = rng.integers(0, size, size=(n_vox, 2))

    def drive(x):
        return np.stack(
            [np.abs(x[:, i, j] - 0.5) + np.abs(x[:, i, (j + 4) % size] - 0.5) for i, j in pos],
            axis=1,
        )

    gain = np.linspace(0, 3, n_vox)
    y_train = drive(train) * gain + rng.normal(size=(n_train, n_vox)) * 0.2
    repeats = drive(test)[None] * gain + rng.normal(size=(3, n_test, n_vox)) * 0.2
    return from_arrays(
        train,
        {"V1": y_train.astype(np.float32)},
        test,
        test_repeats={"V1": repeats.astype(np.float32)},
        name="small",
        subject=1,
    )


@pytest.fixture(scope="module")
def data():
    return small_dataset()


def test_registry_holds_the_papers_variants_and_ablations():
    assert set(ALL) <= set(ablations.VARIANTS)
    assert list(ablations.DEFAULT_VARIANTS) == ALL
    families = {n: ablations.get_variant(n).family for n in ALL}
    assert [n for n in ALL if families[n] == "etecrm"] == ALL[:5]
    assert all(families[n] == "two_step" for n in ALL[5:])


def test_etecrm_switches_are_what_the_names_say():
    from etecrm_lib.training import ETECRMConfig

    configs = {
        n: ETECRMConfig.for_profile("quick", **ablations.get_variant(n).options) for n in ALL[:5]
    }
    full = configs["etecrm"]
    assert full == ETECRMConfig.for_profile("quick")  # etecrm is the released design
    assert (full.loss, full.noise_std, full.readout_weights) == ("weighted_corr", 1.0, "squared")
    assert configs["etecrm_unweighted"].loss == "corr"
    assert configs["etecrm_no_noise"].noise_std == 0
    assert configs["etecrm_signed"].readout_weights == "signed"
    assert (configs["etecrm_mse"].loss, configs["etecrm_mse"].noise_std) == ("mse", 0)
    # everything else (network, optimiser, epochs) is the same: each ablation changes one part
    switches = {"loss", "noise_std", "readout_weights"}
    for config in configs.values():
        assert {k: v for k, v in config.to_dict().items() if k not in switches} == {
            k: v for k, v in full.to_dict().items() if k not in switches
        }


def test_unknown_names_and_bad_registrations_are_clear_errors():
    with pytest.raises(KeyError, match="known: etecrm"):
        ablations.get_variant("etecrm_typo")
    with pytest.raises(ValueError, match="already registered"):
        ablations.register(ablations.get_variant("etecrm"))
    with pytest.raises(ValueError, match="letters, digits"):
        ablations.Variant("bad name", "two_step", "", {}, lambda *a: None)


def test_etecrm_variant_equals_training_it_alone(data):
    """run_variants gives exactly what train_etecrm + score give, with the run's details in info."""
    from etecrm_lib.training import ETECRMConfig, train_etecrm

    res = ablations.run_variants(
        data, ["etecrm", "etecrm_mse"], profile="quick", seed=5, device="cpu", progress=False
    )
    for r in res:
        config = ETECRMConfig.for_profile("quick", **ablations.get_variant(r.model).options)
        direct = train_etecrm(data, "V1", config, seed=5, device="cpu", progress=False).score(data)
        np.testing.assert_array_equal(r.test_r, direct.test_r)
        assert r.model in ("etecrm", "etecrm_mse") and r.roi == "V1" and r.dataset == "small"
        for key in (
            "config",
            "seed",
            "device",
            "wall_time_s",
            "feature_weights",
            "options",
            "torch_version",
            "val_r",
        ):
            assert key in r.info, key
        assert r.info["seed"] == 5 and r.info["config"]["loss"] == config.loss


@pytest.mark.slow
def test_a_batched_group_gives_the_results_of_the_variants_run_alone(data):
    """run_etecrm_group (one stacked network) scores as run_variant does, model by model."""
    runs = [("etecrm", "V1", 5), ("etecrm_mse", "V1", 5), ("etecrm", "V1", 6)]
    group = ablations.run_etecrm_group(data, runs, profile="quick", device="cpu", progress=False)
    for (name, roi, seed), r in zip(runs, group):
        alone = ablations.run_variant(data, name, roi, "quick", seed, "cpu", progress=False)
        assert (r.model, r.roi, r.info["seed"]) == (name, roi, seed)
        assert r.info["group_size"] == 3
        assert r.info["config"] == alone.info["config"]
        assert r.info["best_epoch"] == alone.info["best_epoch"]
        np.testing.assert_allclose(r.test_r, alone.test_r, atol=1e-4)
        assert set(alone.info) <= set(r.info)
    assert not np.allclose(group[0].test_r, group[2].test_r)  # another seed, another model
    with pytest.raises(ValueError, match="only those train in a group"):
        ablations.run_etecrm_group(data, [("gwp_ridge", "V1", 0)], device="cpu")


def test_ablations_change_the_model_and_repeat_exactly(data):
    names = ["etecrm", "etecrm_no_noise"]
    first = ablations.run_variants(
        data, names, profile="quick", seed=1, device="cpu", progress=False
    )
    again = ablations.run_variants(
        data, names[::-1], profile="quick", seed=1, device="cpu", progress=False
    )
    assert [r.model for r in first] == names and [r.model for r in again] == names[::-1]
    for res in first:  # order of running does not matter: each model starts from the seed
        twin = next(r for r in again if r.model == res.model)
        np.testing.assert_array_equal(res.test_r, twin.test_r)
    by_name = {r.model: r for r in first}
    assert not np.allclose(by_name["etecrm"].test_r, by_name["etecrm_no_noise"].test_r)


def test_two_step_variants_equal_the_two_step_model_run_directly(data):
    from etecrm_lib.two_step import TwoStepModel

    results = ablations.run_variants(
        data, ["gwp_ridge", "alexnet_ridge"], profile="quick", seed=2, device="cpu", progress=False
    )
    for res in results:
        direct = TwoStepModel(
            res.model, profile="quick", cnn_weights=None, seed=2, device="cpu", progress=False
        )
        direct = direct.fit(data, "V1").score(data)
        np.testing.assert_allclose(res.test_r, direct.test_r, atol=1e-5)
        assert res.info["family"] == "two_step" and res.info["seed"] == 2
    gwp, alexnet = results
    assert "Gabor" in gwp.info["feature_weights"] and "ridge" in gwp.info["config"]
    assert (
        "untrained" in alexnet.info["feature_weights"]
    )  # no download: the CNN's weights are random
    # the simulated voxels respond to local contrast energy: Gabor energy features must predict them
    assert np.median(gwp.test_r[-5:]) > 0.3


def test_quick_reproduce_table_matches_run_variants(tmp_path):
    """End to end with real models: reproduce() writes what run_variants computes, and the bootstrap
    file."""
    import json

    from etecrm_lib.reproduce import reproduce

    data = small_dataset(seed=3)
    models = ["etecrm", "gwp_ridge", "gwp_roiwise"]
    reproduce(
        data,
        models=models,
        out=tmp_path,
        n_seeds=1,
        device="cpu",
        figures=False,
        progress=False,
        n_bootstrap=100,
        log=lambda *a: None,
    )
    direct = ablations.run_variants(data, models, seed=0, device="cpu", progress=False)
    rows = {row["model"]: row for row in json.loads((tmp_path / "table.json").read_text())}
    assert set(rows) == set(models)
    for res in direct:
        assert rows[res.model]["median_r"] == pytest.approx(float(np.median(res.test_r)), abs=1e-6)
        assert rows[res.model]["n_voxels"] == res.n_voxels == 20
    comparisons = json.loads((tmp_path / "comparisons.json").read_text())
    val = {
        res.model: float(np.median(res.info["val_r"])) for res in direct if res.model != "etecrm"
    }
    best = max(
        val, key=val.get
    )  # the baseline is chosen on validation data carved from the train split
    assert {(c["model_a"], c["model_b"]) for c in comparisons} == {("etecrm", best)}
