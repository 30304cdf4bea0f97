"""Training many models in one pass gives what training each alone gives (up to float rounding)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from etecrm_lib.batched import ModelSpec, check_shared, fit_many, pad_voxels, specs_for, train_many
from etecrm_lib.training import ETECRMConfig, fit_etecrm

BASE = ETECRMConfig(image_size=32, channels=(4, 8), epochs=3, batch_size=16, patience=10)


def _data(n=80, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, size, size)).astype(np.float32)
    patches = images.reshape(n, 4, size // 4, 4, size // 4).mean(axis=(2, 4)).reshape(n, 16)
    signal = patches @ rng.normal(size=(16, 20))
    return images, (signal + 0.3 * rng.normal(size=signal.shape)).astype(np.float32)


def _assert_same_models(batched, single, atol=1e-4):
    for b, s in zip(batched, single):
        assert b.history.n_epochs == s.history.n_epochs and b.history.best_epoch == s.history.best_epoch
        np.testing.assert_allclose(b.history.val_mean_r, s.history.val_mean_r, atol=1e-4)
        np.testing.assert_allclose(b.history.train_loss, s.history.train_loss, atol=1e-4)
        for name, p in s.net.state_dict().items():
            q = b.net.state_dict()[name]
            assert q.shape == p.shape, name
            # a bias that only shifts the predictions by a constant is invisible to the correlation loss: its
            # exact gradient is 0, so it follows rounding noise, which Adam scales up to learning-rate-sized
            # steps. Such biases are compared loosely, the centred predictions below tightly.
            tol = 5e-3 if name.endswith("bias") else atol
            torch.testing.assert_close(q, p, atol=tol, rtol=1e-3, msg=lambda m: f"{name}: {m}")
        np.testing.assert_allclose(b.voxel_weights, s.voxel_weights, atol=1e-3)
        np.testing.assert_allclose(b.val_r, s.val_r, atol=1e-4)


@pytest.mark.parametrize("readout", ["dense", "factorized"])
def test_batched_training_matches_sequential_training(readout):
    images, responses = _data()
    base = replace(BASE, readout=readout)
    # three models: different voxel counts (padding), seeds (each its own images and noise) and switches
    configs = [base, replace(base, loss="mse", voxel_weights=False, noise_std=0.0), replace(base, dropout=0.0, weight_power=2)]
    ys, seeds = [responses, responses[:, :7], responses[:, 3:15]], [0, 1, 2]
    single = [fit_etecrm(images, y, c, seed=s, progress=False) for y, c, s in zip(ys, configs, seeds)]
    batched = fit_many(images, ys, configs, seeds, progress=False)
    _assert_same_models(batched, single)
    x = images[:10]
    for b, s in zip(batched, single):
        pb, ps = b.predict(x), s.predict(x)
        np.testing.assert_allclose(pb - pb.mean(0), ps - ps.mean(0), atol=1e-4)


def test_models_with_one_seed_share_their_input_and_still_match():
    images, responses = _data(seed=1)
    configs = [BASE, replace(BASE, loss="mse"), replace(BASE, voxel_weights=False)]
    ys = [responses[:, :5], responses, responses[:, 5:]]
    single = [fit_etecrm(images, y, c, seed=4, progress=False) for y, c in zip(ys, configs)]
    _assert_same_models(fit_many(images, ys, configs, [4, 4, 4], progress=False), single)
    # without dropout one model's noise generator runs out of step with the others': no sharing, still the same
    no_dropout = replace(BASE, dropout=0.0)
    single.append(fit_etecrm(images, responses, no_dropout, seed=4, progress=False))
    _assert_same_models(fit_many(images, ys + [responses], configs + [no_dropout], [4] * 4, progress=False), single)


def test_each_model_stops_early_on_its_own():
    images, responses = _data(seed=2)
    fast = replace(BASE, epochs=8)
    configs = [replace(fast, patience=1), replace(fast, patience=100)]
    noise_only = np.random.default_rng(3).normal(size=(len(images), 6)).astype(np.float32)   # nothing to learn
    ys = [noise_only, responses]
    single = [fit_etecrm(images, y, c, seed=s, progress=False) for y, c, s in zip(ys, configs, (0, 1))]
    batched = fit_many(images, ys, configs, [0, 1], progress=False)
    assert single[0].history.stopped_early and single[0].history.n_epochs < 8
    assert batched[1].history.n_epochs == 8 and not batched[1].history.stopped_early
    assert batched[0].history.n_epochs == single[0].history.n_epochs and batched[0].history.stopped_early
    _assert_same_models(batched, single)


def test_train_many_on_a_dataset_scores_each_roi():
    from etecrm_lib.data import from_arrays

    images, responses = _data(n=90)
    ds = from_arrays(images[:80], {"V1": responses[:80, :12], "V2": responses[:80, 12:]}, images[80:],
                     {"V1": responses[80:, :12], "V2": responses[80:, 12:]})
    specs = specs_for(["V1", "V2"], replace(BASE, epochs=2), seeds=(0, 1))
    assert [(s.roi, s.seed) for s in specs] == [("V1", 0), ("V1", 1), ("V2", 0), ("V2", 1)]
    models = train_many(ds, specs, progress=False)
    results = [m.score(ds) for m in models]
    assert [(r.roi, r.n_voxels) for r in results] == [("V1", 12), ("V1", 12), ("V2", 8), ("V2", 8)]
    with pytest.raises(KeyError, match="available ROIs"):
        train_many(ds, [ModelSpec("LO", BASE)], progress=False)


def test_models_that_cannot_share_a_stack_are_refused():
    with pytest.raises(ValueError, match="must share channels, learning_rate"):
        check_shared([BASE, replace(BASE, channels=(4, 16), learning_rate=0.1)])
    check_shared([BASE, replace(BASE, loss="mse", noise_std=0.0, dropout=0.0, patience=3)])    # ablation switches may differ
    with pytest.raises(ValueError, match="as many responses, configs and seeds"):
        fit_many(np.zeros((10, 32, 32)), [np.zeros((10, 3))], [BASE, BASE], [0, 1])


def test_pad_voxels_pads_only_the_readout_with_zero_rows():
    net = BASE.build_network(5)
    padded = pad_voxels(net.state_dict(), 9)
    assert padded["readout.weight"].shape == (9, net.n_features) and padded["readout.bias"].shape == (9,)
    assert torch.equal(padded["readout.weight"][:5], net.readout.weight) and not padded["readout.weight"][5:].any()
    assert torch.equal(padded["features.0.weight"], net.features[0].weight)
