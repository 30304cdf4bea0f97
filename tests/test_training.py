"""The trainer: the released design's loop, noise only on training predictions, the epoch chosen on
validation images from the train split, reproducible, resumable, and clear about bad input."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from etecrm_lib import training
from etecrm_lib.evaluation import pearson_r
from etecrm_lib.gpu import largest_batch_that_fits
from etecrm_lib.training import (
    ETECRMConfig,
    fit_etecrm,
    selection_score,
    split_train_val,
    train_etecrm,
)

TINY = ETECRMConfig(image_size=32, channels=4, epochs=3, batch_size=16, selection_voxels=6)


def _arrays(n=80, size=32, n_vox=12, seed=0):
    """Images and responses with some signal: each voxel is a noisy linear function of a blurred
    image patch."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, size, size)).astype(np.float32)
    patches = images.reshape(n, 4, size // 4, 4, size // 4).mean(axis=(2, 4)).reshape(n, 16)
    responses = patches @ rng.normal(size=(16, n_vox)) + 0.1 * rng.normal(size=(n, n_vox))
    return images, responses.astype(np.float32)


def _same_state(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_default_config_is_the_released_design():
    c = ETECRMConfig()
    assert ETECRMConfig.for_profile("paper") == ETECRMConfig.for_profile("full") == c
    assert (c.image_size, c.channels, c.n_layers, c.readout_weights) == (128, 128, 3, "squared")
    assert (c.loss, c.mean_penalty, c.noise_std) == ("weighted_corr", 1e-4, 1.0)
    assert (c.learning_rate, c.weight_decay, c.batch_size, c.epochs, c.selection_voxels) == (
        1e-3,
        1e-6,
        64,
        50,
        300,
    )
    quick = ETECRMConfig.for_profile("quick")  # same shape, smaller
    assert (quick.n_layers, quick.readout_weights, quick.loss, quick.noise_std) == (
        3,
        "squared",
        "weighted_corr",
        1.0,
    )


@pytest.mark.slow
def test_training_on_the_quick_simulation_predicts_v1_well_above_chance():
    from etecrm_lib.data import simulate
    from etecrm_lib.evaluation import EncodingResult

    ds = simulate(profile="quick")
    model = train_etecrm(ds, "V1", ETECRMConfig.for_profile("quick"), seed=0, progress=False)
    result = model.score(ds)
    assert isinstance(result, EncodingResult) and result.roi == "V1" and result.model == "etecrm"
    summary = result.summary()
    # chance: median r over 120 voxels of 40 test images is 0 +- about 0.02 (measured on the
    # calibrated quick subject: 0.099)
    assert summary["median_r"] > 0.06, summary
    h = model.history
    # the kept epoch is the first with the highest selection score, and the model is that epoch's
    # (exact, whichever epoch that is for this seed)
    assert (
        h.best_epoch == int(np.argmax(h.selection_score))
        and result.info["best_epoch"] == h.best_epoch
    )
    np.testing.assert_array_equal(model.val_r, h.val_r[h.best_epoch])
    assert result.info["config"]["loss"] == "weighted_corr" and result.info["seed"] == 0


def test_same_seed_same_weights_other_seed_other_weights():
    images, responses = _arrays()
    a = fit_etecrm(images, responses, TINY, seed=3, progress=False)
    b = fit_etecrm(images, responses, TINY, seed=3, progress=False)
    c = fit_etecrm(images, responses, TINY, seed=4, progress=False)
    assert _same_state(a.net, b.net) and a.history.train_loss == b.history.train_loss
    assert not _same_state(a.net, c.net)


@pytest.mark.parametrize(
    "changes",
    [
        dict(loss="corr"),
        dict(loss="mse", noise_std=0.0),
        dict(noise_std=0.0),
        dict(readout_weights="signed"),
    ],
)
def test_every_switch_trains_and_records_a_history(changes):
    images, responses = _arrays()
    model = fit_etecrm(images, responses, replace(TINY, **changes), seed=0, progress=False)
    h = model.history
    assert h.n_epochs == 3 and len(h.val_r) == len(h.train_r) == len(h.selection_score) == 3
    assert all(np.isfinite(h.train_loss)) and h.val_r[0].shape == (12,)
    assert model.predict(images[:5]).shape == (5, 12)


def test_noise_is_added_to_the_predictions_in_training_only(monkeypatch):
    """What reaches the loss: prediction + N(0, noise_std^2), the targets untouched; evaluation sees
    no noise."""
    images, responses = _arrays()
    seen = {}

    def spy(name):
        from etecrm_lib.losses import loss_function

        real = loss_function(name)

        def loss(pred, target, mean_penalty):
            seen.setdefault(key, (pred.detach().clone(), target.detach().clone()))
            return real(pred, target, mean_penalty)

        return loss

    monkeypatch.setattr(training, "loss_function", spy)
    for key, noise in (("noisy", 1.0), ("clean", 0.0)):
        fit_etecrm(  # on the CPU: a CUDA graph calls the loss once, at capture, with zero noise
            images,
            responses,
            replace(TINY, noise_std=noise, epochs=1, batch_size=64),
            seed=0,
            device="cpu",
            progress=False,
        )
    (noisy, target_a), (clean, target_b) = seen["noisy"], seen["clean"]
    assert torch.equal(target_a, target_b)  # same batch, targets never noised
    diff = (noisy - clean).flatten()  # same initial weights: the difference is the noise
    assert abs(float(diff.mean())) < 0.15 and float(diff.std()) == pytest.approx(1.0, abs=0.15)
    model = fit_etecrm(
        images, responses, replace(TINY, noise_std=1.0, epochs=1), seed=0, progress=False
    )
    np.testing.assert_array_equal(
        model.predict(images[:8]), model.predict(images[:8])
    )  # no noise at prediction


def test_the_epoch_is_chosen_by_validation_r_of_the_best_training_voxels():
    images, responses = _arrays()
    cfg = replace(
        TINY, epochs=5, learning_rate=3e-2, selection_voxels=4
    )  # a large step: validation r jumps around
    model = fit_etecrm(images, responses, cfg, seed=0, progress=False)
    h = model.history
    by_hand = [float(np.mean(v[np.argsort(-t)[:4]])) for t, v in zip(h.train_r, h.val_r)]
    np.testing.assert_allclose(h.selection_score, by_hand, atol=1e-6)
    assert h.best_epoch == int(np.argmax(by_hand))
    # the returned network is the chosen epoch's: its validation r is that epoch's
    _, val_idx = split_train_val(len(images), cfg.val_fraction, 0)
    np.testing.assert_allclose(
        model.val_r, pearson_r(model.predict(images[val_idx]), responses[val_idx]), atol=1e-4
    )
    np.testing.assert_allclose(model.val_r, h.val_r[h.best_epoch], atol=1e-4)
    assert selection_score(
        torch.tensor([0.9, 0.1, 0.5]), torch.tensor([0.2, 0.8, 0.4]), 2
    ) == pytest.approx(0.3)


def test_model_selection_never_reads_the_test_split():
    """Garbage test responses change nothing in training: same history, same weights."""
    from etecrm_lib.data import from_arrays

    images, responses = _arrays(n=100)
    rng = np.random.default_rng(1)
    test_images = rng.uniform(size=(20, 32, 32)).astype(np.float32)

    def dataset(test_responses):
        return from_arrays(
            images, {"V1": responses}, test_images, {"V1": test_responses.astype(np.float32)}
        )

    a = train_etecrm(dataset(rng.normal(size=(20, 12))), "V1", TINY, seed=2, progress=False)
    b = train_etecrm(dataset(1e3 * rng.normal(size=(20, 12))), "V1", TINY, seed=2, progress=False)
    assert _same_state(a.net, b.net) and a.history.selection_score == b.history.selection_score


def test_mse_starts_at_the_mean_response_and_keeps_its_features_alive():
    images, responses = _arrays()
    responses = responses - responses.mean(0) + 5.0
    net = TINY.build_network(12, seed=0)
    x = training.prepare_images(images, 32)
    training.start_at_mean_response(net, x, torch.as_tensor(responses))
    np.testing.assert_allclose(
        training.predict(net, x).mean(0).numpy(), responses.mean(0), atol=1e-4
    )


@pytest.mark.slow
def test_mse_with_the_full_size_network_does_not_collapse_to_a_constant():
    """Without starting at the mean response, a few Adam steps of MSE switch every ReLU off (r = 0
    everywhere)."""
    from etecrm_lib.models import scale_images

    images, responses = _arrays(n=150, size=128, n_vox=20)
    model = fit_etecrm(
        images, responses, ETECRMConfig(loss="mse", noise_std=0.0, epochs=2), seed=0, progress=False
    )
    assert model.predict(images[:40]).std(axis=0).min() > 1e-3  # not a constant
    with torch.no_grad():
        x = training.prepare_images(images[:40], 128).to(next(model.net.parameters()).device)
        features = model.net.features(scale_images(x))
    assert float((features > 0).float().mean()) > 0.05  # the ReLUs are still alive


def test_resume_from_checkpoint_continues_identically(tmp_path):
    images, responses = _arrays()
    cfg = replace(TINY, epochs=4)
    straight = fit_etecrm(
        images, responses, cfg, seed=1, checkpoint=tmp_path / "a.pt", progress=False
    )
    fit_etecrm(
        images,
        responses,
        replace(cfg, epochs=2),
        seed=1,
        checkpoint=tmp_path / "b.pt",
        progress=False,
    )
    resumed = fit_etecrm(
        images, responses, cfg, seed=1, checkpoint=tmp_path / "b.pt", progress=False
    )
    assert (
        resumed.history.train_loss == straight.history.train_loss and resumed.history.n_epochs == 4
    )
    assert (
        _same_state(straight.net, resumed.net)
        and resumed.history.best_epoch == straight.history.best_epoch
    )
    np.testing.assert_array_equal(resumed.history.val_r[3], straight.history.val_r[3])
    again = fit_etecrm(images, responses, cfg, seed=1, checkpoint=tmp_path / "a.pt", progress=False)
    assert _same_state(again.net, straight.net)  # a finished run resumes at once
    assert not list(tmp_path.glob("*.part"))  # nothing half-written left behind


def test_checkpoint_from_another_run_is_refused(tmp_path):
    images, responses = _arrays()
    path = tmp_path / "run.pt"
    fit_etecrm(images, responses, replace(TINY, epochs=1), seed=0, checkpoint=path, progress=False)
    with pytest.raises(
        ValueError, match="different run.*noise_std: 1.0 in the checkpoint, 0.3 now"
    ):
        fit_etecrm(
            images, responses, replace(TINY, noise_std=0.3), seed=0, checkpoint=path, progress=False
        )
    with pytest.raises(ValueError, match="seed: 0 in the checkpoint, 1 now"):
        fit_etecrm(images, responses, TINY, seed=1, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="training data differ"):
        fit_etecrm(images, responses + 1, TINY, seed=0, checkpoint=path, progress=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable ETECRM checkpoint"):
        fit_etecrm(images, responses, TINY, seed=0, checkpoint=path, progress=False)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(noise_std=float("nan")), "noise_std must be a finite number, got nan"),
        (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
        (dict(learning_rate=0.0), "learning_rate must be > 0"),
        (dict(epochs=2.5), "epochs must be a whole number >= 1, got 2.5"),
        (dict(batch_size=1), "batch_size 1 is too small for a correlation loss"),
        (dict(noise_std=-1.0), "noise_std must be >= 0"),
        (dict(loss="r3"), "loss must be one of"),
        (dict(readout_weights="abs"), "readout_weights must be one of"),
        (dict(image_size=100), "divisible by 2\\*\\*3"),
    ],
)
def test_degenerate_settings_are_refused_up_front(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(TINY, **changes)


def test_degenerate_data_is_refused_up_front():
    images, responses = _arrays()
    with pytest.raises(ValueError, match="all 12 voxels have constant responses"):
        fit_etecrm(images, np.zeros_like(responses), TINY, progress=False)
    responses[:, 3] = 0.0
    with pytest.warns(UserWarning, match="1 of 12 voxels have constant responses"):
        fit_etecrm(images, responses, replace(TINY, epochs=1), progress=False)
    responses[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN/inf in 1 of 12 voxels \\(columns \\[3\\]\\)"):
        fit_etecrm(images, responses, TINY, progress=False)
    images, responses = _arrays()
    with pytest.raises(ValueError, match="square grayscale images"):
        fit_etecrm(images[:, :, :30], responses, TINY)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        fit_etecrm(images * 255, responses, TINY)
    with pytest.raises(ValueError, match=r"responses must be \(N_images, V\) = \(80, V>=1\)"):
        fit_etecrm(images, responses[:50], TINY)
    with pytest.raises(ValueError, match="too few to hold back"):
        fit_etecrm(images[:8], responses[:8], TINY)
    with pytest.raises(ValueError, match="profile must be one of"):
        ETECRMConfig.for_profile("huge")


def test_divergence_names_the_epoch_and_batch():
    with pytest.raises(FloatingPointError, match="epoch 3, batch 2"):
        training.check_losses_finite(torch.tensor([0.5, float("nan"), 0.4]), epoch=2, what="ETECRM")
    images, responses = _arrays()
    with pytest.raises(
        FloatingPointError, match="epoch 1, batch 1"
    ):  # an absurd learning rate blows up at once
        fit_etecrm(
            images, responses * 1e30, replace(TINY, loss="mse", learning_rate=1e30), progress=False
        )


def test_batch_larger_than_the_data_is_clamped_with_a_warning():
    images, responses = _arrays(n=40)
    with pytest.warns(UserWarning, match="batch_size 500 is larger than the 36 fitting images"):
        model = fit_etecrm(
            images, responses, replace(TINY, batch_size=500, epochs=1), progress=False
        )
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
    assert [str(w.message) for w in record] == [
        f"GPU out of memory with batches of {b} images; trying {b // 2}" for b in (64, 32)
    ]
    assert (
        largest_batch_that_fits(step, 64, torch.device("cpu")) == 64
    )  # nothing to probe on the CPU


def test_images_are_resized_to_the_configured_size():
    images, responses = _arrays(size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = fit_etecrm(images, responses, replace(TINY, epochs=1), progress=False)
    assert model.net.image_size == 32 and model.predict(images[:3]).shape == (3, 12)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA graphs need a GPU (CI has none; run it on the lent GPU)",
)
def test_models_trained_side_by_side_all_record_their_cuda_graph():
    """Threads record their graphs one at a time (gpu.CAPTURE_LOCK): without the lock, an H200 lost
    4 of 30."""
    from etecrm_lib import gpu

    images, responses = _arrays(n=256, size=64, n_vox=200)
    config = ETECRMConfig(image_size=64, channels=32, epochs=2, batch_size=32, selection_voxels=50)
    device = torch.device("cuda")
    jobs = [
        lambda seed=seed: fit_etecrm(
            images, responses, config, seed=seed, device=device, progress=False
        )
        for seed in range(10)
    ]
    for _ in range(3):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            models = gpu.run_concurrently(jobs, 5, device)
        failed = [str(w.message) for w in caught if "CUDA graph" in str(w.message)]
        assert not failed, f"{len(failed)} of {len(jobs)} recordings failed: {failed[0]}"
        assert len(models) == len(jobs)
