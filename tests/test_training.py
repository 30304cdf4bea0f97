"""The trainer: it learns, it is reproducible, early stopping keeps the best, checkpoints resume exactly,
bad input is refused clearly."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from etecrm_lib.training import (ETECRMConfig, EarlyStopping, check_finite_losses, fit_etecrm, largest_batch_that_fits,
                                 split_train_val, train_etecrm)

TINY = ETECRMConfig(image_size=32, channels=(4, 8), epochs=3, batch_size=16, patience=5)


def _arrays(n=80, size=32, n_vox=12, seed=0):
    """Images and responses with some signal: each voxel is a noisy linear function of a blurred image patch."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, size, size)).astype(np.float32)
    patches = images.reshape(n, 4, size // 4, 4, size // 4).mean(axis=(2, 4)).reshape(n, 16)
    responses = patches @ rng.normal(size=(16, n_vox)) + 0.1 * rng.normal(size=(n, n_vox))
    return images, responses.astype(np.float32)


def _same_state(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_training_on_the_quick_simulation_predicts_v1_well_above_chance():
    from etecrm_lib.data import simulate
    from etecrm_lib.evaluation import EncodingResult

    ds = simulate(profile="quick")
    model = train_etecrm(ds, "V1", ETECRMConfig.for_profile("quick", epochs=15), seed=0, progress=False)
    result = model.score(ds)
    assert isinstance(result, EncodingResult) and result.roi == "V1" and result.model == "etecrm"
    summary = result.summary()
    # chance: median r over 120 voxels of 40 test images is 0 +- about 0.02
    assert summary["median_r"] > 0.12, summary
    assert summary["n_significant"] >= 10, summary
    assert model.history.val_mean_r[model.history.best_epoch] > model.history.val_mean_r[0]
    assert result.info["config"]["loss"] == "corr" and result.info["seed"] == 0
    # the voxel weights point at the voxels the model can predict
    assert model.voxel_weights.shape == (ds.n_voxels("V1"),) and model.voxel_weights.mean() == pytest.approx(1, rel=1e-4)
    assert np.corrcoef(model.voxel_weights, np.clip(model.val_r, 0, None))[0, 1] > 0.99


def test_same_seed_same_weights_other_seed_other_weights():
    images, responses = _arrays()
    a = fit_etecrm(images, responses, TINY, seed=3, progress=False)
    b = fit_etecrm(images, responses, TINY, seed=3, progress=False)
    c = fit_etecrm(images, responses, TINY, seed=4, progress=False)
    assert _same_state(a.net, b.net) and a.history.train_loss == b.history.train_loss
    assert not _same_state(a.net, c.net)


@pytest.mark.parametrize("changes", [dict(loss="mse"), dict(voxel_weights=False, noise_std=0.0, dropout=0.0),
                                     dict(readout="factorized", weight_power=2.0)])
def test_every_switch_trains_and_records_a_history(changes):
    images, responses = _arrays()
    model = fit_etecrm(images, responses, replace(TINY, **changes), seed=0, progress=False)
    h = model.history
    assert h.n_epochs == 3 and len(h.val_median_r) == 3 and len(h.voxel_weights) == 3
    assert all(np.isfinite(h.train_loss)) and h.voxel_weights[0].shape == (12,)
    if not changes.get("voxel_weights", True):
        assert all(np.all(w == 1) for w in h.voxel_weights)
    assert model.predict(images[:5]).shape == (5, 12)


def test_early_stopping_restores_the_best_weights():
    images, responses = _arrays()
    cfg = replace(TINY, epochs=6, patience=2, learning_rate=3e-2)     # a large step: validation r jumps around
    model = fit_etecrm(images, responses, cfg, seed=0, progress=False)
    h = model.history
    best = int(np.argmax(h.val_mean_r))
    assert h.best_epoch == best
    assert h.stopped_early == (h.n_epochs < 6) and (not h.stopped_early or h.n_epochs == best + 3)
    # the returned network is the one of the best epoch: its validation r is that epoch's
    fit_idx, val_idx = split_train_val(len(images), cfg.val_fraction, 0)
    from etecrm_lib.evaluation import pearson_r

    r = pearson_r(model.predict(images[val_idx]), responses[val_idx])
    assert float(np.mean(r)) == pytest.approx(h.val_mean_r[best], abs=1e-4)
    np.testing.assert_allclose(model.val_r, r, atol=1e-4)


def test_early_stopping_bookkeeping():
    stop = EarlyStopping(patience=2)
    assert stop.update(0.1, 0) and stop.update(0.2, 1) and not stop.update(0.15, 2)
    assert not stop.should_stop(2) and stop.should_stop(3) and stop.best_epoch == 1


def test_resume_from_checkpoint_continues_identically(tmp_path):
    images, responses = _arrays()
    cfg = replace(TINY, epochs=4, patience=100)
    straight = fit_etecrm(images, responses, cfg, seed=1, checkpoint=tmp_path / "a.pt", progress=False)
    fit_etecrm(images, responses, replace(cfg, epochs=2), seed=1, checkpoint=tmp_path / "b.pt", progress=False)
    resumed = fit_etecrm(images, responses, cfg, seed=1, checkpoint=tmp_path / "b.pt", progress=False)
    assert resumed.history.train_loss == straight.history.train_loss and resumed.history.n_epochs == 4
    assert _same_state(straight.net, resumed.net)
    last_a = torch.load(tmp_path / "a.pt", weights_only=True)["model"]
    last_b = torch.load(tmp_path / "b.pt", weights_only=True)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    # a finished run resumes to the same result at once
    again = fit_etecrm(images, responses, cfg, seed=1, checkpoint=tmp_path / "a.pt", progress=False)
    assert _same_state(again.net, straight.net)
    assert not list(tmp_path.glob("*.part"))                             # nothing half-written left behind


def test_checkpoint_from_another_run_is_refused(tmp_path):
    images, responses = _arrays()
    path = tmp_path / "run.pt"
    fit_etecrm(images, responses, replace(TINY, epochs=1), seed=0, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="different run.*noise_std: 0.1 in the checkpoint, 0.3 now"):
        fit_etecrm(images, responses, replace(TINY, noise_std=0.3), seed=0, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="seed: 0 in the checkpoint, 1 now"):
        fit_etecrm(images, responses, TINY, seed=1, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="training data differ"):
        fit_etecrm(images, responses + 1, TINY, seed=0, checkpoint=path, progress=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable ETECRM checkpoint"):
        fit_etecrm(images, responses, TINY, seed=0, checkpoint=path, progress=False)


def test_nan_responses_are_refused_up_front():
    images, responses = _arrays()
    responses[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN/inf in 1 of 12 voxels \\(columns \\[3\\]\\)"):
        fit_etecrm(images, responses, TINY, progress=False)


def test_divergence_names_the_epoch_and_batch():
    with pytest.raises(FloatingPointError, match="epoch 3, batch 2"):
        check_finite_losses(torch.tensor([0.5, float("nan"), 0.4]), epoch=2)
    images, responses = _arrays()
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):   # an absurd learning rate blows up at once
        fit_etecrm(images, responses * 1e30, replace(TINY, loss="mse", learning_rate=1e30), progress=False)


def test_batch_larger_than_the_data_is_clamped_with_a_warning():
    images, responses = _arrays(n=40)
    with pytest.warns(UserWarning, match="batch_size 500 is larger than the 36 fitting images"):
        model = fit_etecrm(images, responses, replace(TINY, batch_size=500, epochs=1), progress=False)
    assert model.history.batch_size == 36


def test_out_of_memory_halves_the_batch_and_says_so():
    tried = []

    def step(b):
        tried.append(b)
        if b > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.warns(UserWarning) as record:
        assert largest_batch_that_fits(step, 64, torch.device("cuda")) == 16
    assert tried == [64, 32, 16]
    assert [str(w.message) for w in record] == [f"GPU out of memory with batches of {b} images; trying {b // 2}"
                                                for b in (64, 32)]
    assert largest_batch_that_fits(step, 64, torch.device("cpu")) == 64       # nothing to probe on the CPU


def test_bad_input_gets_clear_errors():
    images, responses = _arrays()
    with pytest.raises(ValueError, match="square grayscale images"):
        fit_etecrm(images[:, :, :30], responses, TINY)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        fit_etecrm(images * 255, responses, TINY)
    with pytest.raises(ValueError, match=r"responses must be \(N_images, V\) = \(80, V>=1\)"):
        fit_etecrm(images, responses[:50], TINY)
    with pytest.raises(ValueError, match="too few to hold back"):
        fit_etecrm(images[:8], responses[:8], TINY)
    with pytest.raises(ValueError, match="loss='corr' with voxel_weights=True"):
        ETECRMConfig(loss="weighted_corr")
    with pytest.raises(ValueError, match="profile must be"):
        ETECRMConfig.for_profile("huge")


def test_images_are_resized_to_the_configured_size():
    images, responses = _arrays(size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = fit_etecrm(images, responses, replace(TINY, epochs=1), progress=False)
    assert model.net.image_size == 32 and model.predict(images[:3]).shape == (3, 12)


def test_history_keeps_each_epochs_voxel_weights():
    """Each epoch's snapshot is its own array, not a view of weights updated in place later."""
    from etecrm_lib.training import TrainingHistory

    hist = TrainingHistory()
    weights = torch.ones(4)
    hist.record(0.5, torch.tensor([0.1, 0.2]), weights, 1.0)
    weights.mul_(3)
    hist.record(0.4, torch.tensor([0.2, 0.3]), weights, 1.0)
    assert hist.voxel_weights[0].tolist() == [1, 1, 1, 1] and hist.voxel_weights[1].tolist() == [3, 3, 3, 3]
