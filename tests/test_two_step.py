"""TwoStepModel: fit / predict / score on a small synthetic dataset; no test data reaches the
fit."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from etecrm_lib import two_step
from etecrm_lib.data.dataset import from_arrays
from etecrm_lib.evaluation import EncodingResult
from etecrm_lib.features.gabor import gabor_features
from etecrm_lib.two_step import RoiwiseConfig, TwoStepConfig, TwoStepModel, fit_roiwise

N_TRAIN, N_TEST, SIZE, N_SIGNAL, N_NOISE = 120, 30, 32, 6, 4
FAST_ROIWISE = RoiwiseConfig.for_profile("quick", epochs=15)


def _model(variant):
    cfg = TwoStepConfig.for_profile("quick", cnn_weights=None)
    cfg.roiwise = FAST_ROIWISE
    return TwoStepModel(variant, cfg, device="cpu", progress=False)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ETECRM_CACHE", str(tmp_path / "cache"))


def _images(n, rng):
    smooth = gaussian_filter(rng.random((n, SIZE, SIZE)), (0, 1.2, 1.2))
    return np.clip((smooth - smooth.mean()) * 5 + 0.5, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def dataset():
    """Voxels that are linear read-outs of 3 sparse Gabor-pyramid directions, plus pure-noise
    voxels."""
    rng = np.random.default_rng(0)
    train, test = _images(N_TRAIN, rng), _images(N_TEST, rng)
    feats = gabor_features(np.concatenate([train, test]), cache=False, device="cpu", progress=False)
    feats = (feats - feats[:N_TRAIN].mean(0)) / (feats[:N_TRAIN].std(0) + 1e-6)
    latent = np.zeros((feats.shape[1], 3))  # 3 shared directions, each a few Gabor features
    for k in range(3):
        latent[rng.choice(feats.shape[1], 8, replace=False), k] = rng.standard_normal(8)
    w = np.concatenate(
        [latent @ rng.standard_normal((3, N_SIGNAL)), np.zeros((feats.shape[1], N_NOISE))], 1
    )
    signal = feats @ w
    signal[:, :N_SIGNAL] /= signal[:N_TRAIN, :N_SIGNAL].std(0)
    train_resp = (signal[:N_TRAIN] + 0.5 * rng.standard_normal((N_TRAIN, w.shape[1]))).astype(
        np.float32
    )
    repeats = (signal[N_TRAIN:][None] + 0.5 * rng.standard_normal((4, N_TEST, w.shape[1]))).astype(
        np.float32
    )
    return from_arrays(
        train, {"V1": train_resp}, test, test_repeats={"V1": repeats}, name="synthetic"
    )


def _garbage_test(ds, seed=1):
    """The same train split; the test images and responses replaced by random garbage."""
    rng = np.random.default_rng(seed)
    repeats = rng.standard_normal(ds.test.repeats["V1"].shape).astype(np.float32) * 100
    images = rng.random(ds.test.stimuli.shape).astype(np.float32)
    return from_arrays(
        ds.train.stimuli,
        dict(ds.train.responses),
        images,
        test_repeats={"V1": repeats},
        name=ds.name,
    )


def test_gwp_ridge_predicts_signal_voxels(dataset):
    model = TwoStepModel("gwp_ridge", profile="quick", device="cpu", progress=False).fit(
        dataset, "V1"
    )
    result = model.score(dataset)
    assert isinstance(result, EncodingResult) and result.model == "gwp_ridge" and result.roi == "V1"
    assert result.predictions.shape == (N_TEST, N_SIGNAL + N_NOISE)
    assert np.median(result.test_r[:N_SIGNAL]) > 0.5
    assert np.abs(result.test_r[N_SIGNAL:]).max() < 0.6
    assert (
        result.info["n_features"] == 8 * (1 + 4 + 16 + 64) and result.info["dataset"] == "synthetic"
    )
    assert result.summary()["frac_ceiling"] > 0
    assert model.voxel_alphas().shape == (N_SIGNAL + N_NOISE,)


@pytest.mark.parametrize("variant", ["gwp_ridge", "gwp_roiwise"])
def test_test_responses_never_influence_the_fit(dataset, variant):
    a = _model(variant).fit(dataset, "V1")
    b = _model(variant).fit(_garbage_test(dataset), "V1")
    np.testing.assert_array_equal(a.predict(dataset.test.stimuli), b.predict(dataset.test.stimuli))
    if variant == "gwp_ridge":
        np.testing.assert_array_equal(a.voxel_alphas(), b.voxel_alphas())
        torch.testing.assert_close(a.fitted.cv_scores, b.fitted.cv_scores, rtol=0, atol=0)
    else:  # the same epoch, from the same validation scores, bit for bit
        assert a.fitted.history == b.fitted.history
        assert a.score(dataset).info["best_epoch"] == a.fitted.history["best_epoch"]


def test_the_fit_functions_only_receive_training_data(dataset, monkeypatch):
    seen = []
    real_ridge, real_roiwise = two_step.regression.fit_ridge_cv, two_step.fit_roiwise

    def spy_ridge(features, responses, *args, **kwargs):
        seen.append((np.asarray(features), np.asarray(responses)))
        return real_ridge(features, responses, *args, **kwargs)

    def spy_roiwise(features, responses, *args, **kwargs):
        seen.append((np.asarray(features), np.asarray(responses)))
        return real_roiwise(features, responses, *args, **kwargs)

    monkeypatch.setattr(two_step.regression, "fit_ridge_cv", spy_ridge)
    monkeypatch.setattr(two_step, "fit_roiwise", spy_roiwise)
    for variant in ("gwp_ridge", "gwp_roiwise"):
        _model(variant).fit(dataset, "V1").score(dataset)
    test_feats = gabor_features(dataset.test.stimuli, device="cpu", progress=False)
    assert len(seen) == 2
    for features, responses in seen:
        assert features.shape[0] == N_TRAIN
        np.testing.assert_array_equal(responses, dataset.train.responses["V1"])
        # no test image's (standardized) feature vector is among the rows
        train_feats = gabor_features(dataset.train.stimuli, device="cpu", progress=False)
        standardized_test = (test_feats - train_feats.mean(0)) / np.where(
            train_feats.std(0) > 1e-8, train_feats.std(0), 1
        )
        dist = ((features[:, None, :] - standardized_test[None]) ** 2).sum(-1)
        assert dist.min() > 1e-3


def test_alexnet_ridge_records_weights_and_layer_choice(dataset):
    cfg = TwoStepConfig.for_profile("quick", cnn_weights=None)
    cfg.cnn = type(cfg.cnn)(
        **{
            **cfg.cnn.__dict__,
            "layers": ("features.1", "features.7"),
            "input_size": 64,
            "pool_size": 2,
        }
    )
    result = (
        TwoStepModel("alexnet_ridge", cfg, device="cpu", progress=False)
        .fit(dataset, "V1")
        .score(dataset)
    )
    assert result.model == "alexnet_ridge"
    assert result.info["weights"] == "untrained(seed=0)"
    assert sum(result.info["layer_counts"].values()) == N_SIGNAL + N_NOISE
    assert set(result.info["layer_counts"]) == {"features.1", "features.7"}
    assert np.isfinite(result.test_r).all()


def test_roiwise_trains_with_etecrms_selective_optimization(dataset, monkeypatch):
    """The r^3 loss sees prediction + noise of s.d. 1 (not the features), and the epoch is chosen as
    ETECRM's."""
    from etecrm_lib import two_step
    from etecrm_lib.losses import weighted_correlation_loss

    seen = []

    def spy(name):
        assert name == "weighted_corr"

        def loss(pred, target):
            seen.append(pred.detach().clone())
            return weighted_correlation_loss(pred, target)

        return loss

    monkeypatch.setattr(two_step, "loss_function", spy)
    train = dataset.train
    feats = gabor_features(train.stimuli, device="cpu", progress=False)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    fit = fit_roiwise(feats, train.responses["V1"], FAST_ROIWISE, device="cpu", progress=False)
    first_clean = len(seen)
    fit_roiwise(
        feats,
        train.responses["V1"],
        RoiwiseConfig.for_profile("quick", epochs=1, noise_std=0.0),
        device="cpu",
        progress=False,
    )
    noise = (
        seen[0] - seen[first_clean]
    ).flatten()  # same seed: same weights and batch, only the noise differs
    assert abs(float(noise.mean())) < 0.2 and float(noise.std()) == pytest.approx(1.0, abs=0.2)
    scores = fit.history["selection_score"]
    assert (
        fit.history["best_epoch"] == int(np.argmax(scores)) and len(scores) == FAST_ROIWISE.epochs
    )
    assert fit.val_r is not None and fit.val_r.shape == (N_SIGNAL + N_NOISE,)
    assert float(fit.val_r[:N_SIGNAL].mean()) > float(
        fit.val_r[N_SIGNAL:].mean()
    )  # signal voxels predicted
    assert fit.predict(feats).shape == (N_TRAIN, N_SIGNAL + N_NOISE)


def test_bad_input_gets_clear_errors(dataset):
    model = TwoStepModel("gwp_ridge", profile="quick", device="cpu", progress=False)
    with pytest.raises(RuntimeError, match="fit"):
        model.predict(dataset.test.stimuli)
    with pytest.raises(ValueError, match="variant"):
        TwoStepModel("gabor_magic")
    with pytest.raises(KeyError, match="available ROIs"):
        model.fit(dataset, "V7")
    model.fit(dataset, "V1")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        model.predict(np.zeros((2, SIZE, SIZE, 3), np.float32))
    with pytest.raises(ValueError, match="resize"):
        model.predict(np.zeros((2, 64, 64), np.float32))
    with pytest.raises(ValueError, match="no usable voxel"):  # constant voxels: refused early
        from_arrays(
            dataset.train.stimuli,
            {"V1": np.ones((N_TRAIN, 3), np.float32)},
            dataset.test.stimuli,
            {"V1": np.ones((N_TEST, 3), np.float32)},
        )
    cfg = TwoStepConfig.for_profile("quick", cnn_weights=None)
    cfg.cnn = type(cfg.cnn)(**{**cfg.cnn.__dict__, "layers": ("conv1",)})
    with pytest.raises(ValueError, match="valid names"):
        TwoStepModel("alexnet_ridge", cfg, device="cpu", progress=False).fit(dataset, "V1")
    for bad in ({"noise_std": float("nan")}, {"noise_std": -1.0}):
        with pytest.raises(ValueError, match="noise_std"):
            RoiwiseConfig.for_profile("quick", **bad)


def test_both_model_families_share_one_interface():
    """ETECRMModel and TwoStepModel: the same fit(dataset, roi) / predict(images) / score(dataset)
    signatures."""
    import inspect

    from etecrm_lib.encoding_model import EncodingModel
    from etecrm_lib.training import ETECRMModel

    for cls in (ETECRMModel, TwoStepModel):
        assert isinstance(cls.__new__(cls), EncodingModel)
        for method in ("fit", "score"):
            assert list(inspect.signature(getattr(cls, method)).parameters) == list(
                inspect.signature(getattr(EncodingModel, method)).parameters
            ), (cls, method)
        assert list(inspect.signature(cls.predict).parameters)[:2] == ["self", "images"]


def test_the_roiwise_read_out_takes_etecrms_settings_of_the_profile():
    from etecrm_lib.training import ETECRMConfig
    from etecrm_lib.two_step import SHARED_WITH_ETECRM, RoiwiseConfig

    for profile in ("quick", "full"):
        roiwise, etecrm = RoiwiseConfig.for_profile(profile), ETECRMConfig.for_profile(profile)
        differ = {n for n in SHARED_WITH_ETECRM if getattr(roiwise, n) != getattr(etecrm, n)}
        assert differ == ({"epochs"} if profile == "quick" else set())
    # the values the committed runs used
    assert RoiwiseConfig.for_profile("quick") == RoiwiseConfig(rank=16, epochs=40, batch_size=32)
    assert RoiwiseConfig.for_profile("full") == RoiwiseConfig()
    assert RoiwiseConfig.for_profile("full", rank=8, loss="corr").rank == 8
